// The GPTQ workflow on a module tree: swap Linears for observed ones that record the Hessian of
// their inputs, run calibration batches through the model, then freeze() turns each into the
// QLinear that gptq_quantize() makes of it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quantkit/nn/layers.h"
#include "quantkit/quant/gptq.h"
#include "quantkit/workflows/quantize.h"

namespace quantkit {

/// A float Linear that accumulates sum x x^T over the rows it sees (calibration) and computes
/// the float result meanwhile, so later layers see unquantized inputs.
class GptqObservedLinear : public Module {
 public:
  GptqObservedLinear(std::shared_ptr<Linear> linear, WeightOnlyConfig config, GptqOptions options);
  std::string type_name() const override { return "GptqObservedLinear"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  /// The QLinear of the GPTQ-quantized weight (ValueError, naming the module, if no rows came).
  ModulePtr quantized(const std::string& name) const;

  std::shared_ptr<Linear> linear;
  WeightOnlyConfig config;
  GptqOptions options;
  HessianAccumulator hessian;
};

/// Swaps the Linear modules named in `names` (dotted paths) for GptqObservedLinear. The config
/// must give integer weights (int8/int4/int2, per channel or per group) and no activation
/// quantization (ValueError otherwise).
void prepare_gptq(Module& model, const std::vector<std::string>& names,
                  const WeightOnlyConfig& config, const GptqOptions& options = {});

/// Replaces every GptqObservedLinear by its GPTQ-quantized QLinear; returns how many. freeze()
/// calls it.
int64_t convert_gptq(Module& model);

}  // namespace quantkit

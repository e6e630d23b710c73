// GPTQ and AWQ on a module tree: both round weights with the help of the inputs each Linear sees.
// prepare_gptq / prepare_awq swap Linears for observed ones that record the input statistics
// (sum x x^T and mean |x|), the caller runs calibration batches through the model, then freeze()
// turns each into the QLinear that gptq_quantize() or awq_quantize() makes of it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "quantkit/nn/layers.h"
#include "quantkit/quant/awq.h"
#include "quantkit/quant/gptq.h"
#include "quantkit/workflows/quantize.h"

namespace quantkit {

/// A float Linear that accumulates its inputs' statistics over the rows it sees (calibration)
/// and computes the float result meanwhile, so later layers see unquantized inputs.
class HessianObservedLinear : public Module {
 public:
  /// awq unset: GPTQ with `gptq`; set: AWQ's scale search (then GPTQ or nearest rounding).
  HessianObservedLinear(std::shared_ptr<Linear> linear, WeightOnlyConfig config, GptqOptions gptq,
                        std::optional<AwqOptions> awq = std::nullopt);
  std::string type_name() const override { return "HessianObservedLinear"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  /// The QLinear of the quantized weight (ValueError, naming the module, if no rows came).
  ModulePtr quantized(const std::string& name) const;

  std::shared_ptr<Linear> linear;
  WeightOnlyConfig config;
  GptqOptions gptq;
  std::optional<AwqOptions> awq;
  HessianAccumulator statistics;
};

/// Swaps the Linear modules named in `names` (dotted paths) for HessianObservedLinear that
/// GPTQ-quantize at freeze(). The config must give integer weights (int8/int4/int2, per channel
/// or per group) and no activation quantization (ValueError otherwise).
void prepare_gptq(Module& model, const std::vector<std::string>& names,
                  const WeightOnlyConfig& config, const GptqOptions& options = {});

/// As prepare_gptq, for AWQ: at freeze() each Linear's weight columns are scaled by the searched
/// s, quantized, and the QLinear divides its input by s (QLinear::input_scale).
void prepare_awq(Module& model, const std::vector<std::string>& names,
                 const WeightOnlyConfig& config, const AwqOptions& options = {});

/// Replaces every HessianObservedLinear by its quantized QLinear; returns how many. freeze()
/// calls it.
int64_t convert_hessian_observed(Module& model);

}  // namespace quantkit

#include "quantkit/workflows/gptq_awq.h"

namespace quantkit {

HessianObservedLinear::HessianObservedLinear(std::shared_ptr<Linear> l, WeightOnlyConfig c,
                                             GptqOptions g, std::optional<AwqOptions> a)
    : linear(std::move(l)),
      config(std::move(c)),
      gptq(g),
      awq(a),
      statistics(linear->in_features) {}

Value HessianObservedLinear::forward(const Value& x) {
  const Tensor xf = x.to_float();
  QK_CHECK(xf.dim() >= 1 && xf.size(-1) == linear->in_features, ShapeError,
           "HessianObservedLinear: input ", shape_to_string(xf.shape()), " does not end in ",
           linear->in_features, " features");
  statistics.add(xf.data<float>(), xf.numel() / linear->in_features);
  return linear->forward(Value(xf));
}

std::string HessianObservedLinear::extra_repr() const {
  return linear->extra_repr() + ", method=" + (awq ? "awq" : "gptq") +
         ", calibration rows=" + std::to_string(statistics.samples());
}

ModulePtr HessianObservedLinear::quantized(const std::string& name) const {
  QK_CHECK(statistics.samples() > 0, ValueError, awq ? "AWQ" : "GPTQ", ": Linear '", name,
           "' saw no calibration rows; run calibration batches through the model before "
           "freeze()");
  const AffineSpec spec = weight_only_spec(config);
  std::shared_ptr<WeightOnlyLinear> q;
  if (awq) {
    AwqOptions o = *awq;
    o.mse_search = o.mse_search || config.mse_search;
    AwqResult r =
        awq_quantize(linear->weight, statistics.hessian(), statistics.mean_abs(), spec, o);
    q = std::make_shared<WeightOnlyLinear>(r.weight, linear->bias, config.activations);
    q->input_scale = r.input_scale;
  } else {
    GptqOptions o = gptq;
    o.mse_search = o.mse_search || config.mse_search;
    const QTensor w = gptq_quantize(linear->weight, statistics.hessian(), spec, o);
    q = std::make_shared<WeightOnlyLinear>(w, linear->bias, config.activations);
  }
  q->train(linear->is_training());
  return q;
}

namespace {

void prepare(Module& model, const std::vector<std::string>& names, const WeightOnlyConfig& config,
             const GptqOptions& gptq, const std::optional<AwqOptions>& awq) {
  const char* method = awq ? "AWQ" : "GPTQ";
  const AffineSpec spec = weight_only_spec(config);
  QK_CHECK(is_quantized_int(spec.dtype), ValueError, method, " rounds to an integer grid; weights ",
           dtype_name(spec.dtype), " are not int8, int4 or int2");
  QK_CHECK(config.activations == ActivationQuant::kNone, ValueError, method,
           " quantizes weights only; set activations to none");
  for (const auto& name : names) {
    ModulePtr m = model.find_ptr(name);
    QK_CHECK(m->type_name() == "Linear", ValueError, method, ": '", name, "' is a ", m->type_name(),
             ", not a Linear");
    auto linear = std::static_pointer_cast<Linear>(m);
    model.replace(name, std::make_shared<HessianObservedLinear>(linear, config, gptq, awq));
  }
}

}  // namespace

void prepare_gptq(Module& model, const std::vector<std::string>& names,
                  const WeightOnlyConfig& config, const GptqOptions& options) {
  prepare(model, names, config, options, std::nullopt);
}

void prepare_awq(Module& model, const std::vector<std::string>& names,
                 const WeightOnlyConfig& config, const AwqOptions& options) {
  prepare(model, names, config, options.gptq, options);
}

int64_t convert_hessian_observed(Module& model) {
  std::vector<std::pair<std::string, ModulePtr>> swaps;
  for (auto& [name, m] : model.named_modules()) {
    if (m->type_name() == "HessianObservedLinear")
      swaps.emplace_back(name, static_cast<HessianObservedLinear&>(*m).quantized(name));
  }
  for (auto& [name, q] : swaps) model.replace(name, q);
  return static_cast<int64_t>(swaps.size());
}

}  // namespace quantkit

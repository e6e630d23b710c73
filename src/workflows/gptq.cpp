#include "quantkit/workflows/gptq.h"

namespace quantkit {

GptqObservedLinear::GptqObservedLinear(std::shared_ptr<Linear> l, WeightOnlyConfig c, GptqOptions o)
    : linear(std::move(l)), config(std::move(c)), options(o), hessian(linear->in_features) {}

Value GptqObservedLinear::forward(const Value& x) {
  const Tensor xf = x.to_float();
  QK_CHECK(xf.dim() >= 1 && xf.size(-1) == linear->in_features, ShapeError,
           "GptqObservedLinear: input ", shape_to_string(xf.shape()), " does not end in ",
           linear->in_features, " features");
  hessian.add(xf.data<float>(), xf.numel() / linear->in_features);
  return linear->forward(Value(xf));
}

std::string GptqObservedLinear::extra_repr() const {
  return linear->extra_repr() + ", calibration rows=" + std::to_string(hessian.samples());
}

ModulePtr GptqObservedLinear::quantized(const std::string& name) const {
  QK_CHECK(hessian.samples() > 0, ValueError, "GPTQ: Linear '", name,
           "' saw no calibration rows; run calibration batches through the model before "
           "freeze()");
  GptqOptions o = options;
  o.mse_search = o.mse_search || config.mse_search;
  const QTensor w = gptq_quantize(linear->weight, hessian.hessian(), weight_only_spec(config), o);
  auto q = std::make_shared<WeightOnlyLinear>(w, linear->bias, config.activations);
  q->train(linear->is_training());
  return q;
}

void prepare_gptq(Module& model, const std::vector<std::string>& names,
                  const WeightOnlyConfig& config, const GptqOptions& options) {
  const AffineSpec spec = weight_only_spec(config);
  QK_CHECK(is_quantized_int(spec.dtype), ValueError, "GPTQ rounds to an integer grid; weights ",
           dtype_name(spec.dtype), " are not int8, int4 or int2");
  QK_CHECK(config.activations == ActivationQuant::kNone, ValueError,
           "GPTQ quantizes weights only; set activations to none");
  for (const auto& name : names) {
    ModulePtr m = model.find_ptr(name);
    QK_CHECK(m->type_name() == "Linear", ValueError, "prepare_gptq: '", name, "' is a ",
             m->type_name(), ", not a Linear");
    auto linear = std::static_pointer_cast<Linear>(m);
    model.replace(name, std::make_shared<GptqObservedLinear>(linear, config, options));
  }
}

int64_t convert_gptq(Module& model) {
  std::vector<std::pair<std::string, ModulePtr>> swaps;
  for (auto& [name, m] : model.named_modules()) {
    if (m->type_name() == "GptqObservedLinear")
      swaps.emplace_back(name, static_cast<GptqObservedLinear&>(*m).quantized(name));
  }
  for (auto& [name, q] : swaps) model.replace(name, q);
  return static_cast<int64_t>(swaps.size());
}

}  // namespace quantkit

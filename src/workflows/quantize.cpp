// prepare / convert / quantize_dynamic: the module swaps of torch.ao.quantization's eager mode.
#include "quantkit/workflows/quantize.h"

#include "quantkit/workflows/gptq_awq.h"

#include <mutex>

#include "quantkit/quant/pytorch.h"

namespace quantkit {
namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, CustomModuleConversion>& custom_registry() {
  static std::map<std::string, CustomModuleConversion> r;
  return r;
}
const CustomModuleConversion* custom_for_float(const std::string& type) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  const auto it = custom_registry().find(type);
  return it == custom_registry().end() ? nullptr : &it->second;
}
const CustomModuleConversion* custom_for_observed(const std::string& type) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (const auto& [name, c] : custom_registry()) {
    if (c.observed_type == type) return &c;
  }
  return nullptr;
}

const std::set<std::string>& observed_types() {
  static const std::set<std::string> types = {
      "QuantStub", "Linear",     "LinearReLU", "Conv1d",     "Conv2d",
      "Conv3d",    "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "FloatFunctional",
      "Hardswish", "GELU",       "SiLU",       "Sigmoid",    "Tanh"};
  return types;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void prepare_children(Module& module, const std::string& prefix, const QConfigPtr& parent_qc,
                      const QConfigMapping& mapping) {
  for (const auto& [name, child_ptr] : std::vector(module.children())) {
    const std::string full = prefix.empty() ? name : prefix + "." + name;
    ModulePtr child = child_ptr;
    const QConfigPtr qc = mapping.resolve(full, child->type_name(), parent_qc);
    if (qc != nullptr) {
      if (const CustomModuleConversion* custom = custom_for_float(child->type_name())) {
        child = custom->from_float(*child, *qc);
        module.replace_child(name, child);
      }
    }
    child->qconfig = qc;
    const std::string type = child->type_name();
    const bool observed = observed_types().count(type) > 0 || custom_for_observed(type) != nullptr;
    if (qc != nullptr && observed) {
      QK_CHECK(qc->activation != nullptr, ValueError, "QConfig '", qc->name,
               "' has no activation observer");
      child->activation_post_process = qc->activation();
    }
    if (!child->is_quantization_leaf()) prepare_children(*child, full, qc, mapping);
  }
}

Int8Weight observe_and_quantize_weight(const Tensor& w, const QConfig& qc, const std::string& who) {
  QK_CHECK(qc.weight != nullptr, ValueError, "QConfig '", qc.name, "' of '", who,
           "' has no weight observer");
  std::unique_ptr<Observer> obs = qc.weight();
  obs->observe(w);
  const ObservedQParams q = obs->calculate_qparams();
  QK_CHECK(obs->options().dtype == DType::kInt8, DTypeError, "weights of '", who,
           "' must be observed as qint8, the QConfig gives ",
           torch_dtype_name(obs->options().dtype));
  if (obs->is_per_channel()) {
    QK_CHECK(obs->options().ch_axis == 0, ValueError, "per-channel weights of '", who,
             "' must use ch_axis 0");
    const Tensor scales = q.scale.to(DType::kFloat64);
    const QTensor qt = quantize_per_channel(w, scales, q.zero_point, 0, DType::kInt8);
    std::vector<double> s(scales.data<double>(), scales.data<double>() + scales.numel());
    std::vector<int64_t> z(q.zero_point.data<int64_t>(),
                           q.zero_point.data<int64_t>() + q.zero_point.numel());
    return Int8Weight(qt.int_repr(), std::move(s), std::move(z));
  }
  const QTensor qt = quantize_per_tensor(w, q.scale_value(), q.zero_point_value(), DType::kInt8);
  return Int8Weight(qt.int_repr(), {q.scale_value()}, {q.zero_point_value()});
}

OutputQParams output_qparams(const Module& m, const std::string& who) {
  const auto& obs = m.activation_post_process;
  QK_CHECK(obs != nullptr, ValueError, "'", who, "' (", m.type_name(),
           ") has no output observer: prepare() the model first");
  QK_CHECK(obs->has_data(), ValueError, "observer of '", who, "' (", obs->type_name(),
           ") has seen no data: run calibration batches through the prepared model before "
           "convert()");
  const ObservedQParams q = obs->calculate_qparams();
  return OutputQParams{q.scale_value(), q.zero_point_value(), obs->options().dtype};
}

// The fixed output qparams PyTorch uses for quint8 sigmoid (1/256, 0) and tanh (2/256, 128).
OutputQParams fixed_qparams(ActivationKind kind) {
  if (kind == ActivationKind::kSigmoid) return {1.0 / 256.0, 0, DType::kUInt8};
  return {2.0 / 256.0, 128, DType::kUInt8};
}

ModulePtr convert_leaf(Module& m, const std::string& who) {
  const std::string type = m.type_name();
  if (const CustomModuleConversion* custom = custom_for_observed(type)) {
    return custom->from_observed(m);
  }
  if (type == "QuantStub") return std::make_shared<Quantize>(output_qparams(m, who));
  if (type == "DeQuantStub") return std::make_shared<DeQuantize>();
  const QConfig& qc = *m.qconfig;
  if (type == "Linear" || type == "LinearReLU") {
    const bool relu = type == "LinearReLU";
    auto& linear = static_cast<Linear&>(relu ? *m.child("0") : m);
    return std::make_shared<StaticQuantizedLinear>(
        observe_and_quantize_weight(linear.weight, qc, who), linear.bias, output_qparams(m, who),
        relu);
  }
  if (type.rfind("Conv", 0) == 0) {
    const bool relu = type.rfind("ConvReLU", 0) == 0;
    auto& conv = static_cast<Conv&>(relu ? *m.child("0") : m);
    return std::make_shared<StaticQuantizedConv>(conv.dims, conv.options,
                                                 observe_and_quantize_weight(conv.weight, qc, who),
                                                 conv.bias, output_qparams(m, who), relu);
  }
  if (type == "FloatFunctional") {
    return std::make_shared<QuantizedFunctional>(output_qparams(m, who));
  }
  const auto& act = static_cast<const Activation&>(m);
  if (act.kind == ActivationKind::kSigmoid || act.kind == ActivationKind::kTanh) {
    return std::make_shared<QuantizedActivation>(act.kind, fixed_qparams(act.kind));
  }
  return std::make_shared<QuantizedActivation>(act.kind, output_qparams(m, who));
}

void convert_children(Module& module, const std::string& prefix) {
  for (const auto& [name, child] : std::vector(module.children())) {
    const std::string full = prefix.empty() ? name : prefix + "." + name;
    const bool convertible = child->activation_post_process != nullptr ||
                             (child->type_name() == "DeQuantStub" && child->qconfig != nullptr);
    if (convertible) {
      ModulePtr q = convert_leaf(*child, full);
      q->train(child->is_training());
      module.replace_child(name, q);
    } else if (!child->is_quantization_leaf()) {
      convert_children(*child, full);
    }
  }
}

bool glob_match(const char* pattern, const char* text) {
  for (; *pattern != '\0'; ++pattern, ++text) {
    if (*pattern == '*') {
      for (const char* t = text;; ++t) {
        if (glob_match(pattern + 1, t)) return true;
        if (*t == '\0') return false;
      }
    }
    if (*text == '\0' || (*pattern != '?' && *pattern != *text)) return false;
  }
  return *text == '\0';
}

bool any_match(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns) {
    if (glob_match(p.c_str(), name.c_str())) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> static_quantizable_types() {
  std::vector<std::string> v(observed_types().begin(), observed_types().end());
  v.push_back("DeQuantStub");
  return v;
}

void prepare(Module& model, const QConfigMapping& mapping) {
  for (const auto& type : mapping.object_types()) {
    QK_CHECK(observed_types().count(type) || custom_for_float(type) != nullptr, ValueError,
             "prepare: module type '", type,
             "' has no quantized counterpart; supported: ", join(static_quantizable_types()),
             " (or register a custom module)");
  }
  QConfigPtr root = mapping.has_global() ? mapping.global() : model.qconfig;
  root = mapping.resolve("", model.type_name(), root);
  model.qconfig = root;
  prepare_children(model, "", root, mapping);
}

void convert(Module& model) {
  convert_children(model, "");
}

void quantize_dynamic(Module& model, const std::set<std::string>& types, QConfigPtr qconfig,
                      QEngine engine, const std::vector<std::string>& exclude) {
  if (qconfig == nullptr) qconfig = default_dynamic_qconfig();
  for (const auto& t : types) {
    QK_CHECK(t == "Linear" || t == "LinearReLU", ValueError, "quantize_dynamic: module type '", t,
             "' has no dynamic quantized counterpart; supported: Linear, LinearReLU");
  }
  std::function<void(Module&, const std::string&)> walk = [&](Module& module,
                                                              const std::string& prefix) {
    for (const auto& [name, child] : std::vector(module.children())) {
      const std::string full = prefix.empty() ? name : prefix + "." + name;
      const std::string type = child->type_name();
      if (types.count(type) && !any_match(exclude, full)) {
        const bool relu = type == "LinearReLU";
        auto& linear = static_cast<Linear&>(relu ? *child->child("0") : *child);
        auto q = std::make_shared<DynamicQuantizedLinear>(
            observe_and_quantize_weight(linear.weight, *qconfig, full), linear.bias, engine, relu);
        q->train(child->is_training());
        module.replace_child(name, q);
      } else if (!child->is_quantization_leaf()) {
        walk(*child, full);
      }
    }
  };
  walk(model, "");
}

AffineSpec weight_only_spec(const WeightOnlyConfig& config) {
  QK_CHECK(config.group_size >= 0, ValueError, "group_size must be >= 0, got ", config.group_size);
  AffineSpec spec = AffineSpec::for_dtype(
      config.weights,
      config.group_size > 0 ? Granularity::per_group(config.group_size) : Granularity::per_axis(0));
  if (!is_float8(config.weights)) {
    spec.mapping = config.symmetric ? MappingType::kSymmetric : MappingType::kAsymmetric;
    spec.zero_point_domain = config.symmetric ? ZeroPointDomain::kNone : ZeroPointDomain::kFloat;
  }
  QK_CHECK(config.scale_dtype == DType::kFloat16 || config.scale_dtype == DType::kFloat32,
           ValueError, "weight-only scale_dtype must be float16 or float32, got ",
           dtype_name(config.scale_dtype));
  // One scale per row costs nothing to keep in float32; per-group scales are what the float16
  // choice shrinks (MiniLM W8A8 per channel: cosine min 0.9878 in float32, 0.9842 in float16).
  spec.scale_dtype = config.group_size > 0 ? config.scale_dtype : DType::kFloat32;
  spec.validate();
  return spec;
}

ModulePtr make_weight_only_linear(const Linear& linear, const WeightOnlyConfig& config) {
  const AffineSpec spec = weight_only_spec(config);
  const QTensor weight =
      config.mse_search && !is_float8(config.weights)
          ? quantize(linear.weight, spec, choose_qparams_mse(linear.weight, spec))
          : quantize(linear.weight, spec);
  auto q = std::make_shared<WeightOnlyLinear>(weight, linear.bias, config.activations);
  q->train(linear.is_training());
  return q;
}

int64_t quantize_weights(Module& model, const WeightOnlyConfig& config) {
  weight_only_spec(config);  // reject a bad config before touching the model
  int64_t count = 0;
  std::function<void(Module&, const std::string&)> walk = [&](Module& module,
                                                              const std::string& prefix) {
    for (const auto& [name, child] : std::vector(module.children())) {
      const std::string full = prefix.empty() ? name : prefix + "." + name;
      const bool selected = (config.include.empty() || any_match(config.include, full)) &&
                            !any_match(config.exclude, full);
      if (child->type_name() == "Linear" && selected) {
        module.replace_child(name, make_weight_only_linear(static_cast<Linear&>(*child), config));
        ++count;
      } else {
        walk(*child, full);
      }
    }
  };
  walk(model, "");
  return count;
}

void set_calibration(Module& model, bool on) {
  for (auto& [name, m] : model.named_modules()) {
    if (m->type_name() == "QLinear") static_cast<WeightOnlyLinear&>(*m).calibrating = on;
  }
}

void freeze(Module& model) {
  convert_hessian_observed(model);
  for (auto& [name, m] : model.named_modules()) {
    if (m->type_name() != "QLinear") continue;
    auto& q = static_cast<WeightOnlyLinear&>(*m);
    q.calibrating = false;
    if (q.activations == ActivationQuant::kNone ||
        q.activations == ActivationQuant::kInt8DynamicPerToken) {
      continue;
    }
    QK_CHECK(q.observed_absmax > 0.0f, ValueError, "freeze: QLinear '", name,
             "' quantizes its activations but saw no (non-zero) calibration data: run "
             "calibration batches between set_calibration(model, true) and freeze()");
    const float qmax = q.activations == ActivationQuant::kInt8 ? 127.0f : 448.0f;
    q.activation_scale = Tensor::from_floats({q.observed_absmax / qmax}, {1});
  }
}

std::map<std::string, std::string> quantization_map(Module& model) {
  std::map<std::string, std::string> out;
  for (auto& [name, m] : model.named_modules()) {
    const std::string type = m->type_name();
    if (type == "QLinear" || type.rfind("Quantized", 0) == 0 ||
        type.rfind("DynamicQuantized", 0) == 0 || type == "Quantize" || type == "DeQuantize" ||
        type == "QFunctional" || type.rfind("Xla", 0) == 0) {
      const std::string extra = m->extra_repr();
      out[name] = extra.empty() ? type : type + "(" + extra + ")";
    }
  }
  return out;
}

void register_custom_module(CustomModuleConversion conversion) {
  QK_CHECK(!conversion.float_type.empty() && !conversion.observed_type.empty() &&
               conversion.from_float && conversion.from_observed,
           ValueError, "register_custom_module: every field must be set");
  std::lock_guard<std::mutex> lock(registry_mutex());
  custom_registry()[conversion.float_type] = std::move(conversion);
}

void unregister_custom_module(const std::string& float_type) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  custom_registry().erase(float_type);
}

}  // namespace quantkit

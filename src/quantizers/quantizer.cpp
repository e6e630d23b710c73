// QuantizationConfig (JSON), the registry, and the built-in methods: "linear" (optimum-quanto's
// weight-only QLinear, optional static int8 activations) and "dynamic_int8" (W8A8 / W4A8 with
// activations quantized per token at run time), "gptq" (weights rounded by GPTQ from the
// Hessians that calibration records; stored like "linear") and "awq" (weight columns scaled by
// searched per-channel factors before rounding; stored like "linear" plus each QLinear's
// input_scale).
#include "quantkit/quantizers/quantizer.h"

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "quantkit/workflows/gptq_awq.h"
#include "quantkit/workflows/quantize.h"

namespace quantkit {

std::unique_ptr<Quantizer> make_xla_quantizer(
    const QuantizationConfig& config);  // xla_quantizer.cpp

namespace {

using nlohmann::json;

bool glob(const char* p, const char* t) {
  for (; *p != '\0'; ++p, ++t) {
    if (*p == '*') {
      for (const char* s = t;; ++s) {
        if (glob(p + 1, s)) return true;
        if (*s == '\0') return false;
      }
    }
    if (*t == '\0' || (*p != '?' && *p != *t)) return false;
  }
  return *t == '\0';
}

DType weight_dtype(const std::string& name) {
  if (name == "int8") return DType::kInt8;
  if (name == "int4") return DType::kInt4;
  if (name == "int2") return DType::kInt2;
  if (name == "fp8_e4m3") return DType::kFloat8E4M3;
  if (name == "fp8_e5m2") return DType::kFloat8E5M2;
  throw ValueError("quantization_config.weights '" + name +
                   "' is not one of int8, int4, int2, fp8_e4m3, fp8_e5m2");
}

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, QuantizerFactory>& registry();

// Replaces module `name` of `model` (a dotted path).
void swap(Module& model, const std::string& name, ModulePtr module) {
  model.replace(name, module);
}

class LinearQuantizer : public Quantizer {
 public:
  using Quantizer::Quantizer;
  bool requires_calibration() const override { return config_.activations != "none"; }
  bool is_serializable() const override { return true; }
  bool is_trainable() const override { return false; }

  virtual WeightOnlyConfig weight_only() const {
    WeightOnlyConfig w;
    w.weights = weight_dtype(config_.weights);
    w.group_size = config_.group_size;
    w.symmetric = config_.symmetric;
    w.scale_dtype = config_.scale_dtype == "float32" ? DType::kFloat32 : DType::kFloat16;
    w.mse_search = config_.optimizer == "mse";
    QK_CHECK(config_.activations == "none" || config_.activations == "int8" ||
                 config_.activations == "fp8",
             ValueError, "quantization_config.activations '", config_.activations,
             "' is not one of none, int8, fp8");
    w.activations = config_.activations == "int8"  ? ActivationQuant::kInt8
                    : config_.activations == "fp8" ? ActivationQuant::kFloat8E4M3
                                                   : ActivationQuant::kNone;
    return w;
  }

  void validate_environment(Module& model) const override {
    weight_only_spec(weight_only());
    QK_CHECK(!convertible_linears(model, config_.modules_to_not_convert).empty(), ValueError,
             "method 'linear': the model (", model.type_name(),
             ") has no Linear module outside modules_to_not_convert");
  }
  void process_model_before_weight_loading(Module& model, bool) override {
    selected_ = convertible_linears(model, config_.modules_to_not_convert);
  }
  void process_model_after_weight_loading(Module& model) override {
    const WeightOnlyConfig w = weight_only();
    for (const auto& name : selected_) {
      swap(model, name, make_weight_only_linear(static_cast<Linear&>(model.find(name)), w));
    }
  }
  std::vector<std::string> load_pre_quantized(Module& model, const Checkpoint& ckpt) override {
    std::vector<std::string> used;
    const WeightOnlyConfig w = weight_only();
    for (const auto& name : selected_) {
      const std::string key = name + ".weight";
      QK_CHECK(ckpt.is_quantized(key), FormatError, "quantized checkpoint has no quantized '", key,
               "' although quantization_config converts it");
      const QTensor q = ckpt.qtensor(key);
      QK_CHECK(q.dtype() == w.weights, FormatError, "'", key, "' is ", dtype_name(q.dtype()),
               ", quantization_config says ", config_.weights);
      const auto& linear = static_cast<Linear&>(model.find(name));
      QK_CHECK(q.shape() == linear.weight.shape(), FormatError, "'", key, "' has shape ",
               shape_to_string(q.shape()), ", the model expects ",
               shape_to_string(linear.weight.shape()));
      swap(model, name, std::make_shared<WeightOnlyLinear>(q, linear.bias, w.activations));
      used.push_back(key);
    }
    return used;
  }
  std::map<std::string, QTensor> quantized_tensors(Module& model) const override {
    std::map<std::string, QTensor> out;
    for (auto& [name, m] : model.named_modules()) {
      if (m->type_name() == "QLinear")
        out[name + ".weight"] = static_cast<WeightOnlyLinear&>(*m).weight;
    }
    return out;
  }
};

// W8A8 (and W4A8): int8 (or int4) weights with activations quantized per token on the fly;
// stored exactly like "linear".
class DynamicInt8Quantizer : public LinearQuantizer {
 public:
  using LinearQuantizer::LinearQuantizer;
  bool requires_calibration() const override { return false; }
  WeightOnlyConfig weight_only() const override {
    QK_CHECK(config_.weights == "int8" || config_.weights == "int4", ValueError,
             "method 'dynamic_int8' takes int8 or int4 weights; quantization_config.weights is ",
             config_.weights);
    WeightOnlyConfig w;
    w.weights = weight_dtype(config_.weights);
    w.group_size = config_.group_size;
    w.symmetric = config_.symmetric;
    w.scale_dtype = config_.scale_dtype == "float32" ? DType::kFloat32 : DType::kFloat16;
    w.mse_search = config_.optimizer == "mse";
    w.activations = ActivationQuant::kInt8DynamicPerToken;
    return w;
  }
};

// GPTQ: process_model_after_weight_loading swaps the selected Linears for Hessian-recording
// ones; the caller runs calibration batches and freeze() quantizes. Saved and loaded as "linear".
class GptqQuantizer : public LinearQuantizer {
 public:
  using LinearQuantizer::LinearQuantizer;
  bool requires_calibration() const override { return true; }
  WeightOnlyConfig weight_only() const override {
    QK_CHECK(config_.weights == "int8" || config_.weights == "int4" || config_.weights == "int2",
             ValueError, "method 'gptq' takes int8, int4 or int2 weights; quantization_config.",
             "weights is ", config_.weights);
    QK_CHECK(config_.activations == "none", ValueError,
             "method 'gptq' quantizes weights only; quantization_config.activations is ",
             config_.activations);
    return LinearQuantizer::weight_only();
  }
  void process_model_after_weight_loading(Module& model) override {
    GptqOptions options;
    options.damp_percent = config_.damp_percent;
    options.act_order = config_.act_order;
    prepare_gptq(model, selected_, weight_only(), options);
  }
};

// AWQ: calibrated like GPTQ; each QLinear keeps 1/s as its input_scale buffer, which the
// pre-quantized path allocates so that loading the state dict checks and fills it.
class AwqQuantizer : public GptqQuantizer {
 public:
  using GptqQuantizer::GptqQuantizer;
  void validate_environment(Module& model) const override {
    GptqQuantizer::validate_environment(model);
    QK_CHECK(config_.rounding == "nearest" || config_.rounding == "gptq", ValueError,
             "method 'awq': quantization_config.rounding '", config_.rounding,
             "' is not nearest or gptq");
  }
  void process_model_after_weight_loading(Module& model) override {
    AwqOptions options;
    options.gptq.damp_percent = config_.damp_percent;
    options.gptq.act_order = config_.act_order;
    options.gptq_rounding = config_.rounding == "gptq";
    prepare_awq(model, selected_, weight_only(), options);
  }
  std::vector<std::string> load_pre_quantized(Module& model, const Checkpoint& ckpt) override {
    std::vector<std::string> used = LinearQuantizer::load_pre_quantized(model, ckpt);
    for (const auto& name : selected_) {
      auto& q = static_cast<WeightOnlyLinear&>(model.find(name));
      q.input_scale =
          Tensor::from_floats(std::vector<float>(static_cast<size_t>(q.packed.in_features), 1.0f),
                              {q.packed.in_features});
    }
    return used;
  }
};

std::map<std::string, QuantizerFactory>& registry() {
  static std::map<std::string, QuantizerFactory> r = {
      {"linear", [](const QuantizationConfig& c) { return std::make_unique<LinearQuantizer>(c); }},
      {"dynamic_int8",
       [](const QuantizationConfig& c) { return std::make_unique<DynamicInt8Quantizer>(c); }},
      {"gptq", [](const QuantizationConfig& c) { return std::make_unique<GptqQuantizer>(c); }},
      {"awq", [](const QuantizationConfig& c) { return std::make_unique<AwqQuantizer>(c); }},
      {"xla", make_xla_quantizer},
  };
  return r;
}

}  // namespace

std::string QuantizationConfig::to_json() const {
  json j = {{"quant_method", quant_method}, {"version", version},
            {"weights", weights},           {"activations", activations},
            {"group_size", group_size},     {"symmetric", symmetric},
            {"scale_dtype", scale_dtype},   {"optimizer", optimizer},
            {"damp_percent", damp_percent}, {"act_order", act_order},
            {"rounding", rounding},         {"modules_to_not_convert", modules_to_not_convert},
            {"producer", "quantkit"}};
  return j.dump(2);
}

QuantizationConfig QuantizationConfig::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(std::string("quantization_config is not valid JSON: ") + e.what());
  }
  QK_CHECK(j.is_object(), FormatError, "quantization_config must be a JSON object");
  QuantizationConfig c;
  try {
    c.quant_method = j.at("quant_method").get<std::string>();
    c.version = j.value("version", 1);
    c.weights = j.value("weights", c.weights);
    c.activations = j.value("activations", c.activations);
    c.group_size = j.value("group_size", c.group_size);
    c.symmetric = j.value("symmetric", c.symmetric);
    // Configs written before scale_dtype existed were quantized with float32 scales.
    c.scale_dtype = j.value("scale_dtype", std::string("float32"));
    c.optimizer = j.value("optimizer", c.optimizer);
    c.damp_percent = j.value("damp_percent", c.damp_percent);
    c.act_order = j.value("act_order", c.act_order);
    c.rounding = j.value("rounding", c.rounding);
    c.modules_to_not_convert = j.value("modules_to_not_convert", c.modules_to_not_convert);
  } catch (const json::exception& e) {
    throw FormatError(std::string("quantization_config: ") + e.what());
  }
  QK_CHECK(c.version == 1, FormatError, "quantization_config version ", c.version,
           " is newer than this quantkit (1)");
  QK_CHECK(c.group_size >= 0, FormatError, "quantization_config.group_size must be >= 0");
  QK_CHECK(c.damp_percent >= 0.0 && c.damp_percent < 1e3, FormatError,
           "quantization_config.damp_percent must be in [0, 1000), got ", c.damp_percent);
  QK_CHECK(c.scale_dtype == "float16" || c.scale_dtype == "float32", FormatError,
           "quantization_config.scale_dtype '", c.scale_dtype, "' is not float16 or float32");
  QK_CHECK(c.rounding == "nearest" || c.rounding == "gptq", FormatError,
           "quantization_config.rounding '", c.rounding, "' is not nearest or gptq");
  QK_CHECK(c.optimizer == "minmax" || c.optimizer == "mse", FormatError,
           "quantization_config.optimizer '", c.optimizer, "' is not minmax or mse");
  return c;
}

void register_quantizer(const std::string& method, QuantizerFactory factory) {
  QK_CHECK(!method.empty() && factory, ValueError, "register_quantizer needs a name and a factory");
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[method] = std::move(factory);
}

std::vector<std::string> registered_quantization_methods() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> out;
  for (const auto& [name, f] : registry()) out.push_back(name);
  return out;
}

std::unique_ptr<Quantizer> make_quantizer(const QuantizationConfig& config) {
  QuantizerFactory factory;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    const auto it = registry().find(config.quant_method);
    if (it != registry().end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& m : registered_quantization_methods())
      known += (known.empty() ? "" : ", ") + m;
    throw ValueError("unknown quantization method '" + config.quant_method +
                     "' (registered: " + known + ")");
  }
  return factory(config);
}

std::vector<std::string> convertible_linears(Module& model,
                                             const std::vector<std::string>& exclude) {
  std::vector<std::string> out;
  for (auto& [name, m] : model.named_modules()) {
    if (m->type_name() != "Linear") continue;
    bool excluded = false;
    for (const auto& p : exclude) excluded |= glob(p.c_str(), name.c_str());
    if (!excluded) out.push_back(name);
  }
  return out;
}

}  // namespace quantkit

// Quantizer plugins (the Hugging Face HfQuantizer contract, in C++): a QuantizationConfig names
// a method and its parameters and is stored in a model's config.json as "quantization_config";
// a Quantizer registered under the method's name turns a float model into a quantized one, and
// loads one that was saved already quantized. See docs/adding-a-method.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quantkit/io/safetensors.h"
#include "quantkit/nn/module.h"

namespace quantkit {

struct QuantizationConfig {
  std::string quant_method = "linear";  // a registered method: linear, dynamic_int8, gptq, awq, xla
  int version = 1;
  std::string weights = "int8";      // int8 | int4 | int2 | fp8_e4m3 | fp8_e5m2 (xla: int8 | int4)
  std::string activations = "none";  // none | int8 (linear: calibrated static scale)
  int64_t group_size = 0;            // 0 = per output channel (xla: its block_size)
  bool symmetric = true;
  std::string scale_dtype = "float16";  // linear: per-group weight scales float16 | float32
  std::string optimizer = "minmax";     // weight scales: minmax | mse (per-group clipping search)
  double damp_percent = 0.01;           // gptq: Hessian damping, a fraction of its mean diagonal
  bool act_order = false;               // gptq: round columns by decreasing Hessian diagonal
  std::string rounding = "nearest";     // awq: round the scaled weights to nearest | gptq
  /// Module globs left in float. Default: the output head (tied embeddings stay float too,
  /// since only Linear modules are converted).
  std::vector<std::string> modules_to_not_convert = {"lm_head"};

  /// The JSON object written to config.json.
  std::string to_json() const;
  /// Parses and validates; throws FormatError/ValueError naming the bad field.
  static QuantizationConfig from_json(const std::string& json);
};

class Quantizer {
 public:
  explicit Quantizer(QuantizationConfig config) : config_(std::move(config)) {}
  virtual ~Quantizer() = default;
  const QuantizationConfig& config() const { return config_; }

  /// Needs calibration data between the two hooks (activation scales).
  virtual bool requires_calibration() const = 0;
  /// Its quantized modules can be saved and loaded back (pre-quantized path).
  virtual bool is_serializable() const = 0;
  virtual bool is_trainable() const = 0;
  /// Throws ValueError when the model, the CPU or the config cannot work with this method.
  virtual void validate_environment(Module& model) const = 0;
  /// On a model whose weights are not loaded yet: records which modules convert (honouring
  /// modules_to_not_convert). pre_quantized: the checkpoint holds quantized weights, and the
  /// modules are swapped for quantized ones that load_pre_quantized() fills.
  virtual void process_model_before_weight_loading(Module& model, bool pre_quantized) = 0;
  /// After the float weights are loaded: quantizes the recorded modules.
  virtual void process_model_after_weight_loading(Module& model) = 0;
  /// Loads saved quantized weights (checkpoint names as save_quantized writes them) into the
  /// modules swapped by process_model_before_weight_loading(model, true); returns the names of
  /// the tensors it consumed.
  virtual std::vector<std::string> load_pre_quantized(Module& model, const Checkpoint& ckpt) = 0;
  /// Quantized tensors of the model's quantized modules (name -> QTensor) for saving.
  virtual std::map<std::string, QTensor> quantized_tensors(Module& model) const = 0;
  /// Plain tensors a method stores in a layout of its own (e.g. torch_xla's int8 weights,
  /// scales and float zero points), saved beside the QTensors.
  virtual std::map<std::string, Tensor> extra_tensors(Module&) const { return {}; }

 protected:
  /// Names of the modules chosen for conversion by the last process_model_before_weight_loading.
  std::vector<std::string> selected_;
  QuantizationConfig config_;
};

using QuantizerFactory = std::function<std::unique_ptr<Quantizer>(const QuantizationConfig&)>;
/// Registers a method; a second registration of the same name replaces the first.
void register_quantizer(const std::string& method, QuantizerFactory factory);
/// The quantizer for config.quant_method; throws ValueError listing the registered methods.
std::unique_ptr<Quantizer> make_quantizer(const QuantizationConfig& config);
std::vector<std::string> registered_quantization_methods();

/// Linear modules of `model` whose names match no glob of `exclude`, in tree order.
std::vector<std::string> convertible_linears(Module& model,
                                             const std::vector<std::string>& exclude);

}  // namespace quantkit

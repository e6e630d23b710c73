// The eager-mode workflows of torch.ao.quantization on quantkit's module tree:
//   fuse_modules -> prepare -> (calibrate: run the model) -> convert      static PTQ
//   quantize_dynamic                                                      dynamic PTQ
//   quantize_weights -> (optional calibration) -> freeze                  weight-only (quanto)
// and the registry of custom float -> observed -> quantized module conversions.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "quantkit/nn/quantized.h"
#include "quantkit/workflows/qconfig.h"

namespace quantkit {

/// Fuses each group of modules (dotted names) into one: [Conv, BN], [Conv, BN, ReLU],
/// [Conv, ReLU], [Linear, ReLU], [Linear, BN], [BN, ReLU]. BatchNorm is folded into the conv or
/// linear weights (the model must be in eval mode); the first module of a group is replaced by
/// the fused one, the others by Identity. A group that matches none of these patterns raises a
/// ValueError naming its types and the supported patterns.
void fuse_modules(Module& model, const std::vector<std::vector<std::string>>& groups);

/// Attaches output observers per `mapping` (or, without a global entry there, the root's
/// `qconfig`) to every module that has a quantized counterpart, QuantStub and FloatFunctional
/// included, and swaps registered custom modules for their observed versions.
void prepare(Module& model, const QConfigMapping& mapping = {});

/// Replaces every observed module by its quantized counterpart (QuantStub -> Quantize,
/// DeQuantStub -> DeQuantize, Linear/Conv (+ReLU) -> static int8, FloatFunctional ->
/// QFunctional, Hardswish/GELU/SiLU/Sigmoid/Tanh -> table-driven quantized activations, custom
/// modules -> their quantized type). Weights are observed with the QConfig's weight observer
/// here. An observer that has seen no data raises "observer of 'NAME' has seen no data".
void convert(Module& model);

/// Swaps every module whose type is in `types` for its dynamic int8 counterpart (Linear,
/// LinearReLU). Weights observed with `qconfig` (default_dynamic_qconfig when null) and
/// quantized to qint8; the activations are quantized at run time under `engine`. A type with no
/// dynamic counterpart raises a ValueError naming it and the supported types.
/// Modules whose dotted name matches a glob of `exclude` stay float.
void quantize_dynamic(Module& model, const std::set<std::string>& types = {"Linear"},
                      QConfigPtr qconfig = nullptr, QEngine engine = quantized_engine(),
                      const std::vector<std::string>& exclude = {});

/// Weight-only quantization (optimum-quanto's quantize()).
struct WeightOnlyConfig {
  DType weights = DType::kInt8;  // int8, int4, int2, float8_e4m3, float8_e5m2
  int64_t group_size = 0;        // 0 = per output channel
  bool symmetric = true;         // false: asymmetric with a zero point (integers only)
  /// Per-group scales in float16 (default: 2-byte scales in the kernels' layout, as quanto and
  /// llama.cpp keep them; int4 g32 streams 18 instead of 20 bytes per 32 weights) or float32.
  /// Per-channel scales (group_size 0) stay float32: one per row, nothing to save.
  DType scale_dtype = DType::kFloat16;
  ActivationQuant activations = ActivationQuant::kNone;
  /// Per-group clipping search for the weight scales (choose_qparams_mse) instead of min/max.
  bool mse_search = false;
  /// Module names to include / exclude (glob: '*' and '?'); empty include = every Linear.
  std::vector<std::string> include, exclude;
};
/// The AffineSpec of a weight-only config (per-channel or per-group along K; symmetric without
/// zero point, or asymmetric with a float zero point). Throws ValueError for invalid configs.
AffineSpec weight_only_spec(const WeightOnlyConfig& config);
/// The QLinear for one float Linear.
ModulePtr make_weight_only_linear(const Linear& linear, const WeightOnlyConfig& config);
/// Replaces every selected Linear by a WeightOnlyLinear (QLinear). Returns how many.
int64_t quantize_weights(Module& model, const WeightOnlyConfig& config);
/// Starts (true) or stops (false) recording activation ranges in every QLinear.
void set_calibration(Module& model, bool on);
/// Ends calibration: GPTQ/AWQ-observed Linears (workflows/gptq_awq.h) become quantized QLinears;
/// QLinear modules with activation quantization take scale = absmax / qmax from what they saw
/// (an uncalibrated one raises, naming it).
void freeze(Module& model);
/// Name -> what the module became ("QLinear int4 sym g32, activations none").
std::map<std::string, std::string> quantization_map(Module& model);

/// Custom module conversions (PyTorch's prepare_custom_config / convert_custom_config):
/// prepare() replaces a module of `float_type` by from_float(module, qconfig) and attaches an
/// output observer; convert() replaces a module of `observed_type` by from_observed(module).
struct CustomModuleConversion {
  std::string float_type;
  std::string observed_type;
  std::function<ModulePtr(Module& float_module, const QConfig& qconfig)> from_float;
  std::function<ModulePtr(Module& observed_module)> from_observed;
};
void register_custom_module(CustomModuleConversion conversion);
void unregister_custom_module(const std::string& float_type);

/// Module types convert() knows (for error messages and docs).
std::vector<std::string> static_quantizable_types();

}  // namespace quantkit

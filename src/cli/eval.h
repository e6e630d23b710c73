// `quantkit eval` and `quantkit generate`: language-model quality and text generation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantkit/quantizers/quantizer.h"

namespace quantkit::cli {

/// In-memory quantization applied after loading (none when weights and dynamic are unset).
struct ModelQuantOptions {
  std::string weights;  // "" | int8 | int4 | int2 | fp8_e4m3 | fp8_e5m2
  int64_t group_size = 0;
  bool asymmetric = false;
  bool mse = false;                  // per-group clipping search for the weight scales
  std::string activations = "none";  // none | int8 (calibrated on the first document)
  bool dynamic_int8 = false;         // W8A8: int8 per-token dynamic activations
  std::vector<std::string> exclude = {"lm_head"};
};

struct EvalOptions {
  std::string model, reference, text, sentences, tokenizer;
  std::string separator = "<|endoftext|>";
  int64_t max_docs = 0;  // 0 = all
  ModelQuantOptions quant;
};
int run_eval(const EvalOptions& options);

struct GenerateOptions {
  std::string model, tokenizer, prompt;
  int64_t steps = 64;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 0.9;
  uint64_t seed = 1;
  ModelQuantOptions quant;
};
int run_generate(const GenerateOptions& options);

/// Which text calibrates a method that needs it: documents [skip, skip + docs) of `text`
/// (separated by <|endoftext|>), each truncated at the model's context.
struct CalibrationOptions {
  std::string text;
  int64_t docs = 1;
  int64_t skip = 0;
  std::string tokenizer;  // llama2.c tokenizer.bin; default: found beside the model
};

/// `quantkit quantize MODEL -o OUT_DIR --method M ...`: quantize_model + save_pretrained,
/// running the calibration documents through the model when the method needs them.
int run_quantize_model(const std::string& model, const std::string& out_dir,
                       const QuantizationConfig& config, const CalibrationOptions& calibration);

}  // namespace quantkit::cli

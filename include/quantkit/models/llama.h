// Llama (LlamaForCausalLM) on quantkit's module tree, with Hugging Face's parameter names, so
// every workflow (quantize_weights, quantize_dynamic, module swaps by name) applies to it:
//   model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
//   post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head
// GQA, RoPE (rotate-half convention, rope_theta), RMSNorm, SwiGLU, tied or untied lm_head.
// Loaders: Hugging Face directories (config.json + safetensors, weights memory-mapped) and
// llama2.c checkpoints (.bin, legacy format; q/k rows are permuted to the rotate-half layout).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "quantkit/nn/layers.h"
#include "quantkit/quantizers/quantizer.h"

namespace quantkit {

struct LlamaConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = true;
  int64_t bos_token_id = 1, eos_token_id = 2;
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  /// Throws ValueError naming the first inconsistent field.
  void validate() const;
};

/// Per-layer keys and values of the positions seen so far.
struct KVCache {
  std::vector<Tensor> keys, values;  // per layer: float32 [max_positions, kv_heads * head_dim]
  int64_t length = 0;
};

class LlamaForCausalLM : public Module {
 public:
  explicit LlamaForCausalLM(LlamaConfig config);
  std::string type_name() const override { return "LlamaForCausalLM"; }
  /// Not used: language models take token ids (forward_tokens).
  Value forward(const Value& x) override;

  const LlamaConfig& config() const { return config_; }
  KVCache new_cache() const;
  /// Appends `tokens` at positions cache.length.. and returns their logits, float32
  /// [tokens.size(), vocab]. Throws ValueError when the context would exceed
  /// max_position_embeddings or an id is out of range.
  Tensor forward_tokens(const std::vector<int64_t>& tokens, KVCache& cache);
  /// Loads tensors by Hugging Face name (lm_head.weight may be absent when tied).
  void load_weights(const std::map<std::string, Tensor>& tensors);
  /// The method the model was quantized with (set by quantize_model and by loading a
  /// pre-quantized directory); empty for a float model.
  std::optional<QuantizationConfig> quantization_config;

 private:
  Tensor attention(int64_t layer, const Tensor& x, KVCache& cache, int64_t start);
  LlamaConfig config_;
  std::vector<float> inv_freq_;
};

/// Reads config.json (LlamaForCausalLM fields); throws FormatError/ValueError.
LlamaConfig read_llama_config(const std::filesystem::path& config_json);
/// A Hugging Face directory: config.json + model.safetensors (or sharded index).
std::shared_ptr<LlamaForCausalLM> load_llama_hf(const std::filesystem::path& dir);
/// A llama2.c checkpoint (.bin, legacy v0 header of 7 int32). Every size is checked against the
/// file before use.
std::shared_ptr<LlamaForCausalLM> load_llama2c(const std::filesystem::path& path);
/// Either of the above, by what `path` is.
std::shared_ptr<LlamaForCausalLM> load_llama(const std::filesystem::path& path);

/// Quantizes a loaded float model with a registered method (validate_environment, the
/// before/after weight-loading hooks) and records the config on the model.
void quantize_model(LlamaForCausalLM& model, const QuantizationConfig& config);

/// Writes a directory a user can ship: config.json (with "quantization_config" when quantized),
/// model.safetensors (float tensors, plus quantized weights stored as NAME.qdata/.scale/
/// .zero_point with quantkit.qtensor metadata), and the tokenizer files found beside `source`.
/// Tied embeddings are stored once.
void save_pretrained(LlamaForCausalLM& model, const std::filesystem::path& out_dir,
                     const std::filesystem::path& source);

/// Mean negative log-likelihood of tokens[1..] given their prefixes, each sequence evaluated
/// from position 0 and truncated at the model's context. Returns {sum of NLL, tokens predicted}.
std::pair<double, int64_t> sequence_nll(LlamaForCausalLM& model,
                                        const std::vector<int64_t>& tokens);

}  // namespace quantkit

#include "quantkit/models/llama.h"

#include "../kernels/activation.h"
#include "../kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "quantkit/io/safetensors.h"
#include "quantkit/kernels/linear.h"
#include "quantkit/nn/quantized.h"

namespace quantkit {
namespace {

class Attention : public Module {
 public:
  Attention(const LlamaConfig& c) {
    const int64_t kv = c.num_key_value_heads * c.head_dim();
    register_module("q_proj", make_module<Linear>(c.hidden_size, c.hidden_size, false));
    register_module("k_proj", make_module<Linear>(c.hidden_size, kv, false));
    register_module("v_proj", make_module<Linear>(c.hidden_size, kv, false));
    register_module("o_proj", make_module<Linear>(c.hidden_size, c.hidden_size, false));
  }
  std::string type_name() const override { return "LlamaAttention"; }
  Value forward(const Value&) override { throw ValueError("LlamaAttention runs inside the model"); }
};

class Mlp : public Module {
 public:
  Mlp(const LlamaConfig& c) {
    register_module("gate_proj", make_module<Linear>(c.hidden_size, c.intermediate_size, false));
    register_module("up_proj", make_module<Linear>(c.hidden_size, c.intermediate_size, false));
    register_module("down_proj", make_module<Linear>(c.intermediate_size, c.hidden_size, false));
  }
  std::string type_name() const override { return "LlamaMLP"; }
  // SwiGLU: down(silu(gate(x)) * up(x)).
  Value forward(const Value& x) override {
    std::vector<Tensor> gate_up =
        forward_shared_input({child("gate_proj").get(), child("up_proj").get()}, x.to_float());
    Tensor gate = gate_up[0].clone();
    const Tensor& up = gate_up[1];
    kernels::activation_kernels().silu_mul(gate.data<float>(), up.data<float>(), gate.numel(),
                                           gate.data<float>());
    return call("down_proj", gate);
  }
};

class DecoderLayer : public Module {
 public:
  DecoderLayer(const LlamaConfig& c) {
    register_module("self_attn", std::make_shared<Attention>(c));
    register_module("mlp", std::make_shared<Mlp>(c));
    register_module("input_layernorm", make_module<RMSNorm>(c.hidden_size, c.rms_norm_eps));
    register_module("post_attention_layernorm",
                    make_module<RMSNorm>(c.hidden_size, c.rms_norm_eps));
  }
  std::string type_name() const override { return "LlamaDecoderLayer"; }
  Value forward(const Value&) override {
    throw ValueError("LlamaDecoderLayer runs inside the model");
  }
};

class LlamaModel : public Module {
 public:
  LlamaModel(const LlamaConfig& c) {
    register_module("embed_tokens", make_module<Embedding>(c.vocab_size, c.hidden_size));
    auto layers = std::make_shared<ModuleList>();
    for (int64_t i = 0; i < c.num_hidden_layers; ++i)
      layers->add(std::make_shared<DecoderLayer>(c));
    register_module("layers", layers);
    register_module("norm", make_module<RMSNorm>(c.hidden_size, c.rms_norm_eps));
  }
  std::string type_name() const override { return "LlamaModel"; }
  Value forward(const Value&) override { throw ValueError("LlamaModel takes token ids"); }
};

void add_inplace(Tensor& a, const Tensor& b) {
  float* p = a.data<float>();
  const float* q = b.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) p[i] += q[i];
}

int64_t json_int(const nlohmann::json& j, const char* key, int64_t fallback, bool required) {
  if (!j.contains(key)) {
    QK_CHECK(!required, FormatError, "config.json has no '", key, "'");
    return fallback;
  }
  QK_CHECK(j[key].is_number_integer(), FormatError, "config.json: '", key, "' must be an integer");
  return j[key].get<int64_t>();
}

}  // namespace

void LlamaConfig::validate() const {
  QK_CHECK(hidden_size > 0 && intermediate_size > 0 && num_hidden_layers > 0 &&
               num_attention_heads > 0 && num_key_value_heads > 0 && vocab_size > 0 &&
               max_position_embeddings > 0,
           ValueError, "Llama config: every size must be positive");
  QK_CHECK(hidden_size % num_attention_heads == 0, ValueError, "Llama config: hidden_size ",
           hidden_size, " is not a multiple of num_attention_heads ", num_attention_heads);
  QK_CHECK(num_attention_heads % num_key_value_heads == 0, ValueError,
           "Llama config: num_attention_heads ", num_attention_heads,
           " is not a multiple of num_key_value_heads ", num_key_value_heads);
  QK_CHECK(head_dim() % 2 == 0, ValueError, "Llama config: head_dim must be even for RoPE");
  QK_CHECK(hidden_size <= (1 << 16) && intermediate_size <= (1 << 18) && num_hidden_layers <= 512 &&
               vocab_size <= (1 << 22) && max_position_embeddings <= (1 << 20),
           ValueError, "Llama config: sizes beyond what quantkit supports");
}

LlamaForCausalLM::LlamaForCausalLM(LlamaConfig config) : config_(config) {
  config_.validate();
  register_module("model", std::make_shared<LlamaModel>(config_));
  register_module("lm_head", make_module<Linear>(config_.hidden_size, config_.vocab_size, false));
  const int64_t hd = config_.head_dim();
  for (int64_t i = 0; i < hd; i += 2) {
    // HF: inv_freq = 1 / theta^(arange(0, hd, 2) / hd) in float32.
    inv_freq_.push_back(static_cast<float>(
        1.0 / std::pow(config_.rope_theta, static_cast<double>(i) / static_cast<double>(hd))));
  }
  eval();
}

Value LlamaForCausalLM::forward(const Value&) {
  throw ValueError("LlamaForCausalLM takes token ids: call forward_tokens(ids, cache)");
}

void LlamaForCausalLM::load_weights(const std::map<std::string, Tensor>& tensors) {
  std::map<std::string, Tensor> all = tensors;
  // A quantized head (pre-quantized checkpoint, lm_head not excluded) already holds its weight;
  // only a float head takes the tied embedding.
  if (!all.count("lm_head.weight") && find("lm_head").type_name() == "Linear") {
    QK_CHECK(config_.tie_word_embeddings && all.count("model.embed_tokens.weight"), ValueError,
             "checkpoint has no lm_head.weight and the embeddings are not tied");
    all["lm_head.weight"] = all.at("model.embed_tokens.weight");
  }
  for (auto it = all.begin(); it != all.end();) {
    // Buffers some exporters add; not parameters of the model.
    if (it->first.find("rotary_emb.inv_freq") != std::string::npos) {
      it = all.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [name, t] : all) {
    if (t.dtype() != DType::kFloat32) t = t.to(DType::kFloat32);
  }
  load_state_dict(all);
}

KVCache LlamaForCausalLM::new_cache() const {
  KVCache c;
  const int64_t kv = config_.num_key_value_heads * config_.head_dim();
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    c.keys.push_back(Tensor::zeros({config_.max_position_embeddings, kv}, DType::kFloat32));
    c.values.push_back(Tensor::zeros({config_.max_position_embeddings, kv}, DType::kFloat32));
  }
  return c;
}

Tensor LlamaForCausalLM::attention(int64_t layer, const Tensor& x, KVCache& cache, int64_t start) {
  Module& attn = find("model.layers." + std::to_string(layer) + ".self_attn");
  const int64_t t = x.size(0), hd = config_.head_dim();
  const int64_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const int64_t kv = kv_heads * hd, group = heads / kv_heads;
  std::vector<Tensor> qkv = forward_shared_input(
      {attn.child("q_proj").get(), attn.child("k_proj").get(), attn.child("v_proj").get()}, x);
  Tensor q = qkv[0].clone();
  const Tensor& k = qkv[1];
  const Tensor& v = qkv[2];
  // One cos/sin table per position serves every query and key head.
  const int64_t half = hd / 2;
  std::vector<float> cos_table(static_cast<size_t>(half)), sin_table(static_cast<size_t>(half));
  auto rope = [&](float* row, int64_t nheads) {
    for (int64_t h = 0; h < nheads; ++h) {
      float* p = row + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float a = p[i], b = p[i + half];
        const float c = cos_table[static_cast<size_t>(i)], s = sin_table[static_cast<size_t>(i)];
        p[i] = a * c - b * s;
        p[i + half] = b * c + a * s;
      }
    }
  };
  float* keys = cache.keys[static_cast<size_t>(layer)].data<float>();
  float* values = cache.values[static_cast<size_t>(layer)].data<float>();
  for (int64_t r = 0; r < t; ++r) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(start + r) * inv_freq_[static_cast<size_t>(i)];
      cos_table[static_cast<size_t>(i)] = std::cos(angle);
      sin_table[static_cast<size_t>(i)] = std::sin(angle);
    }
    rope(q.data<float>() + r * config_.hidden_size, heads);
    std::copy_n(k.data<float>() + r * kv, kv, keys + (start + r) * kv);
    std::copy_n(v.data<float>() + r * kv, kv, values + (start + r) * kv);
    rope(keys + (start + r) * kv, kv_heads);
  }
  Tensor out = Tensor::zeros({t, config_.hidden_size}, DType::kFloat32);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int threads = t * heads * (start + t) * hd > (1 << 16) ? num_threads() : 1;
  const auto attend = kernels::attention_kernels().attend;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<float> scores(static_cast<size_t>(group * (start + t)));
    // Dynamic: in a causal prefill, later rows attend over more positions.
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t r = 0; r < t; ++r) {
      for (int64_t h = 0; h < kv_heads; ++h) {
        // The `group` query heads of KV head h; query r sees positions [0, start + r] (causal).
        const int64_t row = r * config_.hidden_size + h * group * hd;
        attend({q.data<float>() + row, hd, group, keys + h * hd, values + h * hd, kv, start + r + 1,
                hd, scale, out.data<float>() + row, hd, scores.data()});
      }
    }
  }
  return attn.call("o_proj", out).to_float();
}

Tensor LlamaForCausalLM::forward_tokens(const std::vector<int64_t>& tokens, KVCache& cache) {
  const auto t = static_cast<int64_t>(tokens.size());
  QK_CHECK(t > 0, ValueError, "forward_tokens needs at least one token");
  QK_CHECK(cache.length + t <= config_.max_position_embeddings, ValueError, "context of ",
           cache.length + t, " tokens exceeds max_position_embeddings ",
           config_.max_position_embeddings);
  QK_CHECK(static_cast<int64_t>(cache.keys.size()) == config_.num_hidden_layers, ValueError,
           "KV cache does not belong to this model: use new_cache()");
  Module& model = *child("model");
  Tensor h = static_cast<Embedding&>(*model.child("embed_tokens")).lookup(tokens);
  auto& layers = static_cast<ModuleList&>(*model.child("layers"));
  for (int64_t l = 0; l < layers.size(); ++l) {
    Module& layer = layers.at(l);
    const Tensor normed = layer.call("input_layernorm", h).to_float();
    add_inplace(h, attention(l, normed, cache, cache.length));
    const Tensor normed2 = layer.call("post_attention_layernorm", h).to_float();
    add_inplace(h, layer.call("mlp", normed2).to_float());
  }
  cache.length += t;
  const Tensor normed = model.call("norm", h).to_float();
  return call("lm_head", normed).to_float();
}

LlamaConfig read_llama_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  QK_CHECK(in.good(), IoError, "cannot open ", path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(path.string() + ": not valid JSON (" + e.what() + ")");
  }
  QK_CHECK(j.is_object(), FormatError, path.string(), ": expected a JSON object");
  if (j.contains("model_type")) {
    QK_CHECK(j["model_type"] == "llama", ValueError, path.string(), ": model_type ",
             j["model_type"].dump(), " is not llama");
  }
  LlamaConfig c;
  c.hidden_size = json_int(j, "hidden_size", 0, true);
  c.intermediate_size = json_int(j, "intermediate_size", 0, true);
  c.num_hidden_layers = json_int(j, "num_hidden_layers", 0, true);
  c.num_attention_heads = json_int(j, "num_attention_heads", 0, true);
  c.num_key_value_heads = json_int(j, "num_key_value_heads", c.num_attention_heads, false);
  c.vocab_size = json_int(j, "vocab_size", 0, true);
  c.max_position_embeddings = json_int(j, "max_position_embeddings", 2048, false);
  c.bos_token_id = json_int(j, "bos_token_id", 1, false);
  c.eos_token_id = json_int(j, "eos_token_id", 2, false);
  if (j.contains("rms_norm_eps")) c.rms_norm_eps = j["rms_norm_eps"].get<double>();
  if (j.contains("rope_theta")) c.rope_theta = j["rope_theta"].get<double>();
  if (j.contains("tie_word_embeddings"))
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  c.validate();
  return c;
}

std::shared_ptr<LlamaForCausalLM> load_llama_hf(const std::filesystem::path& dir) {
  auto model = std::make_shared<LlamaForCausalLM>(read_llama_config(dir / "config.json"));
  const Checkpoint ckpt = Checkpoint::open(dir);
  std::optional<QuantizationConfig> qconfig;
  {
    std::ifstream in(dir / "config.json");
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.contains("quantization_config")) {
      qconfig = QuantizationConfig::from_json(j["quantization_config"].dump());
    }
  }
  std::set<std::string> consumed;
  if (qconfig) {
    // Pre-quantized: swap modules for quantized ones and fill them from the checkpoint.
    const auto quantizer = make_quantizer(*qconfig);
    quantizer->validate_environment(*model);
    quantizer->process_model_before_weight_loading(*model, true);
    for (const auto& name : quantizer->load_pre_quantized(*model, ckpt)) consumed.insert(name);
    model->quantization_config = qconfig;
  }
  std::map<std::string, Tensor> tensors;
  for (const auto& name : ckpt.names()) {
    if (consumed.count(name)) continue;
    QK_CHECK(!ckpt.is_quantized(name), FormatError, dir.string(), ": '", name,
             "' is quantized but quantization_config does not convert it");
    tensors[name] = ckpt.tensor(name);
  }
  model->load_weights(tensors);
  return model;
}

void quantize_model(LlamaForCausalLM& model, const QuantizationConfig& config) {
  QK_CHECK(!model.quantization_config, ValueError, "the model is already quantized (",
           model.quantization_config->quant_method, ")");
  const auto quantizer = make_quantizer(config);
  quantizer->validate_environment(model);
  quantizer->process_model_before_weight_loading(model, false);
  quantizer->process_model_after_weight_loading(model);
  model.quantization_config = config;
}

void save_pretrained(LlamaForCausalLM& model, const std::filesystem::path& out_dir,
                     const std::filesystem::path& source) {
  namespace fs = std::filesystem;
  fs::create_directories(out_dir);
  const LlamaConfig& c = model.config();
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"model_type", "llama"},
                      {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size},
                      {"num_hidden_layers", c.num_hidden_layers},
                      {"num_attention_heads", c.num_attention_heads},
                      {"num_key_value_heads", c.num_key_value_heads},
                      {"vocab_size", c.vocab_size},
                      {"max_position_embeddings", c.max_position_embeddings},
                      {"rms_norm_eps", c.rms_norm_eps},
                      {"rope_theta", c.rope_theta},
                      {"hidden_act", "silu"},
                      {"tie_word_embeddings", c.tie_word_embeddings},
                      {"bos_token_id", c.bos_token_id},
                      {"eos_token_id", c.eos_token_id},
                      {"torch_dtype", "float32"}};
  SafetensorsWriter writer;
  if (model.quantization_config) {
    j["quantization_config"] = nlohmann::json::parse(model.quantization_config->to_json());
    const auto quantizer = make_quantizer(*model.quantization_config);
    QK_CHECK(quantizer->is_serializable(), ValueError, "method '",
             model.quantization_config->quant_method, "' cannot be saved");
    for (const auto& [name, q] : quantizer->quantized_tensors(model)) writer.add(name, q);
    for (const auto& [name, t] : quantizer->extra_tensors(model)) writer.add(name, t);
  }
  const auto state = model.state_dict();
  for (const auto& [name, t] : state) {
    // Tied: lm_head shares the embedding's bytes, and the loader restores it from them.
    if (name == "lm_head.weight" && c.tie_word_embeddings &&
        state.at("model.embed_tokens.weight").bytes() == t.bytes()) {
      continue;
    }
    writer.add(name, t);
  }
  writer.set_metadata("format", "pt");
  writer.write(out_dir / "model.safetensors");
  std::ofstream(out_dir / "config.json") << j.dump(2) << "\n";
  const fs::path src_dir = fs::is_directory(source) ? source : source.parent_path();
  for (const fs::path& dir : {src_dir, src_dir.parent_path()}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string f = e.path().filename().string();
      const bool tokenizer = f == "tokenizer.json" || f == "tokenizer_config.json" ||
                             f == "tokenizer.model" || f == "special_tokens_map.json" ||
                             f == "vocab.txt" || f == "tokenizer.bin" ||
                             (f.rfind("tok", 0) == 0 && e.path().extension() == ".bin");
      if (tokenizer && e.is_regular_file() && !fs::exists(out_dir / f)) {
        fs::copy_file(e.path(), out_dir / f);
      }
    }
  }
}

std::pair<double, int64_t> sequence_nll(LlamaForCausalLM& model,
                                        const std::vector<int64_t>& tokens) {
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(tokens.size()),
                                      model.config().max_position_embeddings);
  if (n < 2) return {0.0, 0};
  KVCache cache = model.new_cache();
  const std::vector<int64_t> prefix(tokens.begin(), tokens.begin() + n);
  const Tensor logits = model.forward_tokens(prefix, cache);
  const int64_t vocab = model.config().vocab_size;
  double nll = 0.0;
  for (int64_t i = 0; i + 1 < n; ++i) {
    const float* row = logits.data<float>() + i * vocab;
    const float mx = *std::max_element(row, row + vocab);
    double sum = 0.0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
    nll += std::log(sum) + mx - row[tokens[static_cast<size_t>(i + 1)]];
  }
  return {nll, n - 1};
}

}  // namespace quantkit

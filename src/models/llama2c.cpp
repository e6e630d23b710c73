// llama2.c legacy checkpoints: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size (negative: separate classifier), seq_len), then float32 arrays in a fixed order.
#include <cstring>
#include <fstream>

#include "quantkit/models/llama.h"

namespace quantkit {
namespace {

// llama2.c rotates interleaved pairs (2i, 2i+1) of each head; the model here rotates halves
// (i, i + hd/2), as Hugging Face does. Row h*hd + 2i + j moves to h*hd + j*hd/2 + i.
Tensor interleaved_to_halves(const float* w, int64_t heads, int64_t hd, int64_t cols) {
  Tensor out = Tensor::empty({heads * hd, cols}, DType::kFloat32);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        std::memcpy(out.data<float>() + (h * hd + j * (hd / 2) + i) * cols,
                    w + (h * hd + 2 * i + j) * cols, static_cast<size_t>(cols) * 4);
      }
    }
  }
  return out;
}

}  // namespace

std::shared_ptr<LlamaForCausalLM> load_llama2c(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  QK_CHECK(in.good(), IoError, "cannot open ", path.string());
  in.seekg(0, std::ios::end);
  const auto size = static_cast<int64_t>(in.tellg());
  in.seekg(0);
  QK_CHECK(size >= 28, FormatError, path.string(), ": too short for a llama2.c header");
  auto buffer = std::shared_ptr<uint8_t[]>(new uint8_t[static_cast<size_t>(size)]);
  in.read(reinterpret_cast<char*>(buffer.get()), size);
  QK_CHECK(in.good(), IoError, "short read from ", path.string());
  int32_t h[7];
  std::memcpy(h, buffer.get(), sizeof(h));
  LlamaConfig c;
  c.hidden_size = h[0];
  c.intermediate_size = h[1];
  c.num_hidden_layers = h[2];
  c.num_attention_heads = h[3];
  c.num_key_value_heads = h[4];
  c.tie_word_embeddings = h[5] > 0;
  c.vocab_size = h[5] > 0 ? h[5] : -static_cast<int64_t>(h[5]);
  c.max_position_embeddings = h[6];
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw FormatError(path.string() + ": not a llama2.c checkpoint (" + e.what() + ")");
  }
  const int64_t dim = c.hidden_size, hidden = c.intermediate_size, layers = c.num_hidden_layers;
  const int64_t hd = c.head_dim(), kv = c.num_key_value_heads * hd, vocab = c.vocab_size;
  const int64_t floats =
      vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim) + dim +
      c.max_position_embeddings * hd + (c.tie_word_embeddings ? 0 : vocab * dim);
  QK_CHECK(28 + floats * 4 == size, FormatError, path.string(), ": header promises ",
           28 + floats * 4, " bytes (dim ", dim, ", hidden ", hidden, ", layers ", layers,
           ", vocab ", vocab, "), the file has ", size);
  const float* p = reinterpret_cast<const float*>(buffer.get() + 28);
  std::map<std::string, Tensor> t;
  // Views on the buffer (it is 4-byte aligned after the 28-byte header), kept alive by it.
  auto take = [&](const Shape& shape) {
    const int64_t n = shape_numel(shape);
    Tensor v =
        Tensor::view(buffer, {reinterpret_cast<const uint8_t*>(p), static_cast<size_t>(n * 4)},
                     shape, DType::kFloat32);
    p += n;
    return v;
  };
  auto per_layer = [&](const std::string& suffix, const Shape& shape) {
    for (int64_t l = 0; l < layers; ++l) {
      t["model.layers." + std::to_string(l) + "." + suffix] = take(shape);
    }
  };
  t["model.embed_tokens.weight"] = take({vocab, dim});
  per_layer("input_layernorm.weight", {dim});
  for (int64_t l = 0; l < layers; ++l) {
    t["model.layers." + std::to_string(l) + ".self_attn.q_proj.weight"] =
        interleaved_to_halves(take({dim, dim}).data<float>(), c.num_attention_heads, hd, dim);
  }
  for (int64_t l = 0; l < layers; ++l) {
    t["model.layers." + std::to_string(l) + ".self_attn.k_proj.weight"] =
        interleaved_to_halves(take({kv, dim}).data<float>(), c.num_key_value_heads, hd, dim);
  }
  per_layer("self_attn.v_proj.weight", {kv, dim});
  per_layer("self_attn.o_proj.weight", {dim, dim});
  per_layer("post_attention_layernorm.weight", {dim});
  per_layer("mlp.gate_proj.weight", {hidden, dim});
  per_layer("mlp.down_proj.weight", {dim, hidden});
  per_layer("mlp.up_proj.weight", {hidden, dim});
  t["model.norm.weight"] = take({dim});
  take({c.max_position_embeddings, hd});  // RoPE tables: recomputed
  if (!c.tie_word_embeddings) t["lm_head.weight"] = take({vocab, dim});
  auto model = std::make_shared<LlamaForCausalLM>(c);
  model->load_weights(t);
  return model;
}

std::shared_ptr<LlamaForCausalLM> load_llama(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path)) return load_llama_hf(path);
  QK_CHECK(std::filesystem::exists(path), IoError, path.string(), " does not exist");
  return load_llama2c(path);
}

}  // namespace quantkit

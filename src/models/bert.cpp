#include "quantkit/models/bert.h"

#include "../kernels/attention.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "quantkit/io/safetensors.h"
#include "quantkit/kernels/linear.h"

namespace quantkit {
namespace {

struct Node : Module {
  explicit Node(std::string type) : type_(std::move(type)) {}
  std::string type_name() const override { return type_; }
  Value forward(const Value&) override { throw ValueError(type_ + " runs inside BertModel"); }
  std::string type_;
};

ModulePtr node(const std::string& type, std::vector<std::pair<std::string, ModulePtr>> children) {
  auto n = std::make_shared<Node>(type);
  for (auto& [name, m] : children) n->register_module(name, m);
  return n;
}

void add_inplace(Tensor& a, const Tensor& b) {
  float* __restrict out = a.data<float>();
  const float* __restrict in = b.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) out[i] += in[i];
}

}  // namespace

void BertConfig::validate() const {
  QK_CHECK(vocab_size > 0 && hidden_size > 0 && num_hidden_layers > 0 && num_attention_heads > 0 &&
               intermediate_size > 0 && max_position_embeddings > 0 && type_vocab_size > 0,
           ValueError, "BERT config: every size must be positive");
  QK_CHECK(hidden_size % num_attention_heads == 0, ValueError, "BERT config: hidden_size ",
           hidden_size, " is not a multiple of num_attention_heads ", num_attention_heads);
  QK_CHECK(vocab_size <= (1 << 22) && hidden_size <= (1 << 16) && num_hidden_layers <= 512 &&
               max_position_embeddings <= (1 << 16),
           ValueError, "BERT config: sizes beyond what quantkit supports");
}

BertModel::BertModel(BertConfig c) : config_(c) {
  config_.validate();
  const int64_t h = c.hidden_size;
  register_module(
      "embeddings",
      node("BertEmbeddings",
           {{"word_embeddings", make_module<Embedding>(c.vocab_size, h)},
            {"position_embeddings", make_module<Embedding>(c.max_position_embeddings, h)},
            {"token_type_embeddings", make_module<Embedding>(c.type_vocab_size, h)},
            {"LayerNorm", make_module<LayerNorm>(Shape{h}, c.layer_norm_eps)}}));
  auto layers = std::make_shared<ModuleList>();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    layers->add(node(
        "BertLayer",
        {{"attention",
          node("BertAttention",
               {{"self", node("BertSelfAttention", {{"query", make_module<Linear>(h, h)},
                                                    {"key", make_module<Linear>(h, h)},
                                                    {"value", make_module<Linear>(h, h)}})},
                {"output",
                 node("BertSelfOutput",
                      {{"dense", make_module<Linear>(h, h)},
                       {"LayerNorm", make_module<LayerNorm>(Shape{h}, c.layer_norm_eps)}})}})},
         {"intermediate",
          node("BertIntermediate", {{"dense", make_module<Linear>(h, c.intermediate_size)},
                                    {"intermediate_act_fn", make_module<GELU>()}})},
         {"output", node("BertOutput",
                         {{"dense", make_module<Linear>(c.intermediate_size, h)},
                          {"LayerNorm", make_module<LayerNorm>(Shape{h}, c.layer_norm_eps)}})}}));
  }
  register_module("encoder", node("BertEncoder", {{"layer", layers}}));
  eval();
}

Value BertModel::forward(const Value&) {
  throw ValueError("BertModel takes token ids: call encode(batch) or embed(batch)");
}

std::vector<Tensor> BertModel::encode(const std::vector<std::vector<int64_t>>& batch) {
  QK_CHECK(!batch.empty(), ValueError, "BertModel::encode needs at least one sequence");
  const int64_t hsz = config_.hidden_size, heads = config_.num_attention_heads;
  const int64_t hd = hsz / heads, b = static_cast<int64_t>(batch.size());
  int64_t t = 0;
  for (const auto& s : batch) {
    QK_CHECK(!s.empty() && static_cast<int64_t>(s.size()) <= config_.max_position_embeddings,
             ValueError, "sequence length ", s.size(), " is outside [1, ",
             config_.max_position_embeddings, "]");
    t = std::max<int64_t>(t, static_cast<int64_t>(s.size()));
  }
  // Embeddings of the padded batch [b * t, h]: word + position + token type 0.
  Module& emb = *child("embeddings");
  std::vector<int64_t> ids, positions;
  for (const auto& s : batch) {
    for (int64_t i = 0; i < t; ++i) {
      ids.push_back(i < static_cast<int64_t>(s.size()) ? s[static_cast<size_t>(i)] : 0);
      positions.push_back(i);
    }
  }
  Tensor x = static_cast<Embedding&>(*emb.child("word_embeddings")).lookup(ids).clone();
  add_inplace(x, static_cast<Embedding&>(*emb.child("position_embeddings")).lookup(positions));
  const Tensor type0 = static_cast<Embedding&>(*emb.child("token_type_embeddings")).lookup({0});
  for (int64_t r = 0; r < b * t; ++r) {
    float* __restrict row = x.data<float>() + r * hsz;
    const float* __restrict type_row = type0.data<float>();
    for (int64_t i = 0; i < hsz; ++i) row[i] += type_row[i];
  }
  x = emb.call("LayerNorm", x).to_float();
  auto& layers = static_cast<ModuleList&>(*child("encoder")->child("layer"));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t l = 0; l < layers.size(); ++l) {
    Module& layer = layers.at(l);
    Module& self = *layer.child("attention")->child("self");
    const Tensor q = self.call("query", x).to_float();
    const Tensor k = self.call("key", x).to_float();
    const Tensor v = self.call("value", x).to_float();
    Tensor ctx = Tensor::zeros({b * t, hsz}, DType::kFloat32);
    const auto attend = kernels::attention_kernels().attend;
#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(num_threads())
    for (int64_t s = 0; s < b; ++s) {
      for (int64_t h = 0; h < heads; ++h) {
        // Every query row of sequence s and head h against its len keys: padded positions
        // (>= len) are masked out by not passing them.
        const auto len = static_cast<int64_t>(batch[static_cast<size_t>(s)].size());
        std::vector<float> scores(static_cast<size_t>(len * len));
        const int64_t first = s * t * hsz + h * hd;
        attend({q.data<float>() + first, hsz, len, k.data<float>() + first, v.data<float>() + first,
                hsz, len, hd, scale, ctx.data<float>() + first, hsz, scores.data()});
      }
    }
    Module& attn_out = *layer.child("attention")->child("output");
    Tensor y = attn_out.call("dense", ctx).to_float().clone();
    add_inplace(y, x);
    x = attn_out.call("LayerNorm", y).to_float();
    Module& inter = *layer.child("intermediate");
    const Tensor hdn = inter.call("intermediate_act_fn", inter.call("dense", x)).to_float();
    Module& out = *layer.child("output");
    Tensor z = out.call("dense", hdn).to_float().clone();
    add_inplace(z, x);
    x = out.call("LayerNorm", z).to_float();
  }
  std::vector<Tensor> result;
  for (int64_t s = 0; s < b; ++s) {
    const auto len = static_cast<int64_t>(batch[static_cast<size_t>(s)].size());
    Tensor h = Tensor::empty({len, hsz}, DType::kFloat32);
    std::copy_n(x.data<float>() + s * t * hsz, len * hsz, h.data<float>());
    result.push_back(h);
  }
  return result;
}

Tensor BertModel::embed(const std::vector<std::vector<int64_t>>& batch) {
  const std::vector<Tensor> hidden = encode(batch);
  const int64_t hsz = config_.hidden_size;
  Tensor out = Tensor::empty({static_cast<int64_t>(batch.size()), hsz}, DType::kFloat32);
  for (size_t s = 0; s < hidden.size(); ++s) {
    const int64_t len = hidden[s].size(0);
    std::vector<double> mean(static_cast<size_t>(hsz), 0.0);
    for (int64_t i = 0; i < len; ++i) {
      for (int64_t e = 0; e < hsz; ++e) mean[e] += hidden[s].data<float>()[i * hsz + e];
    }
    double norm = 0;
    for (auto& m : mean) {
      m /= static_cast<double>(len);
      norm += m * m;
    }
    norm = std::max(std::sqrt(norm), 1e-12);
    for (int64_t e = 0; e < hsz; ++e) {
      out.data<float>()[static_cast<int64_t>(s) * hsz + e] = static_cast<float>(mean[e] / norm);
    }
  }
  return out;
}

std::shared_ptr<BertModel> load_bert(const std::filesystem::path& dir) {
  std::ifstream in(dir / "config.json");
  QK_CHECK(in.good(), IoError, "cannot open ", (dir / "config.json").string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError((dir / "config.json").string() + ": not valid JSON (" + e.what() + ")");
  }
  QK_CHECK(j.value("model_type", "bert") == "bert", ValueError, dir.string(),
           ": model_type is not bert");
  BertConfig c;
  try {
    c.vocab_size = j.at("vocab_size");
    c.hidden_size = j.at("hidden_size");
    c.num_hidden_layers = j.at("num_hidden_layers");
    c.num_attention_heads = j.at("num_attention_heads");
    c.intermediate_size = j.at("intermediate_size");
    c.max_position_embeddings = j.value("max_position_embeddings", 512);
    c.type_vocab_size = j.value("type_vocab_size", 2);
    c.layer_norm_eps = j.value("layer_norm_eps", 1e-12);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError((dir / "config.json").string() + ": " + e.what());
  }
  QK_CHECK(j.value("hidden_act", "gelu") == "gelu", ValueError, "BERT hidden_act ",
           j.value("hidden_act", ""), " is not supported (gelu)");
  auto model = std::make_shared<BertModel>(c);
  const Checkpoint ckpt = Checkpoint::open(dir);
  std::map<std::string, Tensor> tensors;
  for (const auto& name : ckpt.names()) {
    std::string n = name.rfind("bert.", 0) == 0 ? name.substr(5) : name;
    if (n == "embeddings.position_ids" || n.rfind("pooler.", 0) == 0) continue;  // unused
    Tensor t = ckpt.tensor(name);
    tensors[n] = t.dtype() == DType::kFloat32 ? t : t.to(DType::kFloat32);
  }
  model->load_state_dict(tensors);
  return model;
}

}  // namespace quantkit

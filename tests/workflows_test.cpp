#include <gtest/gtest.h>

#include <cmath>

#include "quantkit/workflows/quantize_checkpoint.h"
#include "test_util.h"

namespace quantkit {
namespace {

TEST(NameMatches, SubstringOrGlob) {
  EXPECT_TRUE(name_matches("model.embed_tokens.weight", "embed_tokens"));
  EXPECT_FALSE(name_matches("model.norm.weight", "embed"));
  EXPECT_TRUE(name_matches("model.layers.0.mlp.up_proj.weight", "*.layers.0.*"));
  EXPECT_FALSE(name_matches("model.layers.10.mlp.up_proj.weight", "*.layers.0.*"));
  EXPECT_TRUE(name_matches("lm_head.weight", "lm_head*"));
}

TEST(QuantizeCheckpoint, Stories260KInt4G32QuantizesEveryMatrixWithPartialGroups) {
  const Checkpoint ckpt = Checkpoint::open(testing::shared_dir() / "models/stories260K/hf");
  CheckpointQuantOptions options;
  options.weights = DType::kInt4;
  options.group_size = 32;
  options.exclude = {"embed_tokens"};
  SafetensorsWriter writer;
  size_t progress_calls = 0;
  const auto reports = quantize_checkpoint(
      ckpt, options, writer, [&](size_t, size_t, const std::string&) { ++progress_calls; });
  EXPECT_EQ(progress_calls, reports.size() + 1);
  int quantized = 0, partial = 0;
  for (const TensorReport& r : reports) {
    if (r.name == "model.embed_tokens.weight") {
      EXPECT_EQ(r.scheme, "kept (excluded)");
    } else if (r.shape.size() == 2) {
      // Every other matrix is quantized: nothing silently stays float, K = 172 included.
      EXPECT_TRUE(r.quantized) << r.name << " " << r.scheme;
      EXPECT_GT(r.sqnr_db, 15.0) << r.name;
      EXPECT_LT(r.bytes_after, r.bytes_before / 4) << r.name;
      ++quantized;
      partial += r.scheme.find("partial last group") != std::string::npos;
    } else {
      EXPECT_FALSE(r.quantized) << r.name;
    }
  }
  EXPECT_EQ(quantized, 35);
  EXPECT_EQ(partial, 5);  // the five down_proj matrices with K = 172
  const auto path = testing::temp_path("stories_int4.safetensors");
  writer.write(path);
  const Checkpoint back = Checkpoint::open(path);
  EXPECT_TRUE(back.is_quantized("model.layers.4.mlp.down_proj.weight"));
  EXPECT_EQ(back.qtensor("model.layers.4.mlp.down_proj.weight").shape(), (Shape{64, 172}));
  EXPECT_NE(back.metadata().at("quantkit.config").find("\"group_size\":32"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(QuantizeCheckpoint, RejectsInconsistentOptions) {
  CheckpointQuantOptions options;
  options.weights = DType::kUInt4;
  EXPECT_THROW(options.spec(), ValueError);  // symmetric needs a signed type
  options.weights = DType::kFloat8E4M3;
  options.symmetric = false;
  EXPECT_THROW(options.spec(), ValueError);
  options.symmetric = true;
  options.group_size = -3;
  EXPECT_THROW(options.spec(), ValueError);
}

}  // namespace
}  // namespace quantkit

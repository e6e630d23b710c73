#include <gtest/gtest.h>

#include <unistd.h>
#include <fstream>
#include <nlohmann/json.hpp>

#include "quantkit/io/safetensors.h"
#include "test_util.h"

namespace quantkit {
namespace {

namespace fs = std::filesystem;
using testing::random_tensor;
using testing::temp_path;

/// Builds a safetensors byte string from a header object and a data section.
std::string make_file(const nlohmann::json& header, const std::string& data) {
  const std::string text = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  return out + text + data;
}

void expect_format_error(const std::string& bytes, const std::string& needle) {
  auto owner = std::make_shared<std::string>(bytes);
  const std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(owner->data()),
                                      owner->size());
  try {
    SafetensorsFile::parse(owner, span, "test.safetensors");
    ADD_FAILURE() << "accepted a malformed file; expected an error mentioning '" << needle << "'";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RejectsMalformedFilesWithSpecificMessages) {
  using nlohmann::json;
  const std::string data(16, '\0');
  expect_format_error("abc", "fewer than the 8-byte");
  expect_format_error(std::string("\xff\xff\xff\xff\x00\x00\x00\x00", 8) + "{}", "header length");
  expect_format_error(make_file(json::array(), ""), "JSON object");
  std::string not_json = make_file(json::object(), "");
  not_json[8] = '[';
  expect_format_error(not_json, "JSON");
  expect_format_error(
      make_file({{"a", {{"dtype", "Q9"}, {"shape", {4}}, {"data_offsets", {0, 16}}}}}, data),
      "unsupported safetensors dtype");
  expect_format_error(
      make_file({{"a", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 32}}}}}, data),
      "outside the data section");
  expect_format_error(
      make_file({{"a", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 16}}}}}, data),
      "needs 12 bytes");
  expect_format_error(
      make_file({{"a", {{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 16}}}}}, data),
      "must not be negative");
  expect_format_error(
      make_file(
          {{"a", {{"dtype", "F32"}, {"shape", {1LL << 40, 1LL << 40}}, {"data_offsets", {0, 16}}}}},
          data),
      "more elements than int64");
  expect_format_error(
      make_file(
          {{"a", {{"dtype", "F32"}, {"shape", {1LL << 30, 1LL << 30}}, {"data_offsets", {0, 16}}}}},
          data),
      "larger than the file");
  expect_format_error(
      make_file({{"a", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
                 {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 16}}}}},
                data),
      "overlap");
  expect_format_error(
      make_file({{"a", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {16, 0}}}}}, data),
      "outside the data section");
  expect_format_error(make_file({{"__metadata__", {{"k", 1}}}}, ""), "must be a string");
  expect_format_error(make_file({{"a", {{"dtype", "F32"}, {"shape", {4}}}}}, data), "data_offsets");
  std::string deep(8, '\0');
  const std::string nested = std::string(5000, '[') + std::string(5000, ']');
  for (int i = 0; i < 8; ++i)
    deep[static_cast<size_t>(i)] = static_cast<char>((nested.size() >> (8 * i)) & 0xFF);
  expect_format_error(deep + nested, "nested deeper");
}

TEST(Safetensors, WritesAndReadsBackEveryDtypeAndQTensorsBitForBit) {
  const fs::path path = temp_path("roundtrip.safetensors");
  const Tensor f32 = random_tensor({3, 5}, 1);
  const Tensor bf16 = f32.to(DType::kBFloat16);
  const Tensor i64 =
      Tensor::from_values<int64_t>(std::vector<int64_t>{1, -2, 3}, {3}, DType::kInt64);
  const QTensor q4 = quantize(random_tensor({6, 50}, 2),
                              AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(32)));
  AffineSpec asym = AffineSpec::for_dtype(DType::kUInt8, Granularity::per_axis(0));
  const QTensor q8 = quantize(random_tensor({4, 9}, 3), asym);
  const QTensor qf8 = quantize(random_tensor({4, 9}, 4), AffineSpec::for_dtype(DType::kFloat8E4M3));
  AffineSpec half_scales = AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(32));
  half_scales.scale_dtype = DType::kFloat16;
  const QTensor q4h = quantize(random_tensor({6, 50}, 5), half_scales);
  SafetensorsWriter writer;
  writer.add("w.f32", f32);
  writer.add("w.bf16", bf16);
  writer.add("ids", i64);
  writer.add("layer.q4", q4);
  writer.add("layer.q8", q8);
  writer.add("layer.qf8", qf8);
  writer.add("layer.q4h", q4h);
  writer.set_metadata("format", "pt");
  writer.write(path);

  const Checkpoint ckpt = Checkpoint::open(path);
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"ids", "layer.q4", "layer.q4h", "layer.q8",
                                                    "layer.qf8", "w.bf16", "w.f32"}));
  // Scales that are all float16 values are stored as F16 and come back as the same float32.
  int scales_seen = 0;
  for (const TensorEntry& e : ckpt.raw_entries()) {
    if (e.name == "layer.q4h.scale" || e.name == "layer.q4.scale") {
      EXPECT_EQ(e.dtype, e.name == "layer.q4h.scale" ? DType::kFloat16 : DType::kFloat32);
      ++scales_seen;
    }
  }
  EXPECT_EQ(scales_seen, 2);
  EXPECT_EQ(0, std::memcmp(ckpt.qtensor("layer.q4h").scale().bytes(), q4h.scale().bytes(),
                           static_cast<size_t>(q4h.scale().nbytes())));
  EXPECT_EQ(ckpt.metadata().at("format"), "pt");
  const Tensor f32_back = ckpt.tensor("w.f32");
  EXPECT_TRUE(f32_back.is_view());
  EXPECT_EQ(0, std::memcmp(f32_back.bytes(), f32.bytes(), static_cast<size_t>(f32.nbytes())));
  EXPECT_EQ(0, std::memcmp(ckpt.tensor("w.bf16").bytes(), bf16.bytes(),
                           static_cast<size_t>(bf16.nbytes())));
  EXPECT_EQ(ckpt.tensor("ids").data<int64_t>()[1], -2);
  for (const auto& [name, q] : {std::pair{"layer.q4", q4}, std::pair{"layer.q8", q8},
                                std::pair{"layer.qf8", qf8}, std::pair{"layer.q4h", q4h}}) {
    ASSERT_TRUE(ckpt.is_quantized(name));
    const QTensor back = ckpt.qtensor(name);
    EXPECT_EQ(back.shape(), q.shape());
    EXPECT_EQ(back.scheme().block_size, q.scheme().block_size);
    EXPECT_EQ(0, std::memcmp(back.data().bytes(), q.data().bytes(),
                             static_cast<size_t>(q.data().nbytes())));
    const Tensor a = back.dequantize(), b = q.dequantize();
    EXPECT_EQ(0, std::memcmp(a.bytes(), b.bytes(), static_cast<size_t>(a.nbytes()))) << name;
  }
  EXPECT_THROW(ckpt.tensor("layer.q4"), DTypeError);
  EXPECT_THROW(ckpt.tensor("missing"), Error);
  fs::remove(path);
}

TEST(Safetensors, ReadsShardedCheckpoints) {
  const fs::path dir = temp_path("sharded");
  fs::create_directories(dir);
  SafetensorsWriter a, b;
  a.add("x", random_tensor({2, 2}, 1));
  b.add("y", random_tensor({3}, 2));
  a.write(dir / "model-00001-of-00002.safetensors");
  b.write(dir / "model-00002-of-00002.safetensors");
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}})";
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(ckpt.tensor("y").shape(), (Shape{3}));
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"weight_map": {"x": "../etc/passwd"}})";
  EXPECT_THROW(Checkpoint::open(dir), FormatError);
  fs::remove_all(dir);
}

TEST(Safetensors, LoadsRealHuggingFaceCheckpoint) {
  const fs::path model = testing::shared_dir() / "models/stories260K/hf/model.safetensors";
  ASSERT_TRUE(fs::exists(model)) << model;
  const Checkpoint ckpt = Checkpoint::open(model);
  EXPECT_GT(ckpt.names().size(), 10u);
  const Tensor emb = ckpt.tensor("model.embed_tokens.weight");
  EXPECT_EQ(emb.shape(), (Shape{512, 64}));
  EXPECT_TRUE(emb.is_view());
  // A truncated copy is rejected, not read past its end.
  const fs::path cut = temp_path("truncated.safetensors");
  {
    std::ifstream in(model, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  EXPECT_THROW(Checkpoint::open(cut), FormatError);
  fs::remove(cut);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

TEST(Safetensors, MisalignedTensorsAreCopiedNotViewed) {
  using nlohmann::json;
  std::string data(24, '\0');
  const int64_t value = -5;
  std::memcpy(data.data() + 1, &value, 8);  // an I64 at offset 1
  const std::string bytes =
      make_file({{"b", {{"dtype", "U8"}, {"shape", {1}}, {"data_offsets", {0, 1}}}},
                 {"a", {{"dtype", "I64"}, {"shape", {1}}, {"data_offsets", {1, 9}}}}},
                data.substr(0, 9));
  auto owner = std::make_shared<std::string>(bytes);
  const auto file = SafetensorsFile::parse(
      owner,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(owner->data()), owner->size()),
      "t");
  const Tensor a = file.tensor("a");
  EXPECT_FALSE(a.is_view());
  EXPECT_EQ(a.data<int64_t>()[0], -5);
}

}  // namespace
}  // namespace quantkit

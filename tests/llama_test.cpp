// stories260K (../shared/models/stories260K): the llama2.c .bin and the Hugging Face directory
// give PyTorch-independent reference logits; float perplexity over the 200 reference stories.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "quantkit/io/npy.h"
#include "quantkit/models/llama.h"
#include "quantkit/models/tokenizer.h"
#include "quantkit/workflows/quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

std::filesystem::path stories_dir() {
  return testing::shared_dir() / "models" / "stories260K";
}

std::vector<std::vector<int64_t>> reference_token_lines() {
  return testing::read_int_lines(stories_dir() / "reference" /
                                 "tinystories_first200_stories.tok512.txt");
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    m = std::max<double>(m, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  }
  return m;
}

double perplexity(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& stories) {
  double nll = 0;
  int64_t count = 0;
  for (const auto& s : stories) {
    const auto [sum, n] = sequence_nll(model, s);
    nll += sum;
    count += n;
  }
  return std::exp(nll / static_cast<double>(count));
}

TEST(llama, story0_logits_match_the_reference_from_bin_and_hf) {
  const auto lines = reference_token_lines();
  ASSERT_EQ(lines.size(), 200u);
  const Tensor ref = read_npy(stories_dir() / "reference" / "story0_logits.f32.npy");
  for (const auto& path : {stories_dir() / "stories260K.bin", stories_dir() / "hf"}) {
    auto model = load_llama(path);
    KVCache cache = model->new_cache();
    const std::vector<int64_t> tokens(lines[0].begin(),
                                      lines[0].begin() + std::min<int64_t>(ref.size(0), 512));
    const Tensor logits = model->forward_tokens(tokens, cache);
    ASSERT_EQ(logits.shape(), ref.shape());
    const double diff = max_abs_diff(logits, ref);
    std::printf("%s: max |logit - reference| = %.3g\n", path.filename().c_str(), diff);
    EXPECT_LT(diff, 1e-3);
  }
}

TEST(llama, incremental_decoding_equals_one_pass) {
  auto model = load_llama(stories_dir() / "stories260K.bin");
  const std::vector<int64_t> tokens = reference_token_lines()[3];
  KVCache one = model->new_cache();
  const Tensor all = model->forward_tokens({tokens.begin(), tokens.begin() + 20}, one);
  KVCache step = model->new_cache();
  for (int64_t i = 0; i < 20; ++i) {
    const Tensor row = model->forward_tokens({tokens[static_cast<size_t>(i)]}, step);
    for (int64_t v = 0; v < 512; ++v) {
      ASSERT_NEAR(row.data<float>()[v], all.data<float>()[i * 512 + v], 1e-4);
    }
  }
}

TEST(llama, float_perplexity_over_the_200_reference_stories) {
  auto model = load_llama(stories_dir() / "hf");
  const double ppl = perplexity(*model, reference_token_lines());
  std::printf("perplexity=%.4f (reference 4.384)\n", ppl);
  EXPECT_NEAR(ppl, 4.384, 0.002);
}

TEST(llama, weight_only_int8_and_int4_perplexity_deltas) {
  const auto stories = reference_token_lines();
  auto fp = load_llama(stories_dir() / "hf");
  const double base = perplexity(*fp, stories);
  for (const auto& [dtype, group, symmetric, limit] :
       // Round-to-nearest int4 on this 64-wide model misses the 5% target of issue 5
       // (asym g32: +8.0%, sym g32: +13.5%); the bounds here catch regressions.
       std::vector<std::tuple<DType, int64_t, bool, double>>{{DType::kInt8, 0, true, 0.01},
                                                             {DType::kInt4, 32, false, 0.09}}) {
    auto model = load_llama(stories_dir() / "hf");
    WeightOnlyConfig cfg;
    cfg.weights = dtype;
    cfg.group_size = group;
    cfg.symmetric = symmetric;
    cfg.exclude = {"lm_head"};
    EXPECT_EQ(quantize_weights(*model, cfg), 5 * 7);
    const double ppl = perplexity(*model, stories);
    std::printf("%s g%lld %s: perplexity=%.4f (float %.4f, delta %+.2f%%)\n",
                std::string(dtype_name(dtype)).c_str(), static_cast<long long>(group),
                symmetric ? "sym" : "asym", ppl, base, 100.0 * (ppl / base - 1.0));
    EXPECT_LT(ppl / base - 1.0, limit);
  }
}

TEST(llama, malformed_checkpoints_are_rejected) {
  const auto bad = testing::temp_path("bad.bin");
  {
    std::ofstream out(bad, std::ios::binary);
    const int32_t header[7] = {64, 172, 5, 8, 4, 512, 512};
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
    out << "truncated";
  }
  try {
    load_llama2c(bad);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("header promises"), std::string::npos) << e.what();
  }
  std::filesystem::remove(bad);
  EXPECT_THROW(load_llama(testing::temp_path("missing.bin")), IoError);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

std::vector<std::string> reference_stories(size_t count) {
  std::ifstream in(testing::shared_dir() / "models" / "stories260K" /
                   "TinyStories-train_first2MiB.txt");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> stories;
  size_t pos = 0;
  while (stories.size() < count) {
    const size_t end = text.find("<|endoftext|>", pos);
    if (end == std::string::npos) break;
    std::string s = text.substr(pos, end - pos);
    const size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
    stories.push_back(a == std::string::npos ? "" : s.substr(a, b - a + 1));
    pos = end + 13;
  }
  return stories;
}

TEST(llama2c_tokenizer, encodes_the_200_reference_stories_exactly) {
  const auto tok =
      Llama2cTokenizer::load(testing::shared_dir() / "models" / "stories260K" / "tok512.bin");
  EXPECT_EQ(tok.vocab_size(), 512);
  const auto lines = reference_token_lines();
  const auto stories = reference_stories(200);
  ASSERT_EQ(stories.size(), 200u);
  for (size_t i = 0; i < stories.size(); ++i) {
    std::vector<int64_t> ids = tok.encode(stories[i]);
    EXPECT_EQ(tok.decode(ids), stories[i]) << "story " << i;
    if (ids.size() > 512) ids.resize(512);  // the reference is truncated at the context length
    ASSERT_EQ(ids, lines[i]) << "story " << i;
  }
  EXPECT_EQ(tok.encode("Once upon a time"), (std::vector<int64_t>{1, 403, 407, 261, 378}));
}

TEST(llama, greedy_generation_matches_the_reference) {
  auto model = load_llama(stories_dir() / "stories260K.bin");
  std::vector<int64_t> ids = {1, 403, 407, 261, 378};
  KVCache cache = model->new_cache();
  Tensor logits = model->forward_tokens(ids, cache);
  std::vector<int64_t> all = ids;
  int64_t last_row = static_cast<int64_t>(ids.size()) - 1;
  for (int step = 0; step < 100; ++step) {
    const float* row = logits.data<float>() + last_row * 512;
    const int64_t next = std::max_element(row, row + 512) - row;
    all.push_back(next);
    logits = model->forward_tokens({next}, cache);
    last_row = 0;
  }
  std::ifstream in(stories_dir() / "reference" / "greedy_once_upon_a_time.txt");
  std::string line;
  std::vector<int64_t> want;
  while (std::getline(in, line)) {
    if (line.rfind("1 403 407 261 378", 0) == 0) {
      std::istringstream s(line);
      int64_t id;
      while (s >> id) want.push_back(id);
    }
  }
  ASSERT_EQ(want.size(), 105u);
  EXPECT_EQ(all, want);
}

TEST(llama2c_tokenizer, rejects_truncated_files) {
  const std::vector<uint8_t> bytes = {16, 0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0, 'a'};
  EXPECT_THROW(Llama2cTokenizer::parse(bytes), FormatError);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

Tensor story_logits(LlamaForCausalLM& model) {
  const auto lines = reference_token_lines();
  KVCache cache = model.new_cache();
  return model.forward_tokens({lines[1].begin(), lines[1].begin() + 64}, cache);
}

// quantize -> save -> reload gives bit-identical logits, for every built-in method.
TEST(quantizers, save_and_reload_are_bit_identical) {
  std::vector<QuantizationConfig> configs(9);
  configs[7].weights = "int4";  // the tied head quantized too: reloads without the embedding
  configs[7].group_size = 64;
  configs[7].modules_to_not_convert = {};
  configs[8].weights = "int4";  // float32 scales: the packed weights keep float32 metadata
  configs[8].group_size = 32;
  configs[8].scale_dtype = "float32";
  configs[4].quant_method = "xla";
  configs[4].weights = "int4";
  configs[4].group_size = 32;  // blockwise needs K % 32 == 0: keep the FFN down projection float
  configs[4].symmetric = false;
  configs[4].modules_to_not_convert = {"lm_head", "*.down_proj"};
  configs[5].quant_method = "xla";
  configs[0].weights = "int4";
  configs[0].group_size = 32;
  configs[1].weights = "int8";
  configs[1].activations = "int8";
  configs[2].quant_method = "dynamic_int8";
  configs[3].weights = "int2";
  configs[3].group_size = 32;
  configs[3].symmetric = false;
  configs[6].quant_method = "awq";  // QLinears with input_scale buffers
  configs[6].weights = "int4";
  configs[6].group_size = 32;
  configs[6].symmetric = false;
  configs[6].rounding = "gptq";
  for (const QuantizationConfig& cfg : configs) {
    SCOPED_TRACE(cfg.to_json());
    auto model = load_llama(stories_dir() / "stories260K.bin");
    quantize_model(*model, cfg);
    if (make_quantizer(cfg)->requires_calibration()) {  // calibration between the hooks
      set_calibration(*model, true);
      story_logits(*model);
      freeze(*model);
    }
    const Tensor before = story_logits(*model);
    const auto dir = testing::temp_path("saved_" + cfg.quant_method + cfg.weights);
    save_pretrained(*model, dir, stories_dir() / "stories260K.bin");
    EXPECT_TRUE(std::filesystem::exists(dir / "tok512.bin"));
    auto reloaded = load_llama(dir);
    ASSERT_TRUE(reloaded->quantization_config.has_value());
    EXPECT_EQ(reloaded->quantization_config->to_json(), cfg.to_json());
    const Tensor after = story_logits(*reloaded);
    ASSERT_EQ(before.numel(), after.numel());
    EXPECT_EQ(std::memcmp(before.bytes(), after.bytes(), static_cast<size_t>(before.nbytes())), 0);
    std::filesystem::remove_all(dir);
  }
}

TEST(quantizers, registry_config_validation_and_corrupt_directories) {
  EXPECT_NE(std::find(registered_quantization_methods().begin(),
                      registered_quantization_methods().end(), "linear"),
            registered_quantization_methods().end());
  QuantizationConfig unknown;
  unknown.quant_method = "no_such_method";
  EXPECT_THROW(make_quantizer(unknown), ValueError);
  EXPECT_THROW(QuantizationConfig::from_json("{\"weights\": \"int4\"}"), FormatError);
  EXPECT_THROW(QuantizationConfig::from_json("{\"quant_method\": \"linear\", \"version\": 7}"),
               FormatError);
  auto model = load_llama(stories_dir() / "stories260K.bin");
  QuantizationConfig bad;
  bad.weights = "int3";
  EXPECT_THROW(quantize_model(*model, bad), ValueError);
  QuantizationConfig xla;  // torch_xla blockwise layout cannot hold K = 172 with blocks of 32
  xla.quant_method = "xla";
  xla.group_size = 32;
  try {
    quantize_model(*model, xla);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("in_features 172, not a multiple of block_size 32"),
              std::string::npos)
        << e.what();
  }
  // A saved directory whose config promises int4 but holds int8 weights.
  QuantizationConfig cfg;
  quantize_model(*model, cfg);
  const auto dir = testing::temp_path("corrupt");
  save_pretrained(*model, dir, stories_dir() / "stories260K.bin");
  {
    std::ifstream in(dir / "config.json");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = text.find("\"weights\": \"int8\"");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, 17, "\"weights\": \"int4\"");
    std::ofstream(dir / "config.json") << text;
  }
  try {
    load_llama(dir);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj.weight' is int8, quantization_config says int4"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace quantkit

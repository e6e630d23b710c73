#include "eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "quantkit/models/llama.h"
#include "quantkit/models/tokenizer.h"
#include "quantkit/workflows/quantize.h"
#include "table.h"

namespace quantkit::cli {
namespace {

namespace fs = std::filesystem;

// --tokenizer, else tokenizer.bin or tok*.bin beside the model (or beside a model directory).
fs::path find_tokenizer(const std::string& model, const std::string& given) {
  if (!given.empty()) return given;
  const fs::path m(model);
  for (const fs::path& dir : {fs::is_directory(m) ? m : m.parent_path(),
                              fs::is_directory(m) ? m.parent_path() : m.parent_path()}) {
    if (fs::exists(dir / "tokenizer.bin")) return dir / "tokenizer.bin";
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("tok", 0) == 0 && e.path().extension() == ".bin") return e.path();
    }
  }
  throw ValueError("no tokenizer found beside " + model + ": pass --tokenizer tokenizer.bin");
}

std::string strip(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> read_documents(const std::string& path, const std::string& separator,
                                        int64_t max_docs) {
  std::ifstream in(path, std::ios::binary);
  QK_CHECK(in.good(), IoError, "cannot open text file ", path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> docs;
  size_t pos = 0;
  for (;;) {
    const size_t end = separator.empty() ? std::string::npos : text.find(separator, pos);
    if (end == std::string::npos) break;  // the text after the last separator may be cut: dropped
    const std::string doc = strip(text.substr(pos, end - pos));
    if (!doc.empty()) docs.push_back(doc);
    pos = end + separator.size();
    if (max_docs > 0 && static_cast<int64_t>(docs.size()) >= max_docs) break;
  }
  if (docs.empty() && !strip(text).empty()) docs.push_back(strip(text));  // no separator at all
  QK_CHECK(!docs.empty(), ValueError, path, " holds no text");
  return docs;
}

std::vector<double> log_softmax(const float* row, int64_t n) {
  const float mx = *std::max_element(row, row + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i] - mx));
  const double lse = std::log(sum) + mx;
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = row[i] - lse;
  return out;
}

}  // namespace

std::shared_ptr<LlamaForCausalLM> load_quantized_llama(const std::string& path,
                                                       const ModelQuantOptions& q,
                                                       const std::vector<int64_t>& calibration) {
  auto model = load_llama(path);
  if (q.dynamic_int8) {
    QK_CHECK(q.weights.empty(), ValueError, "--dynamic-int8 and --weights exclude each other");
    WeightOnlyConfig cfg;  // W8A8: int8 per-channel weights, int8 per-token activations
    cfg.activations = ActivationQuant::kInt8DynamicPerToken;
    cfg.exclude = q.exclude;
    quantize_weights(*model, cfg);
  } else if (!q.weights.empty()) {
    WeightOnlyConfig cfg;
    cfg.weights = parse_dtype(q.weights == "fp8_e4m3"   ? "float8_e4m3fn"
                              : q.weights == "fp8_e5m2" ? "float8_e5m2"
                                                        : q.weights);
    cfg.group_size = q.group_size;
    cfg.symmetric = !q.asymmetric;
    cfg.mse_search = q.mse;
    cfg.exclude = q.exclude;
    QK_CHECK(q.activations == "none" || q.activations == "int8", ValueError,
             "--activations must be none or int8, got ", q.activations);
    cfg.activations = q.activations == "int8" ? ActivationQuant::kInt8 : ActivationQuant::kNone;
    quantize_weights(*model, cfg);
    if (cfg.activations != ActivationQuant::kNone) {
      set_calibration(*model, true);
      KVCache cache = model->new_cache();
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(calibration.size()),
                                          model->config().max_position_embeddings);
      model->forward_tokens({calibration.begin(), calibration.begin() + n}, cache);
      freeze(*model);
    }
  }
  return model;
}

int run_eval(const EvalOptions& o) {
  const Llama2cTokenizer tok = Llama2cTokenizer::load(find_tokenizer(o.model, o.tokenizer));
  const std::vector<std::string> docs = read_documents(o.text, o.separator, o.max_docs);
  std::vector<std::vector<int64_t>> tokens;
  for (const auto& d : docs) tokens.push_back(tok.encode(d));
  auto model = load_quantized_llama(o.model, o.quant, tokens[0]);
  std::shared_ptr<LlamaForCausalLM> reference;
  if (!o.reference.empty()) reference = load_llama(o.reference);
  const int64_t vocab = model->config().vocab_size;
  const int64_t context = model->config().max_position_embeddings;
  double nll = 0;
  int64_t predicted = 0, agree = 0;
  std::vector<double> kls;
  ProgressBar bar("eval");
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t d = 0; d < tokens.size(); ++d) {
    bar.update(d, tokens.size(), "document " + std::to_string(d));
    std::vector<int64_t> ids = tokens[d];
    if (static_cast<int64_t>(ids.size()) > context) ids.resize(static_cast<size_t>(context));
    if (ids.size() < 2) continue;
    KVCache cache = model->new_cache();
    const Tensor logits = model->forward_tokens(ids, cache);
    Tensor ref_logits;
    if (reference) {
      KVCache rc = reference->new_cache();
      ref_logits = reference->forward_tokens(ids, rc);
    }
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const float* row = logits.data<float>() + static_cast<int64_t>(i) * vocab;
      const std::vector<double> lp = log_softmax(row, vocab);
      nll -= lp[static_cast<size_t>(ids[i + 1])];
      ++predicted;
      if (reference) {
        const float* rrow = ref_logits.data<float>() + static_cast<int64_t>(i) * vocab;
        const std::vector<double> rlp = log_softmax(rrow, vocab);
        double kl = 0;
        for (int64_t v = 0; v < vocab; ++v) kl += std::exp(rlp[v]) * (rlp[v] - lp[v]);
        kls.push_back(kl);
        agree +=
            std::max_element(row, row + vocab) - row == std::max_element(rrow, rrow + vocab) - rrow;
      }
    }
  }
  bar.update(tokens.size(), tokens.size(), "done");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("documents=%zu tokens=%lld nll=%.6f\n", tokens.size(),
              static_cast<long long>(predicted), nll / static_cast<double>(predicted));
  std::printf("perplexity=%.4f\n", std::exp(nll / static_cast<double>(predicted)));
  if (reference && !kls.empty()) {
    double mean = 0;
    for (double k : kls) mean += k;
    mean /= static_cast<double>(kls.size());
    std::sort(kls.begin(), kls.end());
    const double p99 = kls[static_cast<size_t>(0.99 * static_cast<double>(kls.size() - 1))];
    std::printf("kl_mean=%.6f kl_p99=%.6f top1_agreement=%.4f\n", mean, p99,
                static_cast<double>(agree) / static_cast<double>(predicted));
  }
  std::printf("eval_tokens_per_s=%.0f\n", static_cast<double>(predicted) / seconds);
  return 0;
}

int run_quantize_model(const std::string& path, const std::string& out_dir,
                       const QuantizationConfig& config, const CalibrationOptions& calibration) {
  auto model = load_llama(path);
  const int64_t before = model->state_dict().size();
  quantize_model(*model, config);
  if (make_quantizer(config)->requires_calibration()) {
    QK_CHECK(!calibration.text.empty(), ValueError, "method '", config.quant_method,
             "' needs calibration data: pass --calibration-text FILE");
    QK_CHECK(calibration.docs > 0 && calibration.skip >= 0, ValueError,
             "--calibration-docs must be > 0 and --calibration-skip >= 0");
    const Llama2cTokenizer tok =
        Llama2cTokenizer::load(find_tokenizer(path, calibration.tokenizer));
    const auto docs =
        read_documents(calibration.text, "<|endoftext|>", calibration.skip + calibration.docs);
    QK_CHECK(static_cast<int64_t>(docs.size()) > calibration.skip, ValueError, calibration.text,
             " holds ", docs.size(), " documents; --calibration-skip is ", calibration.skip);
    set_calibration(*model, true);
    int64_t tokens = 0;
    {
      ProgressBar bar("calibrate");
      for (size_t d = static_cast<size_t>(calibration.skip); d < docs.size(); ++d) {
        bar.update(d - static_cast<size_t>(calibration.skip),
                   docs.size() - static_cast<size_t>(calibration.skip),
                   "document " + std::to_string(d));
        std::vector<int64_t> ids = tok.encode(docs[d]);
        if (static_cast<int64_t>(ids.size()) > model->config().max_position_embeddings)
          ids.resize(static_cast<size_t>(model->config().max_position_embeddings));
        KVCache cache = model->new_cache();
        model->forward_tokens(ids, cache);
        tokens += static_cast<int64_t>(ids.size());
      }
    }  // the bar clears its line before the summary below
    freeze(*model);
    std::printf("calibrated on %zu documents, %lld tokens\n",
                docs.size() - static_cast<size_t>(calibration.skip),
                static_cast<long long>(tokens));
  }
  save_pretrained(*model, out_dir, path);
  Table table({"module", "became"}, {false, false});
  int64_t converted = 0;
  for (const auto& [name, what] : quantization_map(*model)) {
    table.add({name, what});
    ++converted;
  }
  table.print(stdout);
  std::printf("method %s: %lld modules converted (%lld tensors before); wrote %s (%s)\n",
              config.quant_method.c_str(), static_cast<long long>(converted),
              static_cast<long long>(before), out_dir.c_str(),
              format_bytes(static_cast<int64_t>(std::filesystem::file_size(
                               std::filesystem::path(out_dir) / "model.safetensors")))
                  .c_str());
  return 0;
}

int run_generate(const GenerateOptions& o) {
  const Llama2cTokenizer tok = Llama2cTokenizer::load(find_tokenizer(o.model, o.tokenizer));
  std::vector<int64_t> ids = tok.encode(o.prompt);
  auto model = load_quantized_llama(o.model, o.quant, ids);
  const int64_t vocab = model->config().vocab_size;
  KVCache cache = model->new_cache();
  std::mt19937_64 rng(o.seed);
  const auto t0 = std::chrono::steady_clock::now();
  Tensor logits = model->forward_tokens(ids, cache);
  int64_t row = static_cast<int64_t>(ids.size()) - 1;
  int64_t generated = 0;
  for (int64_t step = 0; step < o.steps && cache.length < model->config().max_position_embeddings;
       ++step) {
    const float* l = logits.data<float>() + row * vocab;
    int64_t next = std::max_element(l, l + vocab) - l;
    if (o.temperature > 0) {
      // Softmax at the temperature, then sample from the smallest set of tokens whose
      // probability reaches top_p (nucleus sampling).
      std::vector<std::pair<double, int64_t>> probs;
      const float mx = l[next];
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) {
        const double p = std::exp((l[v] - mx) / o.temperature);
        probs.emplace_back(p, v);
        sum += p;
      }
      std::sort(probs.rbegin(), probs.rend());
      double kept = 0;
      size_t n = 0;
      while (n < probs.size() && kept < o.top_p * sum) kept += probs[n++].first;
      double r = std::uniform_real_distribution<double>(0.0, kept)(rng);
      for (size_t i = 0; i < n; ++i) {
        r -= probs[i].first;
        next = probs[i].second;
        if (r <= 0) break;
      }
    }
    if (next == model->config().eos_token_id) break;
    ids.push_back(next);
    ++generated;
    logits = model->forward_tokens({next}, cache);
    row = 0;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s\n", tok.decode(ids).c_str());
  std::fprintf(stderr, "generated %lld tokens in %.3f s (%.1f tokens/s)\n",
               static_cast<long long>(generated), seconds,
               static_cast<double>(generated) / seconds);
  return 0;
}

}  // namespace quantkit::cli

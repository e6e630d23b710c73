#include "bert_commands.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "quantkit/models/bert.h"
#include "quantkit/workflows/quantize.h"
#include "table.h"

namespace quantkit::cli {
namespace {

int64_t linear_bytes(Module& model) {
  int64_t bytes = 0;
  for (auto& [name, m] : model.named_modules()) {
    if (m->type_name() == "Linear") bytes += static_cast<Linear&>(*m).weight.nbytes();
    if (m->type_name() == "QLinear") bytes += static_cast<WeightOnlyLinear&>(*m).packed.nbytes();
  }
  return bytes;
}

std::vector<std::string> read_sentences(const std::string& file) {
  std::ifstream in(file);
  QK_CHECK(in.good(), IoError, "cannot open sentences file ", file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  QK_CHECK(!out.empty(), ValueError, file, " holds no sentences");
  return out;
}

}  // namespace

int run_eval_sentences(const std::string& path, const std::string& reference,
                       const std::string& sentences_file, const std::string& weights,
                       int64_t group_size, bool dynamic_int8) {
  const auto sentences = read_sentences(sentences_file);
  const auto tok = WordPieceTokenizer::load(std::filesystem::path(path) / "vocab.txt");
  std::vector<std::vector<int64_t>> ids;
  for (const auto& s : sentences) ids.push_back(tok.encode(s));
  auto model = load_bert(path);
  if (dynamic_int8 || !weights.empty()) {
    WeightOnlyConfig cfg;
    if (!weights.empty()) cfg.weights = parse_dtype(weights);
    cfg.group_size = group_size;
    if (dynamic_int8) cfg.activations = ActivationQuant::kInt8DynamicPerToken;
    quantize_weights(*model, cfg);
  }
  const Tensor e = model->embed(ids);
  const Tensor r = load_bert(reference.empty() ? path : reference)->embed(ids);
  double mean = 0, mn = 1;
  const int64_t d = e.size(1);
  for (int64_t s = 0; s < e.size(0); ++s) {
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += e.data<float>()[s * d + i] * r.data<float>()[s * d + i];
    mean += dot / static_cast<double>(e.size(0));
    mn = std::min(mn, dot);
  }
  std::printf("sentences=%zu cosine_mean=%.6f cosine_min=%.6f\n", sentences.size(), mean, mn);
  return 0;
}

int run_embed(const std::string& path, const std::vector<std::string>& sentences) {
  auto model = load_bert(path);
  const auto tok = WordPieceTokenizer::load(std::filesystem::path(path) / "vocab.txt");
  std::vector<std::vector<int64_t>> batch;
  for (const auto& s : sentences) batch.push_back(tok.encode(s));
  const Tensor e = model->embed(batch);
  const int64_t d = e.size(1);
  for (size_t s = 0; s < sentences.size(); ++s) {
    std::printf("%s\n  [", sentences[s].c_str());
    for (int64_t i = 0; i < d; ++i) {
      std::printf("%s%.6f", i ? ", " : "", e.data<float>()[static_cast<int64_t>(s) * d + i]);
    }
    std::printf("]\n");
  }
  return 0;
}

int run_bench_bert(const std::string& path, const std::string& sentences_file, int batch_size) {
  const std::vector<std::string> sentences = read_sentences(sentences_file);
  const auto tok = WordPieceTokenizer::load(std::filesystem::path(path) / "vocab.txt");
  std::vector<std::vector<int64_t>> ids;
  for (const auto& s : sentences) ids.push_back(tok.encode(s));
  std::vector<std::vector<int64_t>> batch;
  for (int i = 0; i < batch_size; ++i) batch.push_back(ids[static_cast<size_t>(i) % ids.size()]);

  Table table({"variant", "Linear bytes", "cosine mean", "cosine min", "sentences/s", "speed-up"},
              {false, true, true, true, true, true});
  Tensor reference;
  double float_rate = 0;
  const char* names[] = {"float32", "W8A8 dynamic (per-token)", "int8 weight-only",
                         "int4 g32 weight-only"};
  for (int v = 0; v < 4; ++v) {
    auto model = load_bert(path);
    if (v > 0) {
      WeightOnlyConfig cfg;
      cfg.weights = v == 3 ? DType::kInt4 : DType::kInt8;
      cfg.group_size = v == 3 ? 32 : 0;
      cfg.activations = v == 1 ? ActivationQuant::kInt8DynamicPerToken : ActivationQuant::kNone;
      quantize_weights(*model, cfg);
    }
    const Tensor e = model->embed(ids);
    if (v == 0) reference = e;
    double mean = 0, mn = 1;
    const int64_t d = e.size(1);
    for (int64_t s = 0; s < e.size(0); ++s) {
      double dot = 0;
      for (int64_t i = 0; i < d; ++i)
        dot += e.data<float>()[s * d + i] * reference.data<float>()[s * d + i];
      mean += dot / static_cast<double>(e.size(0));
      mn = std::min(mn, dot);
    }
    double best = 0;
    // The best of 10 batches: one batch takes ~0.1 s, and this shared host slows single runs
    // by up to 30 %.
    for (int rep = 0; rep < 10; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      model->embed(batch);
      best = std::max(
          best, batch_size /
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (v == 0) float_rate = best;
    table.add({names[v], format_bytes(linear_bytes(*model)), fixed(mean, 5), fixed(mn, 5),
               fixed(best, 0), fixed(best / float_rate, 2) + "x"});
  }
  std::printf("%s: %zu sentences, batch %d\n", path.c_str(), sentences.size(), batch_size);
  table.print(stdout);
  return 0;
}

}  // namespace quantkit::cli

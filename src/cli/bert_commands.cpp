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

}  // namespace

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
  std::ifstream in(sentences_file);
  QK_CHECK(in.good(), IoError, "cannot open sentences file ", sentences_file);
  std::vector<std::string> sentences;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) sentences.push_back(line);
  }
  QK_CHECK(!sentences.empty(), ValueError, sentences_file, " holds no sentences");
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
    for (int rep = 0; rep < 3; ++rep) {
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

#include "bench_model.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "quantkit/core/random.h"
#include "quantkit/kernels/bandwidth.h"
#include "quantkit/kernels/linear.h"
#include "quantkit/models/llama.h"
#include "quantkit/workflows/quantize.h"
#include "table.h"

namespace quantkit::cli {
namespace {

std::shared_ptr<LlamaForCausalLM> build(const BenchModelOptions& o) {
  if (!o.model.empty()) return load_llama(o.model);
  LlamaConfig c;
  c.hidden_size = o.dim;
  c.intermediate_size = o.ffn;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.num_key_value_heads = o.kv_heads;
  c.vocab_size = o.vocab;
  c.max_position_embeddings = 2048;
  c.tie_word_embeddings = false;
  auto model = std::make_shared<LlamaForCausalLM>(c);
  // One seed per tensor in state-dict order; the tensors are drawn in parallel (a serial draw of
  // 1.1 B normals was most of the set-up time).
  std::vector<std::pair<std::string, Tensor>> entries;
  for (const auto& [name, t] : model->state_dict()) entries.emplace_back(name, t);
  std::vector<uint32_t> seeds(entries.size());
  uint32_t seed = 1;
  for (size_t i = 0; i < entries.size(); ++i)
    seeds[i] = entries[i].first.find("norm") != std::string::npos ? 0 : seed++;
#pragma omp parallel for schedule(dynamic) num_threads(num_threads())
  for (size_t i = 0; i < entries.size(); ++i) {
    if (seeds[i] != 0)
      entries[i].second = random_normal(entries[i].second.shape(), seeds[i], 0.02f);
  }
  model->load_weights(std::map<std::string, Tensor>(entries.begin(), entries.end()));
  return model;
}

// Bytes a decode step streams: every Linear's weight (quantized or not) and the norms.
int64_t weight_bytes(Module& model) {
  int64_t bytes = 0;
  for (auto& [name, m] : model.named_modules()) {
    const std::string t = m->type_name();
    if (t == "Linear") bytes += static_cast<Linear&>(*m).weight.nbytes();
    if (t == "QLinear") bytes += static_cast<WeightOnlyLinear&>(*m).packed.nbytes();
    if (t == "DynamicQuantizedLinear") {
      bytes += static_cast<DynamicQuantizedLinear&>(*m).weight.codes.nbytes();
    }
  }
  return bytes;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

}  // namespace

int run_bench_model(const BenchModelOptions& o) {
  const double dram = measure_read_bandwidth_gbps(int64_t{1} << 30, num_threads());
  std::printf("threads %d, streaming read bandwidth %.1f GB/s\n", num_threads(), dram);
  Table table({"config", "weight bytes", "prefill tok/s", "decode tok/s", "decode GB/s", "of DRAM",
               "vs float", "peak RSS"},
              {false, true, true, true, true, true, true, true});
  double float_decode = 0;
  for (const std::string& cfg : o.configs) {
    auto model = build(o);
    if (cfg == "w8a8" || cfg == "w4a8") {
      WeightOnlyConfig w;  // int8 (or int4 grouped) weights, int8 per-token dynamic activations
      w.activations = ActivationQuant::kInt8DynamicPerToken;
      if (cfg == "w4a8") w.weights = DType::kInt4, w.group_size = o.group_size;
      quantize_weights(*model, w);
    } else if (cfg != "float") {
      WeightOnlyConfig w;
      w.weights = parse_dtype(cfg);
      w.group_size = cfg == "int8" ? 0 : o.group_size;
      quantize_weights(*model, w);
    }
    const int64_t bytes = weight_bytes(*model);
    std::vector<int64_t> prompt;
    for (int64_t i = 0; i < o.prompt; ++i)
      prompt.push_back((i * 7919 + 13) % model->config().vocab_size);
    KVCache cache = model->new_cache();
    auto t0 = std::chrono::steady_clock::now();
    Tensor logits = model->forward_tokens(prompt, cache);
    const double prefill =
        static_cast<double>(o.prompt) /
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < o.decode; ++i)
      logits = model->forward_tokens({(i * 31) % 100 + 3}, cache);
    const double decode =
        static_cast<double>(o.decode) /
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (cfg == "float") float_decode = decode;
    const double gbps = decode * static_cast<double>(bytes) / 1e9;
    const bool grouped = cfg == "int4" || cfg == "int2" || cfg == "w4a8";
    table.add({cfg + (grouped ? " g" + std::to_string(o.group_size) : ""), format_bytes(bytes),
               fixed(prefill, 1), fixed(decode, 2), fixed(gbps, 1),
               fixed(100.0 * gbps / dram, 0) + "%",
               float_decode > 0 ? fixed(decode / float_decode, 2) + "x" : "-",
               fixed(peak_rss_mib(), 0) + " MiB"});
  }
  table.print(stdout);
  return 0;
}

}  // namespace quantkit::cli

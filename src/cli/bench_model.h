// `quantkit bench llama`: prefill and decode speed of a Llama model, float and quantized.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quantkit::cli {

struct BenchModelOptions {
  std::string model;  // a model directory or .bin; empty = random weights (shape below)
  int64_t dim = 2048, layers = 22, ffn = 5632, heads = 32, kv_heads = 4, vocab = 32000;
  std::vector<std::string> configs = {"float", "int8",
                                      "int4"};  // float | int8 | int4 | int2 | w8a8
  int64_t group_size = 32;                      // for int4 / int2
  int64_t prompt = 32, decode = 16;
};
int run_bench_model(const BenchModelOptions& options);

}  // namespace quantkit::cli

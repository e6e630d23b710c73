#pragma once

#include <cstdint>
#include <vector>

namespace quantkit::cli {

struct BenchKernelOptions {
  bool json = false;
  int threads = 0;          // 0: num_threads()
  int64_t dim = 4096;       // K = N of the weight matrices
  int64_t dram_mib = 1024;  // distinct weight bytes cycled through per DRAM case
  std::vector<int64_t> gemm_rows = {8, 32, 128};  // M of the cache-resident cases
};

/// Runs the kernel benchmarks and prints a table or JSON records
/// {name, ours, anchor_name, anchor, ratio, unit}.
int run_bench_kernels(const BenchKernelOptions& options);

}  // namespace quantkit::cli

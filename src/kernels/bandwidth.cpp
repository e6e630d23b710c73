#include "quantkit/kernels/bandwidth.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "quantkit/core/error.h"

namespace quantkit {
namespace {

// 32 independent lanes (four 256-bit accumulators), compiled for AVX2 and for the baseline with
// run-time selection: a 128-bit loop of 16 lanes reads about 25% below what DRAM delivers here,
// which would flatter every ratio measured against this probe.
__attribute__((target_clones("avx2", "default"))) float sum_block(const float* p, int64_t n) {
  float lanes[32] = {};
  for (int64_t i = 0; i < n; i += 32) {
    for (int j = 0; j < 32; ++j) lanes[j] += p[i + j];
  }
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}

}  // namespace

double measure_read_bandwidth_gbps(int64_t bytes, int threads, int repeats) {
  QK_CHECK(bytes >= (int64_t{1} << 16) && threads > 0 && repeats > 0, ValueError,
           "measure_read_bandwidth_gbps: need >= 64 KiB, >= 1 thread and >= 1 repeat");
  constexpr int64_t kBlock = 4096;  // floats per work item
  const std::vector<float> data(static_cast<size_t>(bytes / 4 / kBlock * kBlock), 1.0f);
  const auto blocks = static_cast<int64_t>(data.size()) / kBlock;
  double best = 0.0;
  for (int rep = 0; rep < repeats; ++rep) {
    const double t0 = omp_get_wtime();
    double total = 0.0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (int64_t block = 0; block < blocks; ++block) {
      total += sum_block(data.data() + block * kBlock, kBlock);
    }
    const double seconds = omp_get_wtime() - t0;
    QK_CHECK(total == static_cast<double>(data.size()), Error, "bandwidth probe read wrong data");
    best = std::max(best, static_cast<double>(data.size()) * 4.0 / seconds / 1e9);
  }
  return best;
}

}  // namespace quantkit

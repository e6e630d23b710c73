#include "quantkit/kernels/bandwidth.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "quantkit/core/error.h"

namespace quantkit {

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
      float lanes[16] = {};  // independent lanes so the loop vectorises without reassociation
      const float* p = data.data() + block * kBlock;
      for (int64_t i = 0; i < kBlock; i += 16) {
        for (int j = 0; j < 16; ++j) lanes[j] += p[i + j];
      }
      for (float v : lanes) total += v;
    }
    const double seconds = omp_get_wtime() - t0;
    QK_CHECK(total == static_cast<double>(data.size()), Error, "bandwidth probe read wrong data");
    best = std::max(best, static_cast<double>(data.size()) * 4.0 / seconds / 1e9);
  }
  return best;
}

}  // namespace quantkit

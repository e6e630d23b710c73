#include "quantkit/kernels/bandwidth.h"

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>

#include "quantkit/core/error.h"
#include "quantkit/core/tensor.h"

namespace quantkit {
namespace {

// 32 independent lanes (four 256-bit accumulators), compiled for AVX2 and for the baseline with
// run-time selection: a 128-bit loop of 16 lanes reads about 25% below what DRAM delivers here,
// which would flatter every ratio measured against this probe. The data sits in huge pages
// (Tensor's allocation) and is prefetched 4 KiB ahead, as the kernels' weights are: without
// either, the probe read 25 GB/s where OpenBLAS's sgemv streamed 30-33 (Sapphire-Rapids-class
// host, 2 threads; with both, 33).
constexpr int64_t kPrefetchBytes = 4096;
constexpr int64_t kBlock = 4096;  // floats per work item

__attribute__((target_clones("avx2", "default"))) float sum_block(const float* p, int64_t n) {
  float lanes[32] = {};
  for (int64_t i = 0; i < n; i += 32) {
    const char* ahead = reinterpret_cast<const char*>(p + i) + kPrefetchBytes;
    _mm_prefetch(ahead, _MM_HINT_T0);
    _mm_prefetch(ahead + 64, _MM_HINT_T0);
    for (int j = 0; j < 32; ++j) lanes[j] += p[i + j];
  }
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(int64_t bytes, int threads) : threads_(threads) {
  QK_CHECK(bytes >= (int64_t{1} << 16) && threads > 0, ValueError,
           "ReadBandwidthProbe: need >= 64 KiB and >= 1 thread, got ", bytes, " bytes and ",
           threads, " threads");
  const int64_t count = bytes / 4 / kBlock * kBlock;
  data_ = Tensor::empty({count}, DType::kFloat32);
  std::fill_n(data_.data<float>(), count, 1.0f);
}

double ReadBandwidthProbe::measure(int repeats) const {
  QK_CHECK(repeats > 0, ValueError, "ReadBandwidthProbe::measure: need >= 1 repeat, got ", repeats);
  const int64_t count = data_.numel();
  const float* values = data_.data<float>();
  const int64_t blocks = count / kBlock;
  double best = 0.0;
  for (int rep = 0; rep < repeats; ++rep) {
    const double t0 = omp_get_wtime();
    double total = 0.0;
#pragma omp parallel for num_threads(threads_) reduction(+ : total) schedule(static)
    for (int64_t block = 0; block < blocks; ++block) {
      total += sum_block(values + block * kBlock, kBlock);
    }
    const double seconds = omp_get_wtime() - t0;
    QK_CHECK(total == static_cast<double>(count), Error, "bandwidth probe read wrong data");
    best = std::max(best, static_cast<double>(count) * 4.0 / seconds / 1e9);
  }
  return best;
}

double measure_read_bandwidth_gbps(int64_t bytes, int threads, int repeats) {
  return ReadBandwidthProbe(bytes, threads).measure(repeats);  // both check their arguments
}

}  // namespace quantkit

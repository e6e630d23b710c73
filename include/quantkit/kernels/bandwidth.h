// The memory-bandwidth anchor that kernel benchmarks compare against, measured on the spot.
#pragma once

#include <cstdint>

#include "quantkit/core/tensor.h"

namespace quantkit {

/// Streaming-read bandwidth in GB/s: `threads` threads sum `bytes` of distinct memory (use
/// >= 1 GiB to defeat the last-level cache); best of `repeats` passes.
double measure_read_bandwidth_gbps(int64_t bytes, int threads, int repeats = 3);

/// The same probe over a buffer it keeps, for benchmarks that measure the bandwidth beside each
/// case: on a shared host it drifts by tens of percent over seconds, so a ratio against one
/// figure taken at the start says more about the drift than about the kernel.
class ReadBandwidthProbe {
 public:
  /// Allocates and fills `bytes` (at least 64 KiB) for `threads` threads.
  ReadBandwidthProbe(int64_t bytes, int threads);
  /// GB/s, best of `repeats` passes over the whole buffer.
  double measure(int repeats = 3) const;

 private:
  Tensor data_;  // float32 ones
  int threads_;
};

}  // namespace quantkit

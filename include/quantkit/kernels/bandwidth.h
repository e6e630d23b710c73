// The memory-bandwidth anchor that kernel benchmarks compare against, measured on the spot.
#pragma once

#include <cstdint>

namespace quantkit {

/// Streaming-read bandwidth in GB/s: `threads` threads sum `bytes` of distinct memory (use
/// >= 1 GiB to defeat the last-level cache); best of `repeats` passes.
double measure_read_bandwidth_gbps(int64_t bytes, int threads, int repeats = 3);

}  // namespace quantkit

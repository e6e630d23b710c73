// Tensor storage: aligned blocks, large ones reused from a small cache of freed blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace quantkit::detail {

/// At least `bytes` bytes (plus a 64-byte line of slack for vector reads), 64-byte aligned; 2 MiB
/// aligned with a transparent-huge-page hint from 4 MiB. Blocks of 64 KiB and more go back to a
/// per-process cache when freed (up to kStorageCacheBytes, the oldest leaving first) and are
/// handed out again for a request of the same rounded size: the kernel zeroes a fresh block page
/// by page on first touch, which an op called in a loop pays every call (W8A8 4096^2 at M = 512,
/// its 8 MiB output: clear_page 7 % of the profile; cached, 1.00-1.03x, W4A8 g32 1.01-1.03x,
/// interleaved runs). Not under AddressSanitizer, which must see every block freed. Throws Error
/// when out of memory.
std::shared_ptr<uint8_t> allocate_storage(size_t bytes);

/// The most bytes the cache of freed blocks holds.
constexpr size_t kStorageCacheBytes = size_t{64} << 20;

/// Bytes the cache holds now (tests).
size_t cached_storage_bytes();

}  // namespace quantkit::detail

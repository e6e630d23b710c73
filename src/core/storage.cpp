#include "storage.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

#include "quantkit/core/error.h"
#include "quantkit/core/tensor.h"

namespace quantkit::detail {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kCachedFrom = size_t{64} << 10;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCacheBlocks = true;
#else
constexpr bool kCacheBlocks = true;
#endif

/// Freed blocks by size, the most recently freed last.
class BlockCache {
 public:
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = blocks_.size(); i-- > 0;) {
      if (blocks_[i].first != bytes) continue;
      void* p = blocks_[i].second;
      blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i));
      held_ -= bytes;
      return p;
    }
    return nullptr;
  }
  void give(void* p, size_t bytes) {
    if (bytes > kStorageCacheBytes) {
      std::free(p);
      return;
    }
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (held_ + bytes > kStorageCacheBytes) {
        held_ -= blocks_.front().first;
        evicted.push_back(blocks_.front().second);
        blocks_.erase(blocks_.begin());
      }
      blocks_.emplace_back(bytes, p);
      held_ += bytes;
    }
    for (void* q : evicted) std::free(q);
  }
  size_t held() {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<size_t, void*>> blocks_;
  size_t held_ = 0;
};

/// Never destroyed: tensors held in static storage may be freed after other statics are gone.
BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;
  return *cache;
}

}  // namespace

std::shared_ptr<uint8_t> allocate_storage(size_t bytes) {
  // Round up so vector kernels may read a full 64-byte line past the last element of a row.
  size_t size = (bytes + 64) / 64 * 64;
  // Large tensors get 2 MiB alignment and a transparent-huge-page hint: a fresh 64 MiB buffer
  // then costs 32 page faults instead of 16384, which otherwise dominate a dequantize call.
  const bool huge = size >= 2 * kHugePage;
  if (huge) size = (size + kHugePage - 1) / kHugePage * kHugePage;
  const bool cached = kCacheBlocks && size >= kCachedFrom;
  if (cached && !huge) size = (size + 4095) / 4096 * 4096;
  void* raw = cached ? block_cache().take(size) : nullptr;
  if (raw == nullptr) {
    raw = std::aligned_alloc(huge ? kHugePage : 64, size);
    QK_CHECK(raw != nullptr, Error, "out of memory allocating ",
             format_bytes(static_cast<int64_t>(size)));
    if (huge) ::madvise(raw, size, MADV_HUGEPAGE);
  }
  if (!cached) return {static_cast<uint8_t*>(raw), [](uint8_t* p) { std::free(p); }};
  return {static_cast<uint8_t*>(raw), [size](uint8_t* p) { block_cache().give(p, size); }};
}

size_t cached_storage_bytes() {
  return block_cache().held();
}

}  // namespace quantkit::detail

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/storage.h"
#include "quantkit/core/tensor.h"

namespace quantkit {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCached = false;  // AddressSanitizer must see every block freed
#else
constexpr bool kCached = true;
#endif

TEST(Storage, FreedLargeBlocksComeBackAlignedAndDistinct) {
  for (size_t bytes : {size_t{100} << 10, size_t{1} << 20, size_t{5} << 20}) {
    const size_t alignment = bytes >= (size_t{4} << 20) ? (size_t{2} << 20) : 64;
    uint8_t* first = nullptr;
    {
      auto a = detail::allocate_storage(bytes);
      first = a.get();
      std::memset(a.get(), 0xAB, bytes);
    }
    auto b = detail::allocate_storage(bytes);
    auto c = detail::allocate_storage(bytes);
    if (kCached) {
      EXPECT_EQ(b.get(), first) << bytes;  // the block just freed, not a fresh one
    }
    ASSERT_NE(b.get(), c.get());
    for (const auto& p : {b, c}) EXPECT_EQ(reinterpret_cast<uintptr_t>(p.get()) % alignment, 0u);
    std::memset(b.get(), 1, bytes);
    std::memset(c.get(), 2, bytes);
    EXPECT_EQ(b.get()[bytes - 1], 1);
    EXPECT_EQ(c.get()[0], 2);
  }
}

TEST(Storage, TheCacheKeepsItsBound) {
  {
    std::vector<std::shared_ptr<uint8_t>> live;
    for (int i = 0; i < 100; ++i) live.push_back(detail::allocate_storage(size_t{1} << 20));
  }
  EXPECT_LE(detail::cached_storage_bytes(), detail::kStorageCacheBytes);
  if (kCached) {
    EXPECT_GE(detail::cached_storage_bytes(), detail::kStorageCacheBytes / 2);
  }
  // Small blocks are never cached; tensors take their storage from here.
  const size_t before = detail::cached_storage_bytes();
  { Tensor t = Tensor::empty({16}, DType::kFloat32); }
  EXPECT_EQ(detail::cached_storage_bytes(), before);
}

}  // namespace
}  // namespace quantkit

// Pieces shared by the AMX kernels (amx_int8.cpp, amx_int16.cpp): the tile configuration and the
// weight block widened to one unsigned byte per code. Include only from translation units built
// with the AMX flags (src/CMakeLists.txt).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "quantkit/kernels/linear.h"

namespace quantkit::kernels::amx {

/// Weight rows per block: two A tiles of 16 rows.
constexpr int64_t kBlockRows = 32;

/// Loads a palette-1 tile configuration: tile t has rows[t] rows of colsb[t] bytes.
inline void configure_tiles(const uint8_t (&rows)[8], const uint16_t (&colsb)[8]) {
  struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  } cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = rows[t];
    cfg.colsb[t] = colsb[t];
  }
  _tile_loadconfig(&cfg);
}

/// One thread's block of 32 weight rows as unsigned code bytes (8-bit rows read in place when
/// all 32 exist, else copied; 4- and 2-bit codes widened to a byte each in element order; rows
/// past N read as zero), with their group scales and offsets as float32.
class WeightBlock {
 public:
  WeightBlock(const PackedLinearWeight& p, int64_t k_padded)
      : p_(p), k_padded_(k_padded), scales_(static_cast<size_t>(kBlockRows * p.groups)) {
    if (p.has_offsets) offsets_.resize(scales_.size());
  }
  void load(int64_t n0) {
    rows_ = std::min(kBlockRows, p_.out_features - n0);
    p_.group_params(n0, rows_, scales_.data(), p_.has_offsets ? offsets_.data() : nullptr);
    const uint8_t* codes = p_.codes.data<uint8_t>() + n0 * p_.row_bytes;
    const int bits = dtype_bits(p_.dtype);
    if (bits == 8 && rows_ == kBlockRows) {
      base_ = codes;
      stride_ = p_.row_bytes;
      return;
    }
    bytes_.resize(static_cast<size_t>(kBlockRows * k_padded_));
    std::fill(bytes_.begin() + rows_ * k_padded_, bytes_.end(), uint8_t{0});
    base_ = bytes_.data();
    stride_ = k_padded_;
    for (int64_t r = 0; r < rows_; ++r) {
      const uint8_t* src = codes + r * p_.row_bytes;
      uint8_t* dst = bytes_.data() + r * k_padded_;
      if (bits == 8) {
        std::memcpy(dst, src, static_cast<size_t>(std::min(p_.row_bytes, k_padded_)));
      } else if (bits == 4) {
        widen_u4(src, dst);
      } else {
        widen_u2(src, dst);
      }
    }
  }
  const uint8_t* tile(int i, int64_t k0) const { return base_ + i * 16 * stride_ + k0; }
  int64_t stride() const { return stride_; }
  int64_t rows() const { return rows_; }
  float scale(int64_t r, int64_t g) const {
    return scales_[static_cast<size_t>(r * p_.groups + g)];
  }
  float offset(int64_t r, int64_t g) const {
    return offsets_.empty() ? 0.0f : offsets_[static_cast<size_t>(r * p_.groups + g)];
  }

 private:
  // A 32-element chunk of 4-bit codes is 16 bytes: elements 0-15 in the low nibbles, 16-31 in
  // the high ones (linear.h).
  void widen_u4(const uint8_t* src, uint8_t* dst) const {
    const __m128i low4 = _mm_set1_epi8(0x0F);
    for (int64_t c = 0; c * 32 < k_padded_ && c * 16 < p_.row_bytes; ++c) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + c * 16));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * 32), _mm_and_si128(b, low4));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * 32 + 16),
                       _mm_and_si128(_mm_srli_epi16(b, 4), low4));
    }
  }
  // A chunk of 2-bit codes is 8 bytes: bit field i (bits 2i, 2i + 1) holds elements 8i..8i + 7.
  void widen_u2(const uint8_t* src, uint8_t* dst) const {
    const __m128i low2 = _mm_set1_epi8(0x03);
    for (int64_t c = 0; c * 32 < k_padded_ && c * 8 < p_.row_bytes; ++c) {
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + c * 8));
      const __m128i f01 =
          _mm_unpacklo_epi64(_mm_and_si128(b, low2), _mm_and_si128(_mm_srli_epi16(b, 2), low2));
      const __m128i f23 = _mm_unpacklo_epi64(_mm_and_si128(_mm_srli_epi16(b, 4), low2),
                                             _mm_and_si128(_mm_srli_epi16(b, 6), low2));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * 32), f01);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * 32 + 16), f23);
    }
  }

  const PackedLinearWeight& p_;
  int64_t k_padded_;
  std::vector<float> scales_, offsets_;
  std::vector<uint8_t> bytes_;
  const uint8_t* base_ = nullptr;
  int64_t stride_ = 0, rows_ = 0;
};

}  // namespace quantkit::kernels::amx

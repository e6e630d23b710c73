// Pieces shared by the AMX kernels (amx_int8.cpp, amx_int16.cpp): the tile configuration and the
// weight block widened to one unsigned byte per code. Include only from translation units built
// with the AMX flags (src/CMakeLists.txt).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "prefetch.h"
#include "quantkit/kernels/linear.h"

namespace quantkit::kernels::amx {

/// Weight rows per block: two A tiles of 16 rows.
constexpr int64_t kBlockRows = 32;

/// For the paired kernels (at most 8 tokens, token columns 8-15 zero): `rows` activation-tile
/// rows of 64 bytes at src move to dst with their 8 tokens in columns 8-15 and zeros in 0-7
/// (dst == src: in place).
inline void move_to_upper_columns(uint8_t* dst, const uint8_t* src, int64_t rows) {
  for (int64_t r = 0; r < rows; ++r, dst += 64, src += 64) {
    uint8_t first[32];
    std::memcpy(first, src, 32);
    std::memset(dst, 0, 32);
    std::memcpy(dst + 32, first, 32);
  }
}

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

/// Spreads prefetches of a later weight block's packed codes over the steps of the current one,
/// in address order. The 4-bit kernels widen each block from rows 2 KiB apart, 32 streams the
/// hardware prefetcher ramps up late when the weights come from DRAM: fetching the block a
/// thread takes next (under dynamic scheduling most often rb + threads) one step's share at a
/// time, weights streamed from DRAM, 4096^2, 2 threads: W4A8 g32 M = 32 1.27-1.30x; W4A16 g32
/// M = 8 / 32 1.10-1.25x / 1.06-1.13x, W2A16 1.11-1.15x, W8A16 1.05-1.10x (their blocks are
/// copied too). Not for the 8-bit rows the int8 kernel reads in place: there it cost 5 % at
/// M = 8.
class BlockPrefetch {
 public:
  /// Block `rb`'s codes (none past the last block) over `steps` calls of step().
  BlockPrefetch(const PackedLinearWeight& p, int64_t rb, int64_t steps) {
    const int64_t n0 = rb * kBlockRows;
    if (n0 >= p.out_features) return;
    next_ = p.codes.data<uint8_t>() + n0 * p.row_bytes;
    lines_ = std::min(kBlockRows, p.out_features - n0) * p.row_bytes / 64;
    per_step_ = (lines_ + steps - 1) / std::max<int64_t>(steps, 1);
  }
  void step() {
    for (int64_t i = 0; i < per_step_ && done_ < lines_; ++i, ++done_)
      prefetch_l2(next_ + 64 * done_);
  }

 private:
  const uint8_t* next_ = nullptr;
  int64_t lines_ = 0, per_step_ = 0, done_ = 0;
};

/// One thread's block of 32 weight rows as unsigned code bytes, with their group scales and
/// offsets as float32. The bytes are stored tile-major, [K / kb][32 rows][kb bytes], so that
/// one A tile (16 rows x kb bytes) is 16 kb contiguous bytes: rows of K bytes apart all fall in
/// the same L1 set when K is a multiple of 4096 and evicted each other. 4- and 2-bit codes are
/// widened to a byte each in element order; rows past N read as zero. `in_place_8bit`: whole
/// blocks of 8-bit rows are read where they are instead (stride row_bytes), no copy.
/// `code_bias`: added to every copied code byte (wrapping): qmin turns the unsigned codes u into
/// the signed q = u + qmin.
class WeightBlock {
 public:
  WeightBlock(const PackedLinearWeight& p, int64_t k_padded, int64_t kb, bool in_place_8bit,
              int8_t code_bias = 0)
      : p_(p),
        k_padded_(k_padded),
        kb_(kb),
        in_place_8bit_(in_place_8bit),
        code_bias_(code_bias),
        // One zero past the last row: kernels that read a row's scales two at a time may read
        // one past its last group.
        scales_(static_cast<size_t>(kBlockRows * p.groups + 1)) {
    if (p.has_offsets) offsets_.resize(scales_.size());
  }
  /// Rows n0 .. n0 + 31 (fewer at the end), codes and all.
  void load(int64_t n0) {
    begin(n0);
    widen_until(k_padded_);
  }
  /// Rows n0 ..: their scales and offsets now, the codes of a copied block as widen_until()
  /// asks, so that a kernel can widen a few steps ahead of its tile loads (the vector units run
  /// beside AMX) instead of all before them.
  void begin(int64_t n0) {
    rows_ = std::min(kBlockRows, p_.out_features - n0);
    p_.group_params(n0, rows_, scales_.data(), p_.has_offsets ? offsets_.data() : nullptr);
    codes_ = p_.codes.data<uint8_t>() + n0 * p_.row_bytes;
    if (dtype_bits(p_.dtype) == 8 && rows_ == kBlockRows && in_place_8bit_ && code_bias_ == 0) {
      base_ = codes_;
      row_stride_ = p_.row_bytes;
      step_stride_ = kb_;
      tile_stride_ = p_.row_bytes;
      ready_chunks_ = k_padded_ / 32;
      in_place_ = true;
      return;
    }
    bytes_.resize(static_cast<size_t>(kBlockRows * k_padded_));
    base_ = bytes_.data();
    row_stride_ = kb_;
    step_stride_ = kBlockRows * kb_;
    tile_stride_ = kb_;
    if (rows_ < kBlockRows) std::fill(bytes_.begin(), bytes_.end(), uint8_t{0});
    ready_chunks_ = 0;
    in_place_ = false;
  }
  /// Makes the codes of K offsets below k (rounded up to a 32-element chunk) ready to load.
  void widen_until(int64_t k) {
    const int64_t end = std::min(k_padded_, k + 31) / 32;
    if (end <= ready_chunks_) return;
    const int bits = dtype_bits(p_.dtype);
    const __m128i bias = _mm_set1_epi8(code_bias_);
    int64_t c = ready_chunks_;
    const __m512i bias64 = _mm512_set1_epi8(code_bias_);
    if ((bits == 4 || bits == 8) && kb_ == 64) {  // steps of 64 bytes: a row's step at once
      for (; c + 2 <= end; c += 2) {
        uint8_t* dst = bytes_.data() + c / 2 * step_stride_;
        for (int64_t r = 0; r < rows_; ++r, dst += kb_) {
          const uint8_t* src = codes_ + r * p_.row_bytes + c * 4 * bits;
          if (bits == 8) {
            _mm512_storeu_si512(dst, _mm512_add_epi8(_mm512_loadu_si512(src), bias64));
          } else {
            widen_u4_pair(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)), bias64, dst);
          }
        }
      }
    }
    // Chunks outer: the block is written in address order.
    for (; c < end; ++c) {
      uint8_t* dst = bytes_.data() + (c * 32 / kb_) * step_stride_ + c * 32 % kb_;
      for (int64_t r = 0; r < rows_; ++r, dst += kb_) {
        const uint8_t* src = codes_ + r * p_.row_bytes;
        if (bits == 8) {
          copy_u8(src + c * 32, bias, dst);
        } else if (bits == 4) {
          widen_u4(src + c * 16, bias, dst);
        } else {
          widen_u2(src + c * 8, bias, dst);
        }
      }
    }
    ready_chunks_ = end;
  }
  /// Rows 16 i .. 16 i + 15 at K offset k0 (a multiple of kb), `stride()` bytes apart.
  const uint8_t* tile(int i, int64_t k0) const {
    return base_ + (k0 / kb_) * step_stride_ + i * 16 * row_stride_;
  }
  int64_t stride() const { return tile_stride_; }
  /// Whether the loaded block is read where the packed rows are (stride() = row_bytes).
  bool in_place() const { return in_place_; }
  /// Bytes from a tile at K offset k0 to the same rows' tile at k0 + kb.
  int64_t step_bytes() const { return step_stride_; }
  int64_t rows() const { return rows_; }
  float scale(int64_t r, int64_t g) const {
    return scales_[static_cast<size_t>(r * p_.groups + g)];
  }
  float offset(int64_t r, int64_t g) const {
    return offsets_.empty() ? 0.0f : offsets_[static_cast<size_t>(r * p_.groups + g)];
  }
  /// Row r's scales (and offsets, null when there are none), one per group.
  const float* row_scales(int64_t r) const { return scales_.data() + r * p_.groups; }
  const float* row_offsets(int64_t r) const {
    return offsets_.empty() ? nullptr : offsets_.data() + r * p_.groups;
  }

 private:
  // Each writes the 32 codes of one chunk as bytes plus `bias` (wrapping).
  static void copy_u8(const uint8_t* src, __m128i bias, uint8_t* dst) {
    for (int half = 0; half < 2; ++half) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16 * half));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16 * half), _mm_add_epi8(b, bias));
    }
  }
  // A 32-element chunk of 4-bit codes is 16 bytes: elements 0-15 in the low nibbles, 16-31 in
  // the high ones (linear.h).
  static void widen_u4(const uint8_t* src, __m128i bias, uint8_t* dst) {
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_add_epi8(_mm_and_si128(b, low4), bias));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16),
                     _mm_add_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), low4), bias));
  }
  // Two chunks of 4-bit codes (32 bytes: a row's step of 64 elements) as 64 bytes in element
  // order: one 512-bit store where widen_u4 takes eight 128-bit operations per chunk. The W4A8
  // kernel widens every block once per use up to 32 tokens: in cache, M = 8 / 32 per channel,
  // 1.1-1.2x / 1.13-1.25x; streamed M = 8 per channel 1.1-1.2x, paired g32 1.17-1.2x. (Pairs of
  // rows at kb = 32, for group size 32 beyond 8 tokens and for amx_int16: within noise.) 8-bit
  // steps likewise go in one 512-bit copy: W8A16 per channel in cache, M = 6 / 8, 1.12x / 1.1x.
  static void widen_u4_pair(__m256i packed, __m512i bias, uint8_t* dst) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    // maskz: GCC 12 warns that the unmasked broadcast reads an undefined register.
    const __m512i b = _mm512_maskz_broadcast_i64x4(0xFF, packed);
    const __m512i lo = _mm512_and_si512(b, low4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
    // 128-bit lanes: chunk c's low nibbles, its high ones, then chunk c + 1's.
    const __m512i order = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    _mm512_storeu_si512(dst, _mm512_add_epi8(_mm512_permutex2var_epi64(lo, order, hi), bias));
  }
  // A chunk of 2-bit codes is 8 bytes: bit field i (bits 2i, 2i + 1) holds elements 8i..8i + 7.
  static void widen_u2(const uint8_t* src, __m128i bias, uint8_t* dst) {
    const __m128i low2 = _mm_set1_epi8(0x03);
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src));
    const __m128i f01 =
        _mm_unpacklo_epi64(_mm_and_si128(b, low2), _mm_and_si128(_mm_srli_epi16(b, 2), low2));
    const __m128i f23 = _mm_unpacklo_epi64(_mm_and_si128(_mm_srli_epi16(b, 4), low2),
                                           _mm_and_si128(_mm_srli_epi16(b, 6), low2));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_add_epi8(f01, bias));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16), _mm_add_epi8(f23, bias));
  }

  const PackedLinearWeight& p_;
  int64_t k_padded_, kb_;
  bool in_place_8bit_;
  int8_t code_bias_;
  std::vector<float> scales_, offsets_;
  std::vector<uint8_t> bytes_;
  const uint8_t* codes_ = nullptr;  // packed rows of the block
  const uint8_t* base_ = nullptr;
  int64_t row_stride_ = 0, step_stride_ = 0, tile_stride_ = 0, rows_ = 0, ready_chunks_ = 0;
  bool in_place_ = false;
};

}  // namespace quantkit::kernels::amx

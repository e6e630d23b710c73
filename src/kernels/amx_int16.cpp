// Weight-only W8A16 / W4A16 / W2A16 on int16 activations through AMX (amx_int16.h). Compiled
// with the AMX flags (src/CMakeLists.txt).
//
// Blocking: 32 weight rows x 16 tokens per step over one 32-element chunk of K (up to 8 tokens:
// over a pair of chunks, the second in token columns 8-15, block_product_paired). Tiles: 0-1 the
// high-byte dots of rows 0-15 and 16-31, 2-3 the low-byte dots, 4-5 the weight codes (16 rows x
// 32 bytes), 6 the activations' high bytes and 7 their low bytes (8 rows of 16 tokens x 4 bytes:
// the layout the tile dot products multiply by). Every chunk has its own activation scale, so the
// four dot tiles leave the tiles once per chunk to be combined and scaled in float; that float
// work, not the tile products, is most of the time. Codes of signed dtypes enter the tiles signed
// (q = u + qmin, TDPBSSD / TDPBSUD), unsigned ones as they are (qmin = 0, TDPBUSD / TDPBUUD): no
// qmin * sum(x) term is left, only the offsets of asymmetric weights, once per group.
//
// W4A16 g32, 4096 x 4096, in cache, 2 threads: 500-610 GFLOPS at M = 32-512 (the avx512 int16
// kernel: 190-215); the weight block's bytes must be written in one piece each (a separate pass
// adding qmin after the widening stores stalled on store forwarding: 270 at M = 32). Measured
// and dropped: x as two bfloat16 terms through TDPBF16PS (no per-chunk scaling, but 0.65-0.75x
// at g32, 0.9x per channel), the chunk loop outside a panel of 8 token blocks (weight tiles from
// L1: 0.75-0.9x), issuing chunk c + 1's tile products before scaling chunk c (within noise),
// two one-chunk groups per pass over the accumulators, which loaded and stored them half as
// often (g32: 0.90-0.94x).
#include "amx_int16.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "quantkit/core/error.h"

#if defined(__AMX_INT8__) && defined(__AMX_TILE__) && defined(__AVX512F__)
#include "amx_tiles.h"
#define QK_AMX_BUILT 1
#endif

namespace quantkit::kernels {

bool amx_int16_takes(const PackedLinearWeight& p) {
  return !is_float8(p.dtype) && (p.group_size >= p.in_features || p.group_size % 32 == 0);
}

#if defined(QK_AMX_BUILT)
namespace {

constexpr int64_t kChunk = 32;
constexpr int64_t kTokens = 16;  // tokens per step: the columns of one accumulator tile
/// Tokens up to which chunks go in pairs: token columns 0-7 take chunk c and 8-15 chunk c + 1,
/// so one product over 64 bytes of K and one float pass serve two chunks (block_product_paired).
constexpr int64_t kPairedMaxTokens = 8;

/// Activations regrouped for the tiles: token block b (16 tokens, zero tokens past m) holds,
/// per chunk, its high bytes [8][16 tokens][4] then its low bytes [8][16][4]; beside them, per
/// block, the chunk scales [chunks][16 tokens] and group sums [groups][16 tokens].
class TokenTiles {
 public:
  /// `paired` (at most kPairedMaxTokens tokens): chunks in pairs (pair_high, pair_low,
  /// pair_scales), the count rounded up to even with a zero chunk.
  TokenTiles(const AmxInt16Problem& pr, int64_t groups, int threads, bool paired)
      : chunks_(paired ? (pr.chunks + 1) / 2 * 2 : pr.chunks), paired_(paired) {
    QK_CHECK(pr.xh_stride < (int64_t{1} << 26), ValueError, "amx_linear_int16: activation rows of ",
             pr.xh_stride, " elements: the gather offsets are int32");
    QK_CHECK(!paired || pr.m <= kPairedMaxTokens, ValueError, "amx_linear_int16: ", pr.m,
             " tokens cannot pair chunks");
    blocks_ = (pr.m + kTokens - 1) / kTokens;
    bytes_.reset(new uint8_t[static_cast<size_t>(blocks_ * chunks_ * 2 * kChunk * kTokens)]);
    if (chunks_ > pr.chunks)  // the zero chunk that completes the last pair
      std::memset(chunk_bytes(0, pr.chunks), 0, static_cast<size_t>(2 * kChunk * kTokens));
    scales_.assign(static_cast<size_t>(blocks_ * chunks_ * kTokens), 0.0f);
    sums_.assign(static_cast<size_t>(blocks_ * groups * kTokens), 0.0f);
    // Byte offsets of 8 tokens' rows; each 64-bit gather takes 4 int16 of 8 tokens.
    const __m256i rows = _mm256_mullo_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm256_set1_epi32(static_cast<int>(pr.xh_stride * 2)));
#pragma omp parallel for schedule(static) num_threads(threads) if (pr.m * pr.chunks > 2048)
    for (int64_t b = 0; b < blocks_; ++b) {
      const int64_t live = std::min(kTokens, pr.m - b * kTokens);
      const auto live_mask = static_cast<uint32_t>((1u << live) - 1);
      const int16_t* x = pr.xh + b * kTokens * pr.xh_stride;
      for (int64_t c = 0; c < pr.chunks; ++c) {
        uint8_t* high = chunk_bytes(b, c);
        uint8_t* low = high + kChunk * kTokens;
        for (int64_t q = 0; q < kChunk / 4; ++q) {  // tile row q: elements 4q..4q+3
          for (int half = 0; half < 2; ++half) {    // tokens 8 half .. 8 half + 7
            const auto mask = static_cast<__mmask8>(live_mask >> (8 * half));
            const int16_t* base = x + 8 * half * pr.xh_stride + c * kChunk + 4 * q;
            const __m512i v =
                _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), mask, rows, base, 1);
            // maskz: GCC 12 warns that the unmasked forms read an undefined register.
            const __m256i hi = _mm512_maskz_cvtepi16_epi8(~0u, _mm512_maskz_srli_epi16(~0u, v, 8));
            const __m256i lo = _mm512_maskz_cvtepi16_epi8(~0u, v);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(high + q * 64 + half * 32), hi);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(low + q * 64 + half * 32), lo);
          }
        }
        for (int64_t t = 0; t < live; ++t)
          scales_[static_cast<size_t>((b * chunks_ + c) * kTokens + t)] =
              pr.chunk_scales[(b * kTokens + t) * pr.chunks + c];
      }
      for (int64_t t = 0; t < live; ++t) {
        for (int64_t g = 0; g < groups; ++g)
          sums_[static_cast<size_t>((b * groups + g) * kTokens + t)] =
              pr.xh_group_sums[(b * kTokens + t) * groups + g];
      }
    }
    if (paired) pair_chunks();
  }
  int64_t blocks() const {
    return blocks_;
  }
  /// Pair i of chunks (2i, 2i + 1) after pair_chunks(): K = 64 of high bytes [16][16 tokens][4],
  /// the first chunk in token columns 0-7 and the second in 8-15 (zero elsewhere), then the low
  /// bytes alike; its chunk scales, the first chunk's tokens in lanes 0-7, the second's in 8-15.
  const uint8_t* pair_high(int64_t i) const {
    return high(0, 2 * i);
  }
  const uint8_t* pair_low(int64_t i) const {
    return high(0, 2 * i) + 2 * kChunk * kTokens;
  }
  const float* pair_scales(int64_t i) const {
    return scales_.data() + 2 * i * kTokens;
  }
  bool paired() const {
    return paired_;
  }
  uint8_t* chunk_bytes(int64_t b, int64_t c) {
    return bytes_.get() + (b * chunks_ + c) * 2 * kChunk * kTokens;
  }
  const uint8_t* high(int64_t b, int64_t c) const {
    return bytes_.get() + (b * chunks_ + c) * 2 * kChunk * kTokens;
  }
  const uint8_t* low(int64_t b, int64_t c) const {
    return high(b, c) + kChunk * kTokens;
  }
  const float* chunk_scales(int64_t b) const {
    return scales_.data() + b * chunks_ * kTokens;
  }
  const float* group_sums(int64_t b, int64_t groups) const {
    return sums_.data() + b * groups * kTokens;
  }

 private:
  /// Chunks c, c + 1 stored [high c][low c][high c+1][low c+1] (token columns 8-15 zero) become
  /// [high c][high c+1 in columns 8-15][low c][low c+1 in columns 8-15], and their scales one
  /// vector.
  void pair_chunks() {
    constexpr int64_t kPlane = kChunk * kTokens;  // bytes of one chunk's high (or low) bytes
    uint8_t low_first[kPlane];
    for (int64_t i = 0; i < chunks_ / 2; ++i) {
      uint8_t* pair = chunk_bytes(0, 2 * i);
      std::memcpy(low_first, pair + kPlane, kPlane);
      amx::move_to_upper_columns(pair + kPlane, pair + 2 * kPlane, kChunk / 4);
      std::memcpy(pair + 2 * kPlane, low_first, kPlane);
      amx::move_to_upper_columns(pair + 3 * kPlane, pair + 3 * kPlane, kChunk / 4);
      float* scales = scales_.data() + 2 * i * kTokens;
      std::memcpy(scales + 8, scales + kTokens, 8 * sizeof(float));
      std::fill(scales + kTokens, scales + 2 * kTokens, 0.0f);
    }
  }

  int64_t chunks_;
  bool paired_;
  int64_t blocks_ = 0;
  std::unique_ptr<uint8_t[]> bytes_;  // uninitialised storage: every byte is written
  std::vector<float> scales_, sums_;
};

void configure_int16_tiles() {
  amx::configure_tiles({16, 16, 16, 16, 16, 16, 8, 8}, {64, 64, 64, 64, 32, 32, 64, 64});
}

/// Paired chunks: weight tiles of 64 bytes of K, activation tiles of 16 rows.
void configure_int16_paired_tiles() {
  amx::configure_tiles({16, 16, 16, 16, 16, 16, 16, 16}, {64, 64, 64, 64, 64, 64, 64, 64});
}

/// Tiles 0-1 = codes . high bytes, tiles 2-3 = codes . low bytes for one chunk (or pair of
/// chunks): weight rows 0-15 at a0, 16-31 at a1, `stride` bytes apart. Signed codes (q = u +
/// qmin) where qmin < 0, so that no qmin * sum(x) term is left to add.
template <bool kSignedCodes>
inline void tile_products(const uint8_t* a0, const uint8_t* a1, int64_t stride, const uint8_t* high,
                          const uint8_t* low) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a0, stride);
  _tile_loadd(5, a1, stride);
  _tile_loadd(6, high, 64);
  _tile_loadd(7, low, 64);
  if constexpr (kSignedCodes) {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 5, 6);
    _tile_dpbsud(2, 4, 7);
    _tile_dpbsud(3, 5, 7);
  } else {
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 5, 6);
    _tile_dpbuud(2, 4, 7);
    _tile_dpbuud(3, 5, 7);
  }
}

template <bool kSignedCodes>
inline void chunk_tiles(const amx::WeightBlock& w, const TokenTiles& tokens, int64_t b, int64_t c) {
  tile_products<kSignedCodes>(w.tile(0, c * kChunk), w.tile(1, c * kChunk), w.stride(),
                              tokens.high(b, c), tokens.low(b, c));
}

/// The 32 rows x 16 tokens of one chunk's dots, 256 high + low, as float: dots[0] the high
/// tiles, dots[1] the low ones, [row][token] each.
inline __m512 chunk_dot(const int32_t (&dots)[2][amx::kBlockRows * kTokens], int64_t r) {
  const __m512i h = _mm512_load_si512(dots[0] + r * kTokens);
  const __m512i l = _mm512_load_si512(dots[1] + r * kTokens);
  // maskz: GCC 12 warns that the unmasked forms read an undefined register.
  return _mm512_maskz_cvtepi32_ps(0xFFFF,
                                  _mm512_add_epi32(_mm512_maskz_slli_epi32(0xFFFF, h, 8), l));
}

inline void store_dots(int32_t (&dots)[2][amx::kBlockRows * kTokens]) {
  _tile_stored(0, dots[0], 64);
  _tile_stored(1, dots[0] + 16 * kTokens, 64);
  _tile_stored(2, dots[1], 64);
  _tile_stored(3, dots[1] + 16 * kTokens, 64);
}

/// acc[r][t] += s[r][g] * sum over the group's chunks of chunk_scale[t][c] * dot[r][t][c], plus
/// off[r][g] * group_sum[t][g], for one row block and token block. Groups of one chunk take the
/// scales straight into acc.
template <bool kSignedCodes>
void block_product(const amx::WeightBlock& w, const TokenTiles& tokens, int64_t b, int64_t chunks,
                   int64_t chunks_per_group, int64_t groups, bool offsets, amx::BlockPrefetch* next,
                   float* acc) {
  alignas(64) int32_t dots[2][amx::kBlockRows * kTokens];
  alignas(64) float group_acc[amx::kBlockRows * kTokens];
  const int64_t rows = w.rows();
  const float* chunk_scales = tokens.chunk_scales(b);
  const float* group_sums = tokens.group_sums(b, groups);
  std::fill(acc, acc + amx::kBlockRows * kTokens, 0.0f);
  for (int64_t g = 0, c = 0; g < groups; ++g) {
    if (chunks_per_group == 1) {
      if (next) next->step();
      chunk_tiles<kSignedCodes>(w, tokens, b, c);
      store_dots(dots);
      const __m512 cs = _mm512_loadu_ps(chunk_scales + c * kTokens);
      for (int64_t r = 0; r < rows; ++r) {
        float* a = acc + r * kTokens;
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(w.scale(r, g)), cs);
        _mm512_store_ps(a, _mm512_fmadd_ps(chunk_dot(dots, r), scale, _mm512_load_ps(a)));
      }
      ++c;
    } else {
      const int64_t c_end = std::min(chunks, c + chunks_per_group);
      std::fill(group_acc, group_acc + rows * kTokens, 0.0f);
      for (; c < c_end; ++c) {
        if (next) next->step();
        chunk_tiles<kSignedCodes>(w, tokens, b, c);
        store_dots(dots);
        const __m512 cs = _mm512_loadu_ps(chunk_scales + c * kTokens);
        for (int64_t r = 0; r < rows; ++r) {
          float* ga = group_acc + r * kTokens;
          _mm512_store_ps(ga, _mm512_fmadd_ps(chunk_dot(dots, r), cs, _mm512_load_ps(ga)));
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* a = acc + r * kTokens;
        _mm512_store_ps(a, _mm512_fmadd_ps(_mm512_load_ps(group_acc + r * kTokens),
                                           _mm512_set1_ps(w.scale(r, g)), _mm512_load_ps(a)));
      }
    }
    if (!offsets) continue;
    const __m512 sum = _mm512_loadu_ps(group_sums + g * kTokens);
    for (int64_t r = 0; r < rows; ++r) {
      float* a = acc + r * kTokens;
      _mm512_store_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(w.offset(r, g)), sum, _mm512_load_ps(a)));
    }
  }
}

/// block_product for at most kPairedMaxTokens tokens with chunks in pairs: per pair one set of
/// tile products over 64 bytes of K, whose lanes 0-7 hold chunk 2i's dots and 8-15 chunk
/// 2i + 1's, each lane times its chunk scale and its chunk's group scale. acc[r][t] + acc[r][8 + t]
/// is row r's output for token t.
template <bool kSignedCodes>
void block_product_paired(amx::WeightBlock& w, const TokenTiles& tokens, int64_t pairs,
                          int64_t chunks_per_group, int64_t groups, bool offsets,
                          amx::BlockPrefetch* next, float* acc) {
  alignas(64) int32_t dots[2][amx::kBlockRows * kTokens];
  const int64_t rows = w.rows();
  std::fill(acc, acc + amx::kBlockRows * kTokens, 0.0f);
  for (int64_t i = 0; i < pairs; ++i) {
    if (next) next->step();
    w.widen_until((i + 3) * 2 * kChunk);  // two pairs ahead of the tile loads
    tile_products<kSignedCodes>(w.tile(0, i * 2 * kChunk), w.tile(1, i * 2 * kChunk), w.stride(),
                                tokens.pair_high(i), tokens.pair_low(i));
    store_dots(dots);
    const __m512 cs = _mm512_loadu_ps(tokens.pair_scales(i));
    // The second chunk's group may be one past the last (a zero chunk completing the pair): its
    // scale is then the next row's or the block's zero padding, times dots that are zero.
    const int64_t g0 = 2 * i / chunks_per_group, g1 = (2 * i + 1) / chunks_per_group;
    for (int64_t r = 0; r < rows; ++r) {
      float* a = acc + r * kTokens;
      __m512 gs = _mm512_set1_ps(w.scale(r, g0));
      if (g1 != g0) gs = _mm512_mask_blend_ps(0xFF00, gs, _mm512_set1_ps(w.scale(r, g1)));
      _mm512_store_ps(
          a, _mm512_fmadd_ps(chunk_dot(dots, r), _mm512_mul_ps(gs, cs), _mm512_load_ps(a)));
    }
  }
  if (!offsets) return;
  const float* group_sums = tokens.group_sums(0, groups);  // token columns 8-15 are zero
  for (int64_t g = 0; g < groups; ++g) {
    const __m512 sum = _mm512_loadu_ps(group_sums + g * kTokens);
    for (int64_t r = 0; r < rows; ++r) {
      float* a = acc + r * kTokens;
      _mm512_store_ps(a, _mm512_fmadd_ps(_mm512_set1_ps(w.offset(r, g)), sum, _mm512_load_ps(a)));
    }
  }
}

/// y = x W^T for one weight on the regrouped activations.
void weight_product(const TokenTiles& tokens, const PackedLinearWeight& p, int64_t chunks,
                    int64_t m, float* y, int threads) {
  QK_CHECK(amx_int16_takes(p), DTypeError, "amx_linear_int16: weights of dtype ",
           dtype_name(p.dtype), " and group size ", p.group_size, " have no AMX kernel");
  const bool paired = tokens.paired();
  const int64_t pairs = (chunks + 1) / 2;
  const int64_t k_padded = paired ? pairs * 2 * kChunk : chunks * kChunk;
  const int64_t chunks_per_group = p.group_size >= p.in_features ? chunks : p.group_size / kChunk;
  const auto qmin = static_cast<int8_t>(dtype_info(p.dtype).int_min);
  const int64_t row_blocks = (p.out_features + amx::kBlockRows - 1) / amx::kBlockRows;
#pragma omp parallel num_threads(threads)
  {
    if (paired) {
      configure_int16_paired_tiles();
    } else {
      configure_int16_tiles();
    }
    amx::WeightBlock w(p, k_padded, paired ? 2 * kChunk : kChunk, false, qmin);
    alignas(64) float acc[amx::kBlockRows * kTokens];
#pragma omp for schedule(dynamic, 1)
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const int64_t n0 = rb * amx::kBlockRows;
      if (paired) {  // one token block: widened two pairs ahead of the tile loads
        w.begin(n0);
        amx::BlockPrefetch next(p, rb + threads, pairs);
        if (qmin < 0) {
          block_product_paired<true>(w, tokens, pairs, chunks_per_group, p.groups, p.has_offsets,
                                     &next, acc);
        } else {
          block_product_paired<false>(w, tokens, pairs, chunks_per_group, p.groups, p.has_offsets,
                                      &next, acc);
        }
        for (int64_t t = 0; t < m; ++t) {
          float* yt = y + t * p.out_features + n0;
          for (int64_t r = 0; r < w.rows(); ++r)
            yt[r] = acc[r * kTokens + t] + acc[r * kTokens + 8 + t];
        }
        continue;
      }
      w.load(n0);
      amx::BlockPrefetch next(p, rb + threads, chunks);  // (amx_tiles.h)
      for (int64_t b = 0; b < tokens.blocks(); ++b) {
        amx::BlockPrefetch* during = b == 0 ? &next : nullptr;
        if (qmin < 0) {
          block_product<true>(w, tokens, b, chunks, chunks_per_group, p.groups, p.has_offsets,
                              during, acc);
        } else {
          block_product<false>(w, tokens, b, chunks, chunks_per_group, p.groups, p.has_offsets,
                               during, acc);
        }
        const int64_t valid = std::min(kTokens, m - b * kTokens);
        for (int64_t t = 0; t < valid; ++t) {
          float* yt = y + (b * kTokens + t) * p.out_features + n0;
          for (int64_t r = 0; r < w.rows(); ++r) yt[r] = acc[r * kTokens + t];
        }
      }
    }
    _tile_release();
  }
}

}  // namespace

void amx_linear_int16(const AmxInt16Problem& pr,
                      const std::vector<const PackedLinearWeight*>& weights,
                      const std::vector<float*>& ys, int threads) {
  QK_CHECK(!weights.empty() && ys.size() == weights.size(), ValueError,
           "amx_linear_int16: ", weights.size(), " weights and ", ys.size(), " outputs");
  for (const PackedLinearWeight* p : weights) {
    QK_CHECK(p->in_features == weights.front()->in_features &&
                 p->group_size == weights.front()->group_size,
             ShapeError, "amx_linear_int16: weights sharing x must agree on K and group size");
  }
  const TokenTiles tokens(pr, weights.front()->groups, threads, pr.m <= kPairedMaxTokens);
  for (size_t i = 0; i < weights.size(); ++i)
    weight_product(tokens, *weights[i], pr.chunks, pr.m, ys[i], threads);
}

#else

void amx_linear_int16(const AmxInt16Problem&, const std::vector<const PackedLinearWeight*>&,
                      const std::vector<float*>&, int) {
  throw ValueError("amx_linear_int16: this build has no AMX kernels (compiler without -mamx-int8)");
}

#endif

}  // namespace quantkit::kernels

// Weight-only W8A16 / W4A16 / W2A16 on int16 activations through AMX (amx_int16.h). Compiled
// with the AMX flags (src/CMakeLists.txt).
//
// Blocking: 32 weight rows x 16 tokens per step over one 32-element chunk of K. Tiles: 0-1 the
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

/// Activations regrouped for the tiles: token block b (16 tokens, zero tokens past m) holds,
/// per chunk, its high bytes [8][16 tokens][4] then its low bytes [8][16][4]; beside them, per
/// block, the chunk scales [chunks][16 tokens] and group sums [groups][16 tokens].
class TokenTiles {
 public:
  TokenTiles(const AmxInt16Problem& pr, int64_t groups, int threads) : chunks_(pr.chunks) {
    QK_CHECK(pr.xh_stride < (int64_t{1} << 26), ValueError, "amx_linear_int16: activation rows of ",
             pr.xh_stride, " elements: the gather offsets are int32");
    blocks_ = (pr.m + kTokens - 1) / kTokens;
    bytes_.reset(new uint8_t[static_cast<size_t>(blocks_ * chunks_ * 2 * kChunk * kTokens)]);
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
      for (int64_t c = 0; c < chunks_; ++c) {
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
              pr.chunk_scales[(b * kTokens + t) * chunks_ + c];
      }
      for (int64_t t = 0; t < live; ++t) {
        for (int64_t g = 0; g < groups; ++g)
          sums_[static_cast<size_t>((b * groups + g) * kTokens + t)] =
              pr.xh_group_sums[(b * kTokens + t) * groups + g];
      }
    }
  }
  int64_t blocks() const {
    return blocks_;
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
  int64_t chunks_, blocks_ = 0;
  std::unique_ptr<uint8_t[]> bytes_;  // uninitialised storage: every byte is written
  std::vector<float> scales_, sums_;
};

void configure_int16_tiles() {
  amx::configure_tiles({16, 16, 16, 16, 16, 16, 8, 8}, {64, 64, 64, 64, 32, 32, 64, 64});
}

/// Tiles 0-1 += codes . high bytes, tiles 2-3 += codes . low bytes for one chunk; signed codes
/// (q = u + qmin) where qmin < 0, so that no qmin * sum(x) term is left to add.
template <bool kSignedCodes>
inline void chunk_tiles(const amx::WeightBlock& w, const TokenTiles& tokens, int64_t b, int64_t c) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, w.tile(0, c * kChunk), w.stride());
  _tile_loadd(5, w.tile(1, c * kChunk), w.stride());
  _tile_loadd(6, tokens.high(b, c), 64);
  _tile_loadd(7, tokens.low(b, c), 64);
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

/// y = x W^T for one weight on the regrouped activations.
void weight_product(const TokenTiles& tokens, const PackedLinearWeight& p, int64_t chunks,
                    int64_t m, float* y, int threads) {
  QK_CHECK(amx_int16_takes(p), DTypeError, "amx_linear_int16: weights of dtype ",
           dtype_name(p.dtype), " and group size ", p.group_size, " have no AMX kernel");
  const int64_t k_padded = chunks * kChunk;
  const int64_t chunks_per_group = p.group_size >= p.in_features ? chunks : p.group_size / kChunk;
  const auto qmin = static_cast<int8_t>(dtype_info(p.dtype).int_min);
  const int64_t row_blocks = (p.out_features + amx::kBlockRows - 1) / amx::kBlockRows;
#pragma omp parallel num_threads(threads)
  {
    configure_int16_tiles();
    amx::WeightBlock w(p, k_padded, kChunk, false, qmin);
    alignas(64) float acc[amx::kBlockRows * kTokens];
#pragma omp for schedule(dynamic, 1)
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const int64_t n0 = rb * amx::kBlockRows;
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
  const TokenTiles tokens(pr, weights.front()->groups, threads);
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

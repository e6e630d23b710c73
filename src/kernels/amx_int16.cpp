// Weight-only W8A16 / W4A16 / W2A16 on int16 activations through AMX (amx_int16.h). Compiled
// with the AMX flags (src/CMakeLists.txt).
//
// Blocking: 32 weight rows x 16 tokens per step over one 32-element chunk of K. Tiles: 0-1 the
// high-byte dots of rows 0-15 and 16-31, 2-3 the low-byte dots, 4-5 the weight codes (16 rows x
// 32 bytes), 6 the activations' high bytes and 7 their low bytes (8 rows of 16 tokens x 4 bytes:
// the layout the tile dot products multiply by). Every chunk has its own activation scale, so the
// four dot tiles leave the tiles once per chunk to be combined and scaled in float.
#include "amx_int16.h"

#include <omp.h>

#include <algorithm>
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
/// per chunk, its high bytes [8][16 tokens][4] then its low bytes [8][16][4], followed by the
/// block's chunk scales [chunks][16] and group sums [groups][16].
class TokenTiles {
 public:
  TokenTiles(const AmxInt16Problem& pr, int threads) : chunks_(pr.chunks) {
    const int64_t groups = pr.weight->groups;
    blocks_ = (pr.m + kTokens - 1) / kTokens;
    bytes_.assign(static_cast<size_t>(blocks_ * chunks_ * 2 * kChunk * kTokens), 0);
    scales_.assign(static_cast<size_t>(blocks_ * chunks_ * kTokens), 0.0f);
    sums_.assign(static_cast<size_t>(blocks_ * groups * kTokens), 0.0f);
#pragma omp parallel for schedule(static) num_threads(threads) if (pr.m * pr.chunks > 2048)
    for (int64_t token = 0; token < pr.m; ++token) {
      const int64_t b = token / kTokens, t = token % kTokens;
      const int16_t* x = pr.xh + token * pr.xh_stride;
      for (int64_t c = 0; c < chunks_; ++c) {
        uint8_t* high = chunk_bytes(b, c) + t * 4;
        uint8_t* low = high + kChunk * kTokens;
        for (int64_t j = 0; j < kChunk; ++j) {
          const auto v = static_cast<uint16_t>(x[c * kChunk + j]);
          high[(j / 4) * 64 + j % 4] = static_cast<uint8_t>(v >> 8);
          low[(j / 4) * 64 + j % 4] = static_cast<uint8_t>(v & 0xFF);
        }
        scales_[static_cast<size_t>((b * chunks_ + c) * kTokens + t)] =
            pr.chunk_scales[token * chunks_ + c];
      }
      for (int64_t g = 0; g < groups; ++g)
        sums_[static_cast<size_t>((b * groups + g) * kTokens + t)] =
            pr.xh_group_sums[token * groups + g];
    }
  }
  int64_t blocks() const {
    return blocks_;
  }
  uint8_t* chunk_bytes(int64_t b, int64_t c) {
    return bytes_.data() + (b * chunks_ + c) * 2 * kChunk * kTokens;
  }
  const uint8_t* high(int64_t b, int64_t c) const {
    return bytes_.data() + (b * chunks_ + c) * 2 * kChunk * kTokens;
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
  std::vector<uint8_t> bytes_;
  std::vector<float> scales_, sums_;
};

void configure_int16_tiles() {
  amx::configure_tiles({16, 16, 16, 16, 16, 16, 8, 8}, {64, 64, 64, 64, 32, 32, 64, 64});
}

/// The 32 rows x 16 tokens of one chunk's dots, 256 high + low, as float.
inline __m512 chunk_dot(const int32_t* high, const int32_t* low, int64_t r) {
  const __m512i h = _mm512_load_si512(high + r * kTokens);
  const __m512i l = _mm512_load_si512(low + r * kTokens);
  // maskz: GCC 12 warns that the unmasked forms read an undefined register.
  return _mm512_maskz_cvtepi32_ps(0xFFFF,
                                  _mm512_add_epi32(_mm512_maskz_slli_epi32(0xFFFF, h, 8), l));
}

}  // namespace

void amx_linear_int16(const AmxInt16Problem& pr, int threads) {
  const PackedLinearWeight& p = *pr.weight;
  QK_CHECK(amx_int16_takes(p), DTypeError, "amx_linear_int16: weights of dtype ",
           dtype_name(p.dtype), " and group size ", p.group_size, " have no AMX kernel");
  const int64_t k_padded = pr.chunks * kChunk;
  const int64_t chunks_per_group =
      p.group_size >= p.in_features ? pr.chunks : p.group_size / kChunk;
  const auto qmin = static_cast<float>(dtype_info(p.dtype).int_min);
  const TokenTiles tokens(pr, threads);
  const int64_t row_blocks = (p.out_features + amx::kBlockRows - 1) / amx::kBlockRows;
#pragma omp parallel num_threads(threads)
  {
    configure_int16_tiles();
    amx::WeightBlock w(p, k_padded);
    alignas(64) int32_t dots[2][amx::kBlockRows * kTokens];  // high, low: [row][token]
    alignas(64) float acc[amx::kBlockRows * kTokens], group_acc[amx::kBlockRows * kTokens];
#pragma omp for schedule(dynamic, 1)
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const int64_t n0 = rb * amx::kBlockRows;
      w.load(n0);
      const int64_t rows = w.rows();
      for (int64_t b = 0; b < tokens.blocks(); ++b) {
        const float* chunk_scales = tokens.chunk_scales(b);
        const float* group_sums = tokens.group_sums(b, p.groups);
        std::fill(acc, acc + amx::kBlockRows * kTokens, 0.0f);
        for (int64_t g = 0, c = 0; g < p.groups; ++g) {
          const int64_t c_end = std::min(pr.chunks, c + chunks_per_group);
          std::fill(group_acc, group_acc + rows * kTokens, 0.0f);
          for (; c < c_end; ++c) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            _tile_loadd(4, w.tile(0, c * kChunk), w.stride());
            _tile_loadd(5, w.tile(1, c * kChunk), w.stride());
            _tile_loadd(6, tokens.high(b, c), 64);
            _tile_loadd(7, tokens.low(b, c), 64);
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 5, 6);
            _tile_dpbuud(2, 4, 7);
            _tile_dpbuud(3, 5, 7);
            _tile_stored(0, dots[0], 64);
            _tile_stored(1, dots[0] + 16 * kTokens, 64);
            _tile_stored(2, dots[1], 64);
            _tile_stored(3, dots[1] + 16 * kTokens, 64);
            const __m512 cs = _mm512_loadu_ps(chunk_scales + c * kTokens);
            for (int64_t r = 0; r < rows; ++r) {
              float* ga = group_acc + r * kTokens;
              _mm512_store_ps(
                  ga, _mm512_fmadd_ps(chunk_dot(dots[0], dots[1], r), cs, _mm512_load_ps(ga)));
            }
          }
          const __m512 sum = _mm512_loadu_ps(group_sums + g * kTokens);
          for (int64_t r = 0; r < rows; ++r) {
            const float s = w.scale(r, g);
            __m512 a = _mm512_load_ps(acc + r * kTokens);
            a = _mm512_fmadd_ps(_mm512_load_ps(group_acc + r * kTokens), _mm512_set1_ps(s), a);
            a = _mm512_fmadd_ps(_mm512_set1_ps(s * qmin + w.offset(r, g)), sum, a);
            _mm512_store_ps(acc + r * kTokens, a);
          }
        }
        const int64_t valid = std::min(kTokens, pr.m - b * kTokens);
        for (int64_t t = 0; t < valid; ++t) {
          float* y = pr.y + (b * kTokens + t) * p.out_features + n0;
          for (int64_t r = 0; r < rows; ++r) y[r] = acc[r * kTokens + t];
        }
      }
    }
    _tile_release();
  }
}

#else

void amx_linear_int16(const AmxInt16Problem&, int) {
  throw ValueError("amx_linear_int16: this build has no AMX kernels (compiler without -mamx-int8)");
}

#endif

}  // namespace quantkit::kernels

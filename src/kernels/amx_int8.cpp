// Dynamic W8A8 / W4A8 through AMX (TDPBUSD on 16 x 64-byte tiles). Compiled with the AMX flags
// (src/CMakeLists.txt); isa.cpp only offers the amx level where the CPU has AMX-INT8 and the OS
// has granted the tile state.
//
// Blocking: 32 weight rows x 32 tokens per step, four int32 accumulator tiles (C[i][j]: rows
// 16i.., tokens 16j..), two weight tiles A (16 rows x kb bytes of unsigned codes) and two
// activation tiles B (kb/4 rows of 16 tokens x 4 bytes: the layout TDPBUSD multiplies by). One
// weight block meets every token block of a panel of 256 tokens, so its codes (8-bit: read in
// place; 4-bit: widened to bytes once per block and panel) stay in L1/L2. kb = 64 bytes of K per
// step, 32 at group size 32: each group's dot products leave the tiles once, to be scaled in float.
#include "amx_int8.h"

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

int64_t amx_min_tokens(const PackedLinearWeight& p) {
  const bool groups_of_32 = p.group_size < p.in_features && p.group_size % 64 != 0;
  return groups_of_32 ? 12 : 8;
}

bool amx_takes(const PackedLinearWeight& p) {
  return (p.dtype == DType::kInt8 || p.dtype == DType::kInt4 || p.dtype == DType::kUInt4) &&
         (p.group_size >= p.in_features || p.group_size % 32 == 0);
}

#if defined(QK_AMX_BUILT)
namespace {

constexpr int64_t kBlock = 32;  // weight rows and tokens per step: two tiles of 16 each

/// K bytes per TDPBUSD step: 64 (a full tile) unless groups are 32 elements long.
int64_t k_step(const PackedLinearWeight& p) {
  return p.group_size >= p.in_features || p.group_size % 64 == 0 ? 64 : 32;
}

// Tiles 0-3: accumulators C[i][j] = tile 2i + j; 4-5: weights A[i]; 6-7: activations B[j].
void configure_int8_tiles(int64_t kb) {
  const auto k = static_cast<uint16_t>(kb);
  const auto b_rows = static_cast<uint8_t>(kb / 4);
  amx::configure_tiles({16, 16, 16, 16, 16, 16, b_rows, b_rows}, {64, 64, 64, 64, k, k, 64, 64});
}

/// The activations as B tiles: token block b (16 tokens, the count padded to whole 32-token
/// steps with zero tokens) holds [k_padded / 4][16 tokens][4 bytes].
struct TokenTiles {
  std::unique_ptr<int8_t[]> data;  // uninitialised storage: token_tiles writes every byte
  int64_t blocks = 0;
  int64_t block_bytes = 0;
  const int8_t* at(int64_t block, int64_t k0) const {
    return data.get() + block * block_bytes + k0 * 16;
  }
};

TokenTiles token_tiles(const AmxInt8Problem& pr, int64_t k_padded, int threads) {
  QK_CHECK(pr.xq_stride >= k_padded && pr.xq_stride < (int64_t{1} << 27), ValueError,
           "amx_linear_int8: activation rows of ", pr.xq_stride, " bytes: the tiles read ",
           k_padded, " and the gather offsets are int32");
  TokenTiles t;
  t.blocks = (pr.m + kBlock - 1) / kBlock * 2;
  t.block_bytes = k_padded * 16;
  t.data.reset(new int8_t[static_cast<size_t>(t.blocks * t.block_bytes)]);
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  // One gather per tile row: the same 4 bytes of K from each of the block's 16 tokens; tokens
  // past m are masked off and read as zero.
#pragma omp parallel for schedule(static) num_threads(threads) if (pr.m * k_padded > 65536)
  for (int64_t b = 0; b < t.blocks; ++b) {
    const int64_t live = std::clamp<int64_t>(pr.m - b * 16, 0, 16);
    int8_t* dst = t.data.get() + b * t.block_bytes;
    if (live == 0) {  // the padding half of the last step
      std::memset(dst, 0, static_cast<size_t>(t.block_bytes));
      continue;
    }
    const auto mask = static_cast<__mmask16>((1u << live) - 1);
    const __m512i offsets =
        _mm512_mullo_epi32(lanes, _mm512_set1_epi32(static_cast<int>(pr.xq_stride)));
    const int8_t* src = pr.xq + b * 16 * pr.xq_stride;
    for (int64_t k = 0; k < k_padded; k += 4, dst += 64) {
      const __m512i v =
          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, offsets, src + k, 1);
      _mm512_storeu_si512(dst, v);
    }
  }
  return t;
}

/// Per group and token (padded to whole steps): qmin * sum xq as int32 and sum xq as float.
struct GroupSums {
  std::vector<int32_t> qmin_times;
  std::vector<float> sums;
  int64_t stride = 0;
};

GroupSums group_sums(const AmxInt8Problem& pr, int64_t tokens_padded, int32_t qmin) {
  GroupSums g;
  const int64_t groups = pr.weight->groups;
  g.stride = tokens_padded;
  g.qmin_times.assign(static_cast<size_t>(groups * tokens_padded), 0);
  g.sums.assign(static_cast<size_t>(groups * tokens_padded), 0.0f);
  for (int64_t token = 0; token < pr.m; ++token) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const float s = pr.xq_group_sums[token * groups + grp];
      g.sums[static_cast<size_t>(grp * tokens_padded + token)] = s;
      g.qmin_times[static_cast<size_t>(grp * tokens_padded + token)] =
          qmin * static_cast<int32_t>(s);
    }
  }
  return g;
}

/// acc[r][t] += s[r] * float(c[r][t] + qmin sum_t) + off[r] * sum_t over a 32 x 32 step (its
/// first 16 tokens only when `halves` is 1).
void add_group(const amx::WeightBlock& w, int64_t g, const int32_t* c, const int32_t* qmin_times,
               const float* sums, bool offsets, int halves, float* acc) {
  for (int64_t r = 0; r < w.rows(); ++r) {
    const __m512 s = _mm512_set1_ps(w.scale(r, g));
    const __m512 off = _mm512_set1_ps(w.offset(r, g));
    for (int h = 0; h < halves; ++h) {
      const __m512i dot = _mm512_add_epi32(_mm512_loadu_si512(c + r * kBlock + 16 * h),
                                           _mm512_loadu_si512(qmin_times + 16 * h));
      // maskz: GCC 12 warns that the unmasked conversion reads an undefined register.
      __m512 v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, dot), s,
                                 _mm512_loadu_ps(acc + r * kBlock + 16 * h));
      if (offsets) v = _mm512_fmadd_ps(off, _mm512_loadu_ps(sums + 16 * h), v);
      _mm512_storeu_ps(acc + r * kBlock + 16 * h, v);
    }
  }
}

}  // namespace

// Tokens in panels whose activation tiles stay in L2 while every weight block passes (256
// tokens of K = 4096 are 1 MiB, half of L2). Against 128: M = 512, 4096^2, +4 % (the weights
// pass through L2 half as often).
constexpr int64_t kPanelTokens = 256;

void amx_linear_int8(const AmxInt8Problem& pr, int threads) {
  const PackedLinearWeight& p = *pr.weight;
  QK_CHECK(amx_takes(p), DTypeError, "amx_linear_int8: weights of dtype ", dtype_name(p.dtype),
           " and group size ", p.group_size, " have no AMX kernel");
  const int64_t kb = k_step(p);
  const int64_t k_padded = (p.in_features + kb - 1) / kb * kb;
  const int64_t steps_per_group = p.group_size >= p.in_features ? k_padded / kb : p.group_size / kb;
  const auto qmin = static_cast<int32_t>(dtype_info(p.dtype).int_min);
  const TokenTiles tokens = token_tiles(pr, k_padded, threads);
  const int64_t tokens_padded = tokens.blocks * 16;
  const GroupSums sums = group_sums(pr, tokens_padded, qmin);
  const int64_t row_blocks = (p.out_features + kBlock - 1) / kBlock;
  const bool widened = dtype_bits(p.dtype) < 8;
#pragma omp parallel num_threads(threads)
  {
    configure_int8_tiles(kb);
    amx::WeightBlock w(p, k_padded, kb, true);
    alignas(64) int32_t c[kBlock * kBlock];
    alignas(64) float acc[kBlock * kBlock];
    for (int64_t panel = 0; panel < pr.m; panel += kPanelTokens) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t rb = 0; rb < row_blocks; ++rb) {
        const int64_t n0 = rb * kBlock;
        w.load(n0);
        amx::BlockPrefetch next(p, widened ? rb + threads : row_blocks, k_padded / kb);
        for (int64_t t0 = panel; t0 < std::min(pr.m, panel + kPanelTokens); t0 += kBlock) {
          std::fill(acc, acc + kBlock * kBlock, 0.0f);
          const int64_t b0 = t0 / 16;
          const bool both = pr.m - t0 > 16;  // else the second token block is padding: skipped
          for (int64_t g = 0, k0 = 0; g < p.groups; ++g) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t step = 0; step < steps_per_group && k0 < k_padded; ++step, k0 += kb) {
              if (t0 == 0) next.step();
              _tile_loadd(4, w.tile(0, k0), w.stride());
              _tile_loadd(5, w.tile(1, k0), w.stride());
              _tile_loadd(6, tokens.at(b0, k0), 64);
              _tile_dpbusd(0, 4, 6);
              _tile_dpbusd(2, 5, 6);
              if (!both) continue;
              _tile_loadd(7, tokens.at(b0 + 1, k0), 64);
              _tile_dpbusd(1, 4, 7);
              _tile_dpbusd(3, 5, 7);
            }
            _tile_stored(0, c, kBlock * 4);
            _tile_stored(1, c + 16, kBlock * 4);
            _tile_stored(2, c + 16 * kBlock, kBlock * 4);
            _tile_stored(3, c + 16 * kBlock + 16, kBlock * 4);
            add_group(w, g, c, sums.qmin_times.data() + g * sums.stride + t0,
                      sums.sums.data() + g * sums.stride + t0, p.has_offsets, both ? 2 : 1, acc);
          }
          const int64_t valid = std::min(kBlock, pr.m - t0);
          for (int64_t t = 0; t < valid; ++t) {
            const float sx = pr.x_scale[t0 + t];
            float* y = pr.y + (t0 + t) * p.out_features + n0;
            for (int64_t r = 0; r < w.rows(); ++r) y[r] = acc[r * kBlock + t] * sx;
          }
        }
      }
    }
    _tile_release();
  }
}

#else

void amx_linear_int8(const AmxInt8Problem&, int) {
  throw ValueError("amx_linear_int8: this build has no AMX kernels (compiler without -mamx-int8)");
}

#endif

}  // namespace quantkit::kernels

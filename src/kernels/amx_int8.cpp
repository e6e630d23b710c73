// Dynamic W8A8 / W4A8 through AMX (TDPBUSD / TDPBSSD on 16 x 64-byte tiles). Compiled with the
// AMX flags (src/CMakeLists.txt); isa.cpp only offers the amx level where the CPU has AMX-INT8
// and the OS has granted the tile state.
//
// Blocking: 32 weight rows x 32 tokens per step, four int32 accumulator tiles (C[i][j]: rows
// 16i.., tokens 16j..), two weight tiles A (16 rows x kb bytes of codes) and two activation tiles
// B (kb/4 rows of 16 tokens x 4 bytes: the layout TDP* multiplies by). One weight block meets
// every token block of a panel of 256 tokens, so its codes (8-bit: unsigned, read in place;
// 4-bit: widened to signed bytes once per block and panel) stay in L1/L2. kb = 64 bytes of K per
// step, 32 at group size 32: each group's dot products leave the tiles once, to be scaled in
// float, four groups to a pass over the accumulators (add_groups). Up to 8 tokens at group size
// 32, the idle half of the token columns takes the next group instead (paired groups): one
// full-K product and one float pass serve two groups.
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

/// Per group and token (padded to whole steps): sum xq as float and, for the unsigned 8-bit codes
/// read in place, qmin * sum xq as int32 (empty when qmin is 0: the widened codes are signed).
struct GroupSums {
  std::vector<int32_t> qmin_times;
  std::vector<float> sums;
  int64_t stride = 0;
};

GroupSums group_sums(const AmxInt8Problem& pr, int64_t tokens_padded, int32_t qmin) {
  GroupSums g;
  const int64_t groups = pr.weight->groups;
  g.stride = tokens_padded;
  if (qmin != 0) g.qmin_times.assign(static_cast<size_t>(groups * tokens_padded), 0);
  g.sums.assign(static_cast<size_t>(groups * tokens_padded), 0.0f);
  for (int64_t token = 0; token < pr.m; ++token) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const float s = pr.xq_group_sums[token * groups + grp];
      g.sums[static_cast<size_t>(grp * tokens_padded + token)] = s;
      if (qmin != 0)
        g.qmin_times[static_cast<size_t>(grp * tokens_padded + token)] =
            qmin * static_cast<int32_t>(s);
    }
  }
  return g;
}

/// Tokens up to which groups of 32 are paired: token columns 0-7 of a 64-byte step hold the
/// first group's 32 bytes of K and columns 8-15 the second's (the other half of each zero), so
/// one TDP over 64 bytes of weights gives both groups' dots side by side, where two TDPs over 32
/// bytes (each as slow as a full one) left half the columns idle; the float pass then scales
/// 16 lanes of two groups at once.
constexpr int64_t kPairedMaxTokens = 8;

/// Token tiles of at most kPairedMaxTokens tokens (columns 8-15 zero) rearranged for paired
/// groups: in each 16-row step, rows 8-15 (the second group's K) move to columns 8-15.
void pair_token_columns(TokenTiles& t, int64_t k_padded) {
  auto* block = reinterpret_cast<uint8_t*>(t.data.get());
  for (int64_t step = 0; step < k_padded / 64; ++step) {
    uint8_t* second = block + step * 16 * 64 + 8 * 64;
    amx::move_to_upper_columns(second, second, 8);
  }
}

/// GroupSums for paired groups: entry [pair][lane], lanes 0-7 the first group's tokens, 8-15 the
/// second's (zero past the last group).
GroupSums paired_group_sums(const GroupSums& g, int64_t groups) {
  GroupSums out;
  const int64_t pairs = (groups + 1) / 2;
  out.stride = 16;
  out.sums.assign(static_cast<size_t>(pairs * 16), 0.0f);
  if (!g.qmin_times.empty()) out.qmin_times.assign(out.sums.size(), 0);
  for (int64_t grp = 0; grp < groups; ++grp) {
    for (int64_t t = 0; t < kPairedMaxTokens; ++t) {
      const auto to = static_cast<size_t>(grp / 2 * 16 + grp % 2 * 8 + t);
      const auto from = static_cast<size_t>(grp * g.stride + t);
      out.sums[to] = g.sums[from];
      if (!g.qmin_times.empty()) out.qmin_times[to] = g.qmin_times[from];
    }
  }
  return out;
}

/// Groups whose int32 dot products wait in L1 before one float pass adds them all: the pass keeps
/// each accumulator row in registers across the groups instead of loading and storing it per
/// group.
constexpr int64_t kGroupsPerPass = 4;

/// acc[r][t] += sum over groups g0 .. g0 + count - 1 of s[r][g] * float(c[g][r][t] +
/// qmin_sum[g][t]) + off[r][g] * sum[g][t], over a 32 x 32 step (its first 16 tokens only when
/// `halves` is 1). c holds the groups' 32 x 32 int32 dot products; kQmin: the codes were the
/// unsigned ones (else signed, no qmin term). kCount > 0 fixes count at compile time so that the
/// group loop unrolls.
/// kPaired: g0 and count count pairs of groups (paired_group_sums), and each lane takes the
/// scale (offset) of its group: the pair's first in lanes 0-7, its second in 8-15.
template <int kCount, bool kQmin, bool kOffsets, bool kPaired>
void add_groups(const amx::WeightBlock& w, int64_t g0, int64_t count, const int32_t* c,
                const GroupSums& gs, int64_t t0, int halves, float* acc) {
  if constexpr (kCount > 0) count = kCount;
  const int64_t at0 = g0 * gs.stride + t0;
  const __m512i pair_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  // Lane values of group slot i (i-th group, or pair, of the pass) from one row's values v. A
  // pair past the last group reads the next row's first value (or the block's zero padding):
  // its lanes multiply dots and sums that are zero.
  auto lanes = [&](const float* v, int64_t i) {
    if constexpr (!kPaired) {
      return _mm512_set1_ps(v[g0 + i]);
    } else {
      const auto* two = reinterpret_cast<const __m128i*>(v + 2 * (g0 + i));
      // maskz: GCC 12 warns that the unmasked permute reads an undefined register.
      return _mm512_maskz_permutexvar_ps(
          0xFFFF, pair_lanes, _mm512_zextps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64(two))));
    }
  };
  for (int64_t r = 0; r < w.rows(); ++r) {
    const float* s = w.row_scales(r);
    const float* off = kOffsets ? w.row_offsets(r) : nullptr;
    for (int h = 0; h < halves; ++h) {
      float* a = acc + r * kBlock + 16 * h;
      const int32_t* cr = c + r * kBlock + 16 * h;
      __m512 v = _mm512_loadu_ps(a);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t at = at0 + i * gs.stride + 16 * h;
        __m512i dot = _mm512_loadu_si512(cr + i * kBlock * kBlock);
        if constexpr (kQmin)
          dot = _mm512_add_epi32(dot, _mm512_loadu_si512(gs.qmin_times.data() + at));
        // maskz: GCC 12 warns that the unmasked conversion reads an undefined register.
        v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, dot), lanes(s, i), v);
        if constexpr (kOffsets)
          v = _mm512_fmadd_ps(lanes(off, i), _mm512_loadu_ps(gs.sums.data() + at), v);
      }
      _mm512_storeu_ps(a, v);
    }
  }
}

template <bool kQmin, bool kOffsets, bool kPaired>
void add_groups_of(const amx::WeightBlock& w, int64_t g0, int64_t count, const int32_t* c,
                   const GroupSums& gs, int64_t t0, int halves, float* acc) {
  if (count == kGroupsPerPass) {
    add_groups<kGroupsPerPass, kQmin, kOffsets, kPaired>(w, g0, count, c, gs, t0, halves, acc);
  } else {
    add_groups<0, kQmin, kOffsets, kPaired>(w, g0, count, c, gs, t0, halves, acc);
  }
}

/// add_groups for the codes' signedness and the weights' offsets.
template <bool kPaired>
void add_groups_for(const amx::WeightBlock& w, int64_t g0, int64_t count, const int32_t* c,
                    const GroupSums& gs, int64_t t0, bool offsets, int halves, float* acc) {
  const bool qmin = !gs.qmin_times.empty();
  if (qmin && offsets) add_groups_of<true, true, kPaired>(w, g0, count, c, gs, t0, halves, acc);
  if (qmin && !offsets) add_groups_of<true, false, kPaired>(w, g0, count, c, gs, t0, halves, acc);
  if (!qmin && offsets) add_groups_of<false, true, kPaired>(w, g0, count, c, gs, t0, halves, acc);
  if (!qmin && !offsets) add_groups_of<false, false, kPaired>(w, g0, count, c, gs, t0, halves, acc);
}

/// add_groups_for, paired groups or not.
void add_groups_any(const amx::WeightBlock& w, int64_t g0, int64_t count, const int32_t* c,
                    const GroupSums& gs, int64_t t0, bool offsets, bool paired, int halves,
                    float* acc) {
  if (paired) {
    add_groups_for<true>(w, g0, count, c, gs, t0, offsets, halves, acc);
  } else {
    add_groups_for<false>(w, g0, count, c, gs, t0, offsets, halves, acc);
  }
}

/// Tile C += tile A . tile B: signed times signed bytes (kSigned) or unsigned times signed. A
/// macro: the intrinsics paste their tile numbers into the instruction text.
#define QK_TILE_DOT(C, A, B) \
  do {                       \
    if constexpr (kSigned) { \
      _tile_dpbssd(C, A, B); \
    } else {                 \
      _tile_dpbusd(C, A, B); \
    }                        \
  } while (0)

/// K steps ahead at which the first pass over a block read in place prefetches its rows.
constexpr int64_t kStepsAhead = 2;

/// Accumulates `steps` K steps from k0 of a 32-row weight block times token blocks b0 (and
/// b0 + 1 when `both`) into tiles 0-3. kSigned: the codes were widened to signed bytes (TDPBSSD);
/// else they are the unsigned codes read in place (TDPBUSD). `next`: set on the block's first
/// pass, when its codes arrive from memory (it prefetches the block after a copied one).
template <bool kSigned>
void group_tiles(amx::WeightBlock& w, const TokenTiles& tokens, int64_t b0, int64_t k0,
                 int64_t k_end, int64_t steps, int64_t kb, bool both, amx::BlockPrefetch* next) {
  // Pointers advance by a step's bytes: w.tile() divides by kb, which the loop cannot afford.
  const uint8_t* a = w.tile(0, k0);
  const int64_t a1 = w.tile(1, k0) - a;
  const int8_t* b = tokens.at(b0, k0);
  const int64_t b1 = tokens.at(b0 + 1, k0) - b;
  const int64_t a_step = w.step_bytes(), b_step = kb * 16;
  // Rows read in place are 32 streams that the hardware prefetcher follows too closely: on the
  // first pass each row's line two steps ahead goes to L1 by hand. Weights streamed from DRAM,
  // 4096^2, 2 threads: W8A8 M = 32 1.10-1.12x; neutral at M = 8, 16 and in cache.
  const bool ahead = next != nullptr && w.in_place();
  for (int64_t step = 0; step < steps && k0 < k_end; ++step, k0 += kb) {
    // A copied block not widened yet is widened on its first pass, two steps ahead of the loads.
    w.widen_until(k0 + 3 * kb);
    if (next) next->step();
    if (ahead && k0 + kStepsAhead * kb < k_end) {
      const auto* line = reinterpret_cast<const char*>(a + kStepsAhead * a_step);
      for (int64_t r = 0; r < amx::kBlockRows; ++r) prefetch_l1(line + r * w.stride());
    }
    // Each product issues as soon as its two tiles are in: A0 B0, then B1, then A1 (in cache,
    // group size 32: 1.10-1.15x against all four loads first).
    _tile_loadd(4, a, w.stride());
    _tile_loadd(6, b, 64);
    QK_TILE_DOT(0, 4, 6);
    if (both) {
      _tile_loadd(7, b + b1, 64);
      QK_TILE_DOT(1, 4, 7);
    }
    _tile_loadd(5, a + a1, w.stride());
    QK_TILE_DOT(2, 5, 6);
    if (both) QK_TILE_DOT(3, 5, 7);
    a += a_step;
    b += b_step;
  }
}
#undef QK_TILE_DOT

}  // namespace

// Tokens in panels whose activation tiles stay in L2 while every weight block passes (256
// tokens of K = 4096 are 1 MiB, half of L2). Against 128: M = 512, 4096^2, +4 % (the weights
// pass through L2 half as often).
constexpr int64_t kPanelTokens = 256;

void amx_linear_int8(const AmxInt8Problem& pr, int threads) {
  const PackedLinearWeight& p = *pr.weight;
  QK_CHECK(amx_takes(p), DTypeError, "amx_linear_int8: weights of dtype ", dtype_name(p.dtype),
           " and group size ", p.group_size, " have no AMX kernel");
  const bool paired = k_step(p) == 32 && pr.m <= kPairedMaxTokens;
  const int64_t kb = paired ? 64 : k_step(p);
  const int64_t k_padded = (p.in_features + kb - 1) / kb * kb;
  // Paired, a step of 64 bytes holds a pair of groups: "groups" below are pairs.
  const int64_t steps_per_group = paired                          ? 1
                                  : p.group_size >= p.in_features ? k_padded / kb
                                                                  : p.group_size / kb;
  const int64_t group_steps = paired ? (p.groups + 1) / 2 : p.groups;
  // 4-bit codes are widened to signed bytes on the way into the block (q = u + qmin), which
  // drops the qmin * sum x term; 8-bit rows are read in place as the unsigned u.
  const bool widened = dtype_bits(p.dtype) < 8;
  const auto qmin = static_cast<int32_t>(dtype_info(p.dtype).int_min);
  TokenTiles tokens = token_tiles(pr, k_padded, threads);
  if (paired) pair_token_columns(tokens, k_padded);
  const int64_t tokens_padded = tokens.blocks * 16;
  GroupSums sums = group_sums(pr, tokens_padded, widened ? 0 : qmin);
  if (paired) sums = paired_group_sums(sums, p.groups);
  const int64_t row_blocks = (p.out_features + kBlock - 1) / kBlock;
#pragma omp parallel num_threads(threads)
  {
    configure_int8_tiles(kb);
    amx::WeightBlock w(p, k_padded, kb, true, widened ? static_cast<int8_t>(qmin) : int8_t{0});
    alignas(64) int32_t c[kGroupsPerPass * kBlock * kBlock];
    alignas(64) float acc[kBlock * kBlock];
    for (int64_t panel = 0; panel < pr.m; panel += kPanelTokens) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t rb = 0; rb < row_blocks; ++rb) {
        const int64_t n0 = rb * kBlock;
        // Widening beside the tile loads (group_tiles) pays where the steps are whole tiles:
        // 4-bit per-channel, 4096^2, 2 threads, weights from DRAM: M = 8 1.16x, M = 32 1.10x; in
        // cache M = 8 1.12x. At group size 32 the float passes already keep the vector units
        // busy (0.96x in cache): widened all at once.
        if (kb == 32) {
          w.load(n0);
        } else {
          w.begin(n0);
        }
        amx::BlockPrefetch next(p, w.in_place() ? row_blocks : rb + threads, k_padded / kb);
        for (int64_t t0 = panel; t0 < std::min(pr.m, panel + kPanelTokens); t0 += kBlock) {
          std::fill(acc, acc + kBlock * kBlock, 0.0f);
          const int64_t b0 = t0 / 16;
          const bool both = pr.m - t0 > 16;  // else the second token block is padding: skipped
          for (int64_t g = 0; g < group_steps; ++g) {
            const int64_t slot = g % kGroupsPerPass;
            // Tiles 1 and 3 (tokens 16-31) only where those tokens exist: a stored tile is 16
            // rows of 64 bytes, as slow as a product.
            _tile_zero(0);
            _tile_zero(2);
            if (both) {
              _tile_zero(1);
              _tile_zero(3);
            }
            amx::BlockPrefetch* pf = t0 == 0 ? &next : nullptr;
            if (widened) {
              group_tiles<true>(w, tokens, b0, g * steps_per_group * kb, k_padded, steps_per_group,
                                kb, both, pf);
            } else {
              group_tiles<false>(w, tokens, b0, g * steps_per_group * kb, k_padded, steps_per_group,
                                 kb, both, pf);
            }
            int32_t* cg = c + slot * kBlock * kBlock;
            _tile_stored(0, cg, kBlock * 4);
            _tile_stored(2, cg + 16 * kBlock, kBlock * 4);
            if (both) {
              _tile_stored(1, cg + 16, kBlock * 4);
              _tile_stored(3, cg + 16 * kBlock + 16, kBlock * 4);
            }
            if (slot == kGroupsPerPass - 1 || g == group_steps - 1)
              add_groups_any(w, g - slot, slot + 1, c, sums, t0, p.has_offsets, paired,
                             both ? 2 : 1, acc);
          }
          const int64_t valid = std::min(kBlock, pr.m - t0);
          for (int64_t t = 0; t < valid; ++t) {
            const float sx = pr.x_scale[t0 + t];
            float* y = pr.y + (t0 + t) * p.out_features + n0;
            for (int64_t r = 0; r < w.rows(); ++r) {
              const float* a = acc + r * kBlock;
              y[r] = (paired ? a[t] + a[8 + t] : a[t]) * sx;
            }
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

// Int16 activations (GemvInt16Args, the weight-only GEMV's default): the specification
// (dot_chunk_i16 and the reference loop) and the dispatch over the kernels of
// gemv_int16_rows.h (any number of tokens), gemv_int16_decode_avx2.h (one token),
// gemv_int16_tiles_avx2.h (4-bit channel tiles), gemv_int16_avx512.h (one token, and 4-bit
// tokens and tiles) and gemv_int16_pair_tiles_avx512.h (4-bit tiles widened to int16, many
// tokens).
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int16_avx512.h"
#include "gemv_int16_decode_avx2.h"
#include "gemv_int16_pair_tiles_avx512.h"
#include "gemv_int16_tiles_avx2.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

/// Integer dot of chunk c of unsigned 8-, 4- or 2-bit codes with its 32 int16 activations (xh is
/// the token's whole row, in int16_activation_slot order): the specification of the int16 AVX2
/// kernels.
template <int Bits>
inline int64_t dot_chunk_i16(const int16_t* xh, Int16Layout layout, const uint8_t* row, int64_t c) {
  int64_t sum = 0;
  for (int j = 0; j < 32; ++j) {
    int32_t u = 0;
    if constexpr (Bits == 8) u = row[c * 32 + j];
    if constexpr (Bits == 4) u = (row[c * 16 + j % 16] >> (j < 16 ? 0 : 4)) & 0x0F;
    if constexpr (Bits == 2) u = (row[c * 8 + j % 8] >> (2 * (j / 8))) & 3;
    sum += static_cast<int64_t>(xh[int16_activation_slot(layout, c, j)]) * u;
  }
  return sum;
}

#if defined(__AVX2__)

template <int Bits, bool PerChannel>
void gemv_int16_avx2(const GemvInt16Args& a) {
  int64_t m = 0;
  if constexpr (Bits == 2) {
    for (; m + 4 <= a.m; m += 4) gemv_int16_w2_rows_avx2<4, PerChannel>(a, m);
    if (a.m - m == 3) gemv_int16_w2_rows_avx2<3, PerChannel>(a, m);
    if (a.m - m == 2) gemv_int16_w2_rows_avx2<2, PerChannel>(a, m);
    if (a.m - m == 1) {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
      if (a.layout == Int16Layout{8, 8, true}) {
        gemv_int16_u2_single_token_vnni512(a, m);
        return;
      }
#endif
      if (a.layout == Int16Layout{4, 8, true}) {
        gemv_int16_u2_single_token_split_avx2(a, m);
      } else {
        gemv_int16_w2_rows_avx2<1, PerChannel>(a, m);
      }
    }
  } else {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
    const bool single_token_shape =
        a.w.groups == 1 || int16_single_token_shape(a.w.groups, a.w.group_size);
    // Below kU4TilesMinTokens tokens a single-token shape goes one token at a time: the tiles'
    // regrouping of the weight per call outweighs reading it once (Emerald Rapids, 4096^2 over
    // 1 GiB, 2 threads, weight GB/s per call, tiles -> token by token: M = 2 g32 / g128 / per
    // channel 9.6 / 10.8 / 12.3 -> 11.4 / 12.4 / 15.8, M = 3 8.3 / 10.0 / 10.3 -> 10.8 / 11.5 /
    // 11.5; in cache g32 M = 2 77-83 -> 98-107 GFLOPS, the others level; from 4 tokens the tiles
    // win, 145-213 against 67-142 GFLOPS at M = 4).
    constexpr int64_t kU4TilesMinTokens = 4;
    if (Bits == 4 && a.layout == Int16Layout{4, 16, true} && single_token_shape &&
        a.m < kU4TilesMinTokens) {
      for (; m < a.m; ++m) gemv_int16_u4_single_token_vnni512(a, m);
      return;
    }
#if defined(__AVX512VNNI__)
    if (Bits == 4 && a.passes.tokens == kPairTileTokens) {
      gemv_int16_u4_pair_tiled_vnni512(a);
      return;
    }
#endif
    if (Bits == 4 && a.layout == Int16Layout{4, 16, true}) {
#if defined(__AVX512VNNI__)
      if (a.m >= 2) {
        gemv_int16_u4_tiled_vnni512(a);
        return;
      }
#endif
      for (; m < a.m; ++m) gemv_int16_u4_tokens_vnni512<1>(a, m);
      return;
    }
#else
    if (Bits == 4 && a.layout == Int16Layout{4, 16, true}) {
      gemv_int16_u4_tiled_avx2(a);
      return;
    }
#endif
    for (; m + 4 <= a.m; m += 4) gemv_int16_rows_avx2<Bits, 4, PerChannel>(a, m);
    if (a.m - m == 3) gemv_int16_rows_avx2<Bits, 3, PerChannel>(a, m);
    if (a.m - m == 2) gemv_int16_rows_avx2<Bits, 2, PerChannel>(a, m);
    if (a.m - m == 1) {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
      if (Bits == 8 && decode_tuning.wide_w8a16_single_token && single_token_shape) {
        gemv_int16_u8_single_token_vnni512(a, m);
        return;
      }
#endif
      // 4-bit single-token steps read layout {2, 8}, which only a one-token call has (the last
      // token of several comes in the plain layout). Per-channel 8-bit rows stay on the row
      // kernel: 2.8 against 3.8 cycles per 32 bytes of codes in L2, level from DRAM (Zen 3).
      const bool single_token =
          Bits == 8 ? int16_single_token_shape(a.w.groups, a.w.group_size)
                    : a.layout == Int16Layout{2, 8} &&
                          (a.w.groups == 1 || int16_single_token_shape(a.w.groups, a.w.group_size));
      if (single_token) {
        gemv_int16_single_token_avx2<Bits>(a, m);
      } else {
        gemv_int16_rows_avx2<Bits, 1, PerChannel>(a, m);
      }
    }
  }
}
#endif

/// W . x with x given as int16 chunks (GemvInt16Args): per group s_g * sum_c scale_c (xh . u)_c,
/// plus what qmin and the offsets add through the group sums of the rounded x.
template <int Bits>
void gemv_int16(const GemvInt16Args& a) {
#if defined(__AVX2__)
  a.w.groups == 1 ? gemv_int16_avx2<Bits, true>(a) : gemv_int16_avx2<Bits, false>(a);
  return;
#endif
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? a.chunks : a.w.group_size / kChunk;
  for (int64_t r = 0; r < a.m; ++r) {
    const int16_t* xh = a.xh + r * a.xh_stride;
    const float* sx = a.chunk_scales + r * a.chunks;
    const float* sums = a.xh_group_sums + r * a.w.groups;
    for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
      const uint8_t* row = a.w.codes + n * a.w.row_bytes;
      const float* s = float32_row_params(a.w, n).s;
      double out = 0.0;
      for (int64_t c0 = 0, g = 0; c0 < a.chunks; c0 += chunks_per_group, ++g) {
        double group = 0.0;
        for (int64_t c = c0; c < std::min(a.chunks, c0 + chunks_per_group); ++c)
          group += static_cast<double>(sx[c]) * dot_chunk_i16<Bits>(xh, a.layout, row, c);
        const double off = a.w.offsets != nullptr ? a.w.offsets[n * a.w.groups + g] : 0.0;
        out += s[g] * group + (a.w.code_bias * static_cast<double>(s[g]) + off) * sums[g];
      }
      a.w.y[r * a.w.y_stride + n] = static_cast<float>(out);
    }
  }
}

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

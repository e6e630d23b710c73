// W4A8 for many tokens (AVX2): output channels in the vector lanes, int16 sums over a chunk.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "gemv.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX2__)
/// Token count from which linear_dynamic_int8 on 4-bit weights uses the tiles: at 4 tokens they
/// already match the per-row kernel (group 32) or beat it by 1.2-1.3x (group 128).
constexpr int64_t kW4TileMinTokens = 4;

/// Eight rows of 4-bit codes regrouped so that one 32-byte load feeds eight output channels.
/// A packed 4-bit chunk is 16 bytes (byte j: element j in the low nibble, element 16 + j in the
/// high one), so its dword q carries elements 4q..4q+3 and 16+4q..16+4q+3. quads[c][q][ch] is
/// dword q of chunk c of row ch: masking the low nibbles gives the codes of 4 consecutive
/// elements for all 8 channels, the shifted high nibbles the 4 elements 16 further on. Group
/// scales and biases (qmin s + off, what the signed codes and offsets add per unit of sum x)
/// are stored per group as 8 lanes. Rows past N are zero: they add nothing and are not stored.
struct W4ChannelTile {
  std::vector<uint32_t> quads;  // [chunks][4][8]
  std::vector<float> scales;    // [groups][8]
  std::vector<float> biases;    // [groups][8]
};

inline void fill_w4_channel_tile(const GemvWeights& w, int64_t n0, W4ChannelTile& t) {
  const int64_t chunks = (w.k + 31) / 32;
  const int64_t rows = std::min<int64_t>(8, w.n_end - n0);
  t.quads.resize(static_cast<size_t>(chunks * 32));
  t.scales.assign(static_cast<size_t>(w.groups * 8), 0.0f);
  t.biases.assign(static_cast<size_t>(w.groups * 8), 0.0f);
  static const uint8_t kZeroChunk[16] = {};
  const uint8_t* row[8];
  for (int64_t ch = 0; ch < 8; ++ch) {
    row[ch] = ch < rows ? w.codes + (n0 + ch) * w.row_bytes : kZeroChunk;
    if (ch >= rows) continue;
    for (int64_t g = 0; g < w.groups; ++g) {
      const float s = w.scales[(n0 + ch) * w.groups + g];
      const float off = w.offsets != nullptr ? w.offsets[(n0 + ch) * w.groups + g] : 0.0f;
      t.scales[static_cast<size_t>(g * 8 + ch)] = s;
      t.biases[static_cast<size_t>(g * 8 + ch)] = w.code_bias * s + off;
    }
  }
  for (int64_t c = 0; c < chunks; ++c) {
    // Two 4x4 dword transposes: rows 0-3 and 4-7 of the chunk, then lane halves joined.
    __m128i v[8];
    for (int ch = 0; ch < 8; ++ch) {
      const uint8_t* p = ch < rows ? row[ch] + c * 16 : kZeroChunk;
      v[ch] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    }
    __m128i q[2][4];
    for (int half = 0; half < 2; ++half) {
      const __m128i* r = v + 4 * half;
      const __m128i a = _mm_unpacklo_epi32(r[0], r[1]), b = _mm_unpackhi_epi32(r[0], r[1]);
      const __m128i cc = _mm_unpacklo_epi32(r[2], r[3]), d = _mm_unpackhi_epi32(r[2], r[3]);
      q[half][0] = _mm_unpacklo_epi64(a, cc);
      q[half][1] = _mm_unpackhi_epi64(a, cc);
      q[half][2] = _mm_unpacklo_epi64(b, d);
      q[half][3] = _mm_unpackhi_epi64(b, d);
    }
    for (int i = 0; i < 4; ++i) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(t.quads.data() + (c * 4 + i) * 8),
                          _mm256_set_m128i(q[1][i], q[0][i]));
    }
  }
}

inline __m256i broadcast_quad(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

/// The int16 sums of one chunk for Rows tokens: 8 maddubs of 4 elements x 8 channels each
/// (every lane <= 2 * 15 * 127, eight of them below 32768).
template <int Rows>
inline void w4a8_chunk_sums(const uint32_t* quads, const int8_t* const* xq, int64_t c,
                            __m256i* sum16) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int r = 0; r < Rows; ++r) sum16[r] = _mm256_setzero_si256();
  for (int q = 0; q < 4; ++q) {
    const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quads + q * 8));
    const __m256i lo = _mm256_and_si256(codes, low4);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low4);
    for (int r = 0; r < Rows; ++r) {
      const int8_t* x = xq[r] + c * 32 + 4 * q;
      sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(lo, broadcast_quad(x)));
      sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(hi, broadcast_quad(x + 16)));
      // Keeps GCC from reassociating the sums into a tree of 8 live products per token,
      // which spilled them all.
      asm("" : "+x"(sum16[r]));
    }
  }
}

/// y[r0..r0+Rows, n0..n0+8) from a tile: per chunk and token the int16 sums (above) become int32
/// per channel through one madd; per group, floats times the 8 group scales, plus the biases
/// times the token's group sum of xq. Against per-row dot products this needs no horizontal
/// reduction and no float conversion per chunk: 9 multiply-port ops per 256 MACs instead of 16
/// plus 16. With one chunk per group (ChunkGroups) the float totals stay in registers; with
/// longer groups the int32 dots take those registers and the totals, touched once per group,
/// live in memory.
template <int Rows, bool ChunkGroups>
void w4a8_channel_tile_tokens(const GemvInt8Args& a, const W4ChannelTile& t, int64_t r0,
                              int64_t n0) {
  const int64_t chunks = (a.w.k + 31) / 32;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / 32;
  const __m256i ones16 = _mm256_set1_epi16(1);
  const int8_t* xq[Rows];
  const float* xsums[Rows];
  for (int r = 0; r < Rows; ++r) {
    xq[r] = a.xq + (r0 + r) * a.xq_stride;
    xsums[r] = a.xq_group_sums + (r0 + r) * a.w.groups;
  }
  alignas(32) float out[Rows][8] = {};
  __m256i sum16[Rows];
  auto add_group = [&](int64_t g, const __m256i* dot, auto&& update) {
    const __m256 scale = _mm256_loadu_ps(t.scales.data() + g * 8);
    const __m256 bias = _mm256_loadu_ps(t.biases.data() + g * 8);
    for (int r = 0; r < Rows; ++r) {
      update(r, [&](__m256 v) {
        v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r]), scale, v);
        return _mm256_fmadd_ps(bias, _mm256_broadcast_ss(xsums[r] + g), v);
      });
    }
  };
  if constexpr (ChunkGroups) {
    __m256 total[Rows];
    for (auto& v : total) v = _mm256_setzero_ps();
    for (int64_t c = 0; c < chunks; ++c) {
      w4a8_chunk_sums<Rows>(t.quads.data() + c * 32, xq, c, sum16);
      __m256i dot[Rows];
      for (int r = 0; r < Rows; ++r) dot[r] = _mm256_madd_epi16(sum16[r], ones16);
      add_group(c, dot, [&](int r, auto&& f) { total[r] = f(total[r]); });
    }
    for (int r = 0; r < Rows; ++r) _mm256_store_ps(out[r], total[r]);
  } else {
    for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
      __m256i dot[Rows];
      for (auto& v : dot) v = _mm256_setzero_si256();
      for (int64_t c = c0; c < std::min(chunks, c0 + chunks_per_group); ++c) {
        w4a8_chunk_sums<Rows>(t.quads.data() + c * 32, xq, c, sum16);
        for (int r = 0; r < Rows; ++r)
          dot[r] = _mm256_add_epi32(dot[r], _mm256_madd_epi16(sum16[r], ones16));
      }
      add_group(g, dot,
                [&](int r, auto&& f) { _mm256_store_ps(out[r], f(_mm256_load_ps(out[r]))); });
    }
  }
  const int64_t valid = std::min<int64_t>(8, a.w.n_end - n0);
  for (int r = 0; r < Rows; ++r) {
    const float sx = a.x_scale[r0 + r];
    float* y = a.w.y + (r0 + r) * a.w.y_stride + n0;
    for (int64_t i = 0; i < valid; ++i) y[i] = out[r][i] * sx;
  }
}

template <bool ChunkGroups>
void w4a8_channel_tile(const GemvInt8Args& a, const W4ChannelTile& t, int64_t n0) {
  int64_t r = 0;
  for (; r + 4 <= a.m; r += 4) w4a8_channel_tile_tokens<4, ChunkGroups>(a, t, r, n0);
  if (a.m - r == 3) w4a8_channel_tile_tokens<3, ChunkGroups>(a, t, r, n0);
  if (a.m - r == 2) w4a8_channel_tile_tokens<2, ChunkGroups>(a, t, r, n0);
  if (a.m - r == 1) w4a8_channel_tile_tokens<1, ChunkGroups>(a, t, r, n0);
}

/// The W4A8 slice through channel tiles: each 8 rows regrouped once, then every token.
inline void gemv_int8_w4_tiled_avx2(const GemvInt8Args& a) {
  thread_local W4ChannelTile tile;
  const bool chunk_groups = a.w.group_size == 32 && a.w.k > 32;
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += 8) {
    fill_w4_channel_tile(a.w, n0, tile);
    chunk_groups ? w4a8_channel_tile<true>(a, tile, n0) : w4a8_channel_tile<false>(a, tile, n0);
  }
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

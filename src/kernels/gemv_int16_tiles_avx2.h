// The AVX2 kernel for 4-bit codes and several tokens on int16 activations: 8-channel tiles
// (gemv_int8_tiles.h) on split-byte activations, output channels in the vector lanes.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int16_rows.h"
#include "gemv_int8_tiles.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX2__)
/// 4-bit codes of an 8-channel tile (fill_channel_tile8) for Rows tokens on split-byte
/// activations (layout {4, 16, split}, as the AVX-512 tiles read them): per chunk and token,
/// vpmaddubsw meets the nibbles with the broadcast high bytes (codes unsigned, |pair| <= 2 * 15 *
/// 128: the chunk's eight sum to <= 30720 in int16) and the low bytes with the nibbles (low bytes
/// unsigned, codes as signed bytes: pairs <= 2 * 255 * 15, four at a time <= 30600); vpmaddwd
/// takes them to int32 as 256 high + low. The float total takes the chunk's dots times the
/// group's 8 scales times the token's chunk scale, and the bias (qmin and the offsets) per group
/// through the token's group sum of the rounded x. Against gemv_int16_rows_avx2 (a chunk's codes
/// widened once, then per token two vpmaddwd, a convert, a scale and an FMA for 32 products, and
/// a horizontal sum per row and token) the convert, scale and FMA serve 8 channels at once, and
/// the tile stays in L1 for every token where the row kernel streams the weight once per 4.
/// Zen 3, 1 thread, 256 x 4096 in L2, cycles per token and 32 weights, rows -> tiles: g32 M = 8
/// / 32 2.6-3.7 -> 2.6-3.6 / 2.9-3.9 -> 2.1-3.3 (1.0-1.3x), g128 and per channel M = 8 / 32
/// 1.2-1.4x. 4096^2 g32, 2 threads, GFLOPS: M = 8 / 32 / 128 123-131 -> 123-129 / 130-134 ->
/// 145-147 / 111-120 -> 137-143, and against dequantized tiles + sgemm at 160 / 256 / 512:
/// 100-106 / 119-125 / 135-147 -> 142-148 / 135-143 / 140-145.
template <int Rows>
void u4_tile_tokens_i16_avx2(const GemvInt16Args& a, const ChannelTile& t, int64_t r0, int64_t n0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  // Token r's rows at a stride from token 0's: one pointer each instead of Rows, which GCC kept
  // on the stack.
  const auto* xb = reinterpret_cast<const uint8_t*>(a.xh + r0 * a.xh_stride);
  const int64_t x_stride = a.xh_stride * 2;
  const float* sx = a.chunk_scales + r0 * chunks;
  const float* xsums = a.xh_group_sums + r0 * a.w.groups;
  auto quad = [](const uint8_t* p) { return Lanes256::quad(reinterpret_cast<const int8_t*>(p)); };
  const __m256i ones = _mm256_set1_epi16(1), high_weight = _mm256_set1_epi16(256);
  __m256 total[Rows];
  for (auto& v : total) v = _mm256_setzero_ps();
  for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
    const __m256 scale = _mm256_loadu_ps(t.scales.data() + g * 8);
    for (int64_t c = c0; c < std::min(chunks, c0 + chunks_per_group); ++c) {
      const uint32_t* quads = t.quads + c * 32;
      // Byte offset of chunk c's first run in a token's row: four chunks per 256 bytes.
      const int64_t at = (c / 4) * 256 + (c % 4) * 16;
      // With VNNI high_sum is int32 too: each vpdpbusd takes 4 nibbles times 4 high bytes, or 4
      // low bytes times 4 nibbles (small enough to pass as signed), straight into int32 lanes,
      // where maddubs needed int16 sums, their adds and a vpmaddwd (avx2_vnni, 4096^2 g32, 2
      // threads, GFLOPS against avx2 in the same binary: M = 8 / 32 / 128 131 / 149 / 135 -> 162
      // / 193 / 175).
      __m256i dot[Rows], high_sum[Rows];
      for (auto& d : dot) d = _mm256_setzero_si256();
      for (auto& h : high_sum) h = _mm256_setzero_si256();
      for (int half = 0; half < 2; ++half) {
        const __m256i c0v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quads + 16 * half));
        const __m256i c1v =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(quads + 16 * half + 8));
        const __m256i lo0 = Lanes256::low_nibbles(c0v), hi0 = Lanes256::high_nibbles(c0v);
        const __m256i lo1 = Lanes256::low_nibbles(c1v), hi1 = Lanes256::high_nibbles(c1v);
#pragma GCC unroll 8
        for (int r = 0; r < Rows; ++r) {
          const uint8_t* x = xb + r * x_stride + at + 8 * half;
          if constexpr (kHaveVnni) {
            high_sum[r] = dot_u8_s8(high_sum[r], lo0, quad(x));
            dot[r] = dot_u8_s8(dot[r], quad(x + 64), lo0);
            high_sum[r] = dot_u8_s8(high_sum[r], hi0, quad(x + 128));
            dot[r] = dot_u8_s8(dot[r], quad(x + 192), hi0);
            high_sum[r] = dot_u8_s8(high_sum[r], lo1, quad(x + 4));
            dot[r] = dot_u8_s8(dot[r], quad(x + 68), lo1);
            high_sum[r] = dot_u8_s8(high_sum[r], hi1, quad(x + 132));
            dot[r] = dot_u8_s8(dot[r], quad(x + 196), hi1);
            continue;
          }
          // Chained sums, held apart by the barrier: GCC otherwise interleaves the products of
          // all the tokens and spills them.
          __m256i high = _mm256_maddubs_epi16(lo0, quad(x));
          __m256i low = _mm256_maddubs_epi16(quad(x + 64), lo0);
          high = _mm256_add_epi16(high, _mm256_maddubs_epi16(hi0, quad(x + 128)));
          low = _mm256_add_epi16(low, _mm256_maddubs_epi16(quad(x + 192), hi0));
          high = _mm256_add_epi16(high, _mm256_maddubs_epi16(lo1, quad(x + 4)));
          low = _mm256_add_epi16(low, _mm256_maddubs_epi16(quad(x + 68), lo1));
          high = _mm256_add_epi16(high, _mm256_maddubs_epi16(hi1, quad(x + 132)));
          low = _mm256_add_epi16(low, _mm256_maddubs_epi16(quad(x + 196), hi1));
          asm("" : "+x"(high), "+x"(low));
          high_sum[r] = _mm256_add_epi16(high_sum[r], high);
          dot[r] = _mm256_add_epi32(dot[r], _mm256_madd_epi16(low, ones));
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        dot[r] = _mm256_add_epi32(dot[r], kHaveVnni ? _mm256_slli_epi32(high_sum[r], 8)
                                                    : _mm256_madd_epi16(high_sum[r], high_weight));
        const __m256 chunk_scale = _mm256_mul_ps(scale, _mm256_broadcast_ss(sx + r * chunks + c));
        total[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r]), chunk_scale, total[r]);
      }
    }
    const __m256 bias =  // qmin s + off, exact as the product is
        _mm256_fmadd_ps(_mm256_set1_ps(a.w.code_bias), scale,
                        _mm256_loadu_ps(t.offsets.data() + g * 8));
    for (int r = 0; r < Rows; ++r)
      total[r] = _mm256_fmadd_ps(bias, _mm256_broadcast_ss(xsums + r * a.w.groups + g), total[r]);
  }
  const int64_t live = std::min<int64_t>(8, a.w.n_end - n0);
  for (int r = 0; r < Rows; ++r) {
    float* y = a.w.y + (r0 + r) * a.w.y_stride + n0;
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, total[r]);
    std::copy_n(lanes, live, y);
  }
}

/// The slice through 8-channel tiles of 4-bit codes (filled from the rows once per slice and
/// tile), 4 tokens a pass (2 a pass measured 0.9x at 32 tokens).
inline void gemv_int16_u4_tiled_avx2(const GemvInt16Args& a) {
  thread_local ChannelTile tile;
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += 8) {
    fill_channel_tile8<4>(a.w, n0, tile);
    int64_t r = 0;
    for (; r + 4 <= a.m; r += 4) u4_tile_tokens_i16_avx2<4>(a, tile, r, n0);
    if (a.m - r == 3) u4_tile_tokens_i16_avx2<3>(a, tile, r, n0);
    if (a.m - r == 2) u4_tile_tokens_i16_avx2<2>(a, tile, r, n0);
    if (a.m - r == 1) u4_tile_tokens_i16_avx2<1>(a, tile, r, n0);
  }
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

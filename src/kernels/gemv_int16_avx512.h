// The AVX-512 kernels on int16 activations: single tokens on split-byte activations through
// vpdpbusd (4- and 2-bit) or vpdpwssd (8-bit), and 4-bit codes for several tokens, in rows or in
// 16-channel tiles (VNNI).
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int16_rows.h"
#include "gemv_int8_tiles.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX512BW__) && defined(__AVX512DQ__)
/// y[token, n] from the two alternating totals of an AVX-512 single-token kernel.
inline void store_totals_avx512(const SingleTokenScales& token, int64_t n, __m512 total,
                                __m512 spare) {
  const __m512 sum = _mm512_add_ps(total, spare);
  token.store(n, _mm256_add_ps(_mm512_castps512_ps256(sum), _mm512_extractf32x8_ps(sum, 1)));
}

/// Int32 dots of four chunks of 4-bit codes (lo: their low nibbles, hi: their high ones) with
/// split-byte activations at x: the high bytes of lo's partners at x, their low bytes at x + 64,
/// then hi's at x + 128 and x + 192 (Int16Layout {4, 16, split}).
inline __m512i split_dot_u4(__m512i lo, __m512i hi, const int8_t* x) {
  __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(x));
  d = _mm512_slli_epi32(_mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512(x + 128)), 8);
  d = _mm512_dpbusd_epi32(d, _mm512_loadu_si512(x + 64), lo);
  return _mm512_dpbusd_epi32(d, _mm512_loadu_si512(x + 192), hi);
}

/// One step's int32 dots as floats and the scales of their lanes.
struct ScaledDot {
  __m512 dot, scale;
};

/// The row loop of the single-token split-byte kernels: per row, fold the scales, then one
/// step_dot(codes, x, folded scales) per Step chunks into two alternating totals. step_dot
/// returns its values rather than adding into the totals, which kept them in registers (a
/// lambda updating captured totals ran the 2-bit kernel at 0.9x under GCC 12).
template <int Bits, int Step, class StepDot>
void single_token_split_rows(const GemvInt16Args& a, int64_t r0, StepDot step_dot) {
  SingleTokenScales token(a, r0);
  const auto* xb = reinterpret_cast<const int8_t*>(token.xh());
  const float* cs = token.folded();  // zeros past the last chunk: a partial last step
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    token.fold_row(n);
    __m512 total = _mm512_setzero_ps(), spare = _mm512_setzero_ps();
    // Rows are padded to 64 bytes and activations to whole steps (zeros): a partial last step
    // reads inside both.
    auto step = [&](int64_t c) {
      const ScaledDot p = step_dot(row + c * Bits * 4, xb + c * 64, cs + c);
      total = _mm512_fmadd_ps(p.dot, p.scale, total);
      std::swap(total, spare);
    };
    for_each_step_by_line<Bits, Step>(row, a.chunks, step);
    store_totals_avx512(token, n, total, spare);
  }
}

/// One token with 4-bit codes and split-byte activations (layout {4, 16, split}), four chunks
/// per 512-bit step: 64 bytes of codes give 64 low nibbles (chunk c + q's elements 0..15 in
/// bytes 16q..16q+15) and 64 high ones (elements 16..31); vpdpbusd meets them with the high
/// bytes of the activations, the sum is shifted left 8, and two more meet the low bytes with the
/// nibbles (unsigned low bytes times codes as signed bytes, 0..15). Int32 lanes 4q..4q+3 belong
/// to chunk c + q, each quarter times its folded scale. Per four chunks 10 ops (the high nibbles
/// by one GFNI transform), where the int16 kernel on {2, 16} it replaced took 16: 1.12x in L1,
/// 1.03-1.05x from DRAM on 1 thread (2 threads: within noise). (The transform instead of a
/// shift and a mask: 1 thread, 4096^2 in cache, per channel 91 -> 93 GFLOPS, group 32 level.)
inline void gemv_int16_u4_single_token_vnni512(const GemvInt16Args& a, int64_t r0) {
  // Constants made inside the step (hoisted by the compiler): captured, they travelled on the
  // stack and were reloaded every step.
  single_token_split_rows<4, 4>(a, r0, [](const uint8_t* codes, const int8_t* x, const float* s) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    const __m512i quarters = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512i b = _mm512_loadu_si512(codes);
    // One load: GCC folded it into both the mask and the shift, and the loads bound this loop
    // (W4A16 g32 M = 1, 4096^2 in cache, 2 threads: 68-69 -> 72.5-73 GB/s).
    __asm__("" : "+v"(b));
    const __m512i lo = _mm512_and_si512(b, low4);
    const __m512i hi = byte_field<4, 4>(b);
    return ScaledDot{_mm512_cvtepi32_ps(split_dot_u4(lo, hi, x)),
                     _mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(_mm_loadu_ps(s)))};
  });
}

/// One token with 8-bit codes on plain int16 activations (layout {1, 32}): per chunk the 32
/// codes widen to int16 lanes and meet the chunk's activations in one vpdpwssd.
inline void gemv_int16_u8_single_token_vnni512(const GemvInt16Args& a, int64_t r0) {
  single_token_split_rows<8, 1>(a, r0, [](const uint8_t* codes, const int8_t* x, const float* s) {
    const __m512i w =
        _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes)));
    const __m512i d = _mm512_dpwssd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(x));
    return ScaledDot{_mm512_cvtepi32_ps(d), _mm512_set1_ps(*s)};
  });
}

/// 4-bit codes for Rows tokens on split-byte activations (layout {4, 16, split}, as
/// gemv_int16_u4_single_token_vnni512): the 64 bytes of codes of a step are unpacked once and
/// meet every token through 4 vpdpbusd; each token's lanes are scaled by its chunk scales times
/// the chunks' group scales (spread per chunk once per row). Any group size, per-channel too.
/// Per token and step 6 ops on port 0, where gemv_int16_rows_avx2 took 16 ops on 256-bit
/// lanes for the same four chunks: W4A16 g32 4096^2 in cache, 2 threads, M = 8 / 32 / 128:
/// 133-139 / 139-149 / 140-144 -> 207-210 / 163-174 / 210-227 GFLOPS (16 tokens a pass: less).
/// From 2 tokens on the 16-channel tiles (gemv_int16_u4_tiled_vnni512) replaced it; it still
/// takes one token whose group size the single-token kernel does not (3 chunks, say).
template <int Rows>
void gemv_int16_u4_tokens_vnni512(const GemvInt16Args& a, int64_t r0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  ChunkScaleSpread scales(chunks, a.w.groups, chunks_per_group);
  const float* ws = scales.spread();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i quarters = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const int8_t* xb[Rows];
  const float* sx[Rows];
  for (int r = 0; r < Rows; ++r) {
    xb[r] = reinterpret_cast<const int8_t*>(a.xh + (r0 + r) * a.xh_stride);
    sx[r] = a.chunk_scales + (r0 + r) * chunks;
  }
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const RowGroupParams g = row_group_params(a.w, n, scales.scratch());
    scales.spread_from(g.s, a.w.groups);
    __m512 total[Rows];
    for (auto& t : total) t = _mm512_setzero_ps();
    // Rows are padded to 64 bytes and activations to whole steps (zeros); the chunk scales are
    // not, so a partial last step loads them masked.
    for (int64_t c = 0; c < chunks; c += 4) {
      prefetch_ahead(row + c * 16);
      const __m512i b = _mm512_loadu_si512(row + c * 16);
      const __m512i lo = _mm512_and_si512(b, low4);
      const __m512i hi = byte_field<4, 4>(b);
      const __m512 group_scale =
          _mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(_mm_loadu_ps(ws + c)));
      const auto in_row = static_cast<__mmask8>(c + 4 <= chunks ? 0xF : (1 << (chunks - c)) - 1);
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m512i d = split_dot_u4(lo, hi, xb[r] + c * 64);
        const __m512 chunk_scale = _mm512_permutexvar_ps(
            quarters, _mm512_castps128_ps512(_mm_maskz_loadu_ps(in_row, sx[r] + c)));
        total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(group_scale, chunk_scale),
                                   total[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const float bias = group_bias_term(g.s, g.off, a.w.code_bias,
                                         a.xh_group_sums + (r0 + r) * a.w.groups, a.w.groups);
      a.w.y[(r0 + r) * a.w.y_stride + n] = horizontal_sum(halves_added(total[r])) + bias;
    }
  }
}

#if defined(__AVX512VNNI__)
/// 4-bit codes in 16-channel tiles (gemv_int8_tiles.h) for Rows tokens on split-byte
/// activations (layout {4, 16, split}): per quad of a chunk (elements 4q..4q+3 in the low
/// nibbles, 16+4q.. in the high ones) and token, the high bytes meet both nibble sets in one
/// chain and the low bytes (the unsigned operand, codes as the signed one) in another; per chunk
/// the two chains combine as 256 high + low, and the float total takes them times the group's
/// 16 scales times the token's chunk scale. The bias (qmin and offsets) goes in per group
/// through the token's group sum of the rounded x. Against gemv_int16_u4_tokens_vnni512 (one
/// row at a time, a horizontal sum per row and token) the channels sit in the lanes.
template <int Rows>
void u4_tile_tokens_i16(const GemvInt16Args& a, const ChannelTile& t, int64_t r0, int64_t n0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const uint8_t* xb[Rows];
  const float* sx[Rows];
  const float* xsums[Rows];
  for (int r = 0; r < Rows; ++r) {
    xb[r] = reinterpret_cast<const uint8_t*>(a.xh + (r0 + r) * a.xh_stride);
    sx[r] = a.chunk_scales + (r0 + r) * chunks;
    xsums[r] = a.xh_group_sums + (r0 + r) * a.w.groups;
  }
  // The tiles' dword broadcast (gemv_int8_tiles.h), on the activations' bytes.
  auto quad = [](const uint8_t* p) { return Lanes512::quad(reinterpret_cast<const int8_t*>(p)); };
  __m512 total[Rows];
  for (auto& v : total) v = _mm512_setzero_ps();
  for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
    const __m512 scale = _mm512_loadu_ps(t.scales.data() + g * 16);
    for (int64_t c = c0; c < std::min(chunks, c0 + chunks_per_group); ++c) {
      __m512i high[Rows], low[Rows];
      // Byte offset of chunk c's first run in a token's row: four chunks per 256 bytes.
      const int64_t at = (c / 4) * 256 + (c % 4) * 16;
      auto nibbles = [&](int q, __m512i* lo, __m512i* hi) {
        const __m512i codes = _mm512_loadu_si512(t.quads + (c * 4 + q) * 16);
        *lo = byte_field<0, 4>(codes);
        *hi = byte_field<4, 4>(codes);
      };
      for (int r = 0; r < Rows; ++r) high[r] = low[r] = _mm512_setzero_si512();
      for (int q = 0; q < 4; ++q) {
        __m512i lo, hi;
        nibbles(q, &lo, &hi);
#pragma GCC unroll 8
        for (int r = 0; r < Rows; ++r) {
          const uint8_t* x = xb[r] + at + 4 * q;
          high[r] = _mm512_dpbusd_epi32(high[r], lo, quad(x));
          high[r] = _mm512_dpbusd_epi32(high[r], hi, quad(x + 128));
          low[r] = _mm512_dpbusd_epi32(low[r], quad(x + 64), lo);
          low[r] = _mm512_dpbusd_epi32(low[r], quad(x + 192), hi);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m512i d = _mm512_add_epi32(_mm512_slli_epi32(high[r], 8), low[r]);
        total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                   _mm512_mul_ps(scale, _mm512_set1_ps(sx[r][c])), total[r]);
      }
    }
    const __m512 bias =  // qmin s + off, exact as the product is
        _mm512_fmadd_ps(_mm512_set1_ps(a.w.code_bias), scale,
                        _mm512_loadu_ps(t.offsets.data() + g * 16));
    for (int r = 0; r < Rows; ++r)
      total[r] = _mm512_fmadd_ps(bias, _mm512_set1_ps(xsums[r][g]), total[r]);
  }
  const auto valid = static_cast<__mmask16>((1u << std::min<int64_t>(16, a.w.n_end - n0)) - 1);
  for (int r = 0; r < Rows; ++r)
    _mm512_mask_storeu_ps(a.w.y + (r0 + r) * a.w.y_stride + n0, valid, total[r]);
}

/// The slice through 16-channel tiles of 4-bit codes for 2-4 tokens (from kU4PairTilesMinTokens
/// = 5 on the pair tiles take them). Zen 5, 4096^2 in cache, 2 threads, against
/// gemv_int16_u4_tokens_vnni512: W4A16 g32 M = 2 / 3 / 4 170 / 155 / 290 -> 240 / 235 / 425
/// GFLOPS; with 8-token passes (named accumulators) it also took 8 tokens and more, and beat
/// dequantized tiles + sgemm at any M, so at the avx512 level the int16 GEMV takes 4-bit weights
/// at every M (gemm_min_rows).
inline void gemv_int16_u4_tiled_vnni512(const GemvInt16Args& a) {
  thread_local ChannelTile tile;
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += 16) {
    fill_channel_tile16<4>(a.w, n0, tile);
    int64_t r = 0;
    for (; r + 4 <= a.m; r += 4) u4_tile_tokens_i16<4>(a, tile, r, n0);
    for (; r < a.m; ++r) u4_tile_tokens_i16<1>(a, tile, r, n0);
  }
}
#endif

/// One token with 2-bit codes and split-byte activations (layout {8, 8, split}), eight chunks
/// per 512-bit step: bit field i of byte 8q + j holds element 8i + j of chunk c + q, and meets
/// run i of the activations (their high bytes at 128 i, low bytes at 128 i + 64) as in
/// gemv_int16_u4_single_token_vnni512. Int32 lanes 2q, 2q + 1 belong to chunk c + q. Per eight
/// chunks 19 ops, 13 on port 0, where two steps of the int16 kernel on {4, 8} it replaced took
/// 30 (16): 1.16x in cache, 1.10-1.23x from DRAM on 1 thread (2 threads: within noise). The
/// bit fields come out of GFNI affine transforms (byte_field: 4 ops instead of 7) and the high
/// and low products run in two chains: 1 thread, 4096^2 g32 in L3, Zen 5: 28.5-29.0 -> 32.3-32.8
/// GB/s; 2 threads from DRAM 49-50 -> 51-56 (the probe: 86).
inline void gemv_int16_u2_single_token_vnni512(const GemvInt16Args& a, int64_t r0) {
  single_token_split_rows<2, 8>(a, r0, [](const uint8_t* codes, const int8_t* x, const float* s) {
    const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i b = _mm512_loadu_si512(codes);
    const __m512i f[4] = {byte_field<0, 2>(b), byte_field<2, 2>(b), byte_field<4, 2>(b),
                          byte_field<6, 2>(b)};
    auto high = [&](int i) { return _mm512_loadu_si512(x + 128 * i); };
    auto low = [&](int i) { return _mm512_loadu_si512(x + 128 * i + 64); };
    __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), f[0], high(0));
    __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), low(0), f[0]);
    hi = _mm512_dpbusd_epi32(hi, f[1], high(1));
    lo = _mm512_dpbusd_epi32(lo, low(1), f[1]);
    hi = _mm512_dpbusd_epi32(hi, f[2], high(2));
    lo = _mm512_dpbusd_epi32(lo, low(2), f[2]);
    hi = _mm512_dpbusd_epi32(hi, f[3], high(3));
    lo = _mm512_dpbusd_epi32(lo, low(3), f[3]);
    const __m512i d = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
    return ScaledDot{_mm512_cvtepi32_ps(d),
                     _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(s)))};
  });
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

// Float32 activations (GemvArgs): decode a chunk of codes to floats, then FMA; also the
// dequantized rows the sgemm path multiplies.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_rows.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX2__)
/// The exact values of 8 float8 codes. An e5m2 code is the top byte of a float16. An e4m3fn code
/// widened with its sign and shifted left 7 is a float16 with its sign in bit 15, its exponent
/// and mantissa in place, and a copy of the sign in bit 14 (the exponent's top bit, which must be
/// 0); its value is the code's times 2^-8 (exponent bias 15 against 7; the subnormals scale
/// alike). Adding one step of the magnitude (0x80) carries into bit 14 exactly for the NaN
/// magnitude 0x7F, so bit 14 of t XOR bit 14 of the sum is that carry: 0 for every value, 1 for
/// NaN, whose float16 exponent then is all ones over a nonzero mantissa. (AVX2, 1 thread, 4096^2
/// in cache, M = 1: 5.4 -> 7.1 GB/s against a mask for the NaN and an addition for the sign.)
template <Codes C>
inline __m256 float8_values8(const uint8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  if constexpr (C == Codes::kE5M2) {
    return _mm256_cvtph_ps(_mm_slli_epi16(_mm_cvtepu8_epi16(bytes), 8));
  } else {
    const __m128i t = _mm_slli_epi16(_mm_cvtepi8_epi16(bytes), 7);
    const __m128i stepped = _mm_add_epi16(t, _mm_set1_epi16(0x0080));
    const __m128i half = _mm_xor_si128(t, _mm_and_si128(stepped, _mm_set1_epi16(0x4000)));
    return _mm256_mul_ps(_mm256_cvtph_ps(half), _mm256_set1_ps(256.0f));
  }
}

#endif

/// Decodes the 32 codes of chunk c of a packed row into floats (layout in linear.h): unsigned
/// integers, or the exact values of float8 codes (8-bit rows, Codes::kE4M3 / kE5M2).
template <int Bits, Codes C = Codes::kUnsigned>
inline void decode_chunk(const uint8_t* __restrict row, int64_t c, float* __restrict w) {
  if constexpr (C != Codes::kUnsigned) {
    static_assert(Bits == 8, "float8 codes are bytes");
#if defined(__AVX2__)
    for (int i = 0; i < 4; ++i)
      _mm256_storeu_ps(w + 8 * i, float8_values8<C>(row + c * 32 + 8 * i));
#else
    for (int j = 0; j < 32; ++j)
      w[j] = C == Codes::kE4M3 ? e4m3_bits_to_float(row[c * 32 + j])
                               : e5m2_bits_to_float(row[c * 32 + j]);
#endif
    return;
  }
#if defined(__AVX2__)
  // The vectoriser turns the portable loops below into scalar extracts; spell out the widening.
  auto widen8 = [](__m128i bytes, float* out) {
    _mm256_store_ps(out, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)));
  };
  const __m128i low4 = _mm_set1_epi8(0x0F);
  if constexpr (Bits == 8) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 32));
    const __m128i b0 = _mm256_castsi256_si128(b), b1 = _mm256_extracti128_si256(b, 1);
    widen8(b0, w), widen8(_mm_srli_si128(b0, 8), w + 8), widen8(b1, w + 16),
        widen8(_mm_srli_si128(b1, 8), w + 24);
  } else if constexpr (Bits == 4) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 16));
    const __m128i lo = _mm_and_si128(b, low4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low4);
    widen8(lo, w), widen8(_mm_srli_si128(lo, 8), w + 8), widen8(hi, w + 16),
        widen8(_mm_srli_si128(hi, 8), w + 24);
  } else {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c * 8));
    const __m128i low2 = _mm_set1_epi8(0x03);
    for (int i = 0; i < 4; ++i) widen8(_mm_and_si128(_mm_srli_epi16(b, 2 * i), low2), w + 8 * i);
  }
#else
  if constexpr (Bits == 8) {
    const uint8_t* b = row + c * 32;
    for (int j = 0; j < 32; ++j) w[j] = static_cast<float>(b[j]);
  } else if constexpr (Bits == 4) {
    const uint8_t* b = row + c * 16;
    for (int j = 0; j < 16; ++j) {
      w[j] = static_cast<float>(b[j] & 0x0F);
      w[j + 16] = static_cast<float>(b[j] >> 4);
    }
  } else {
    const uint8_t* b = row + c * 8;
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 8; ++j) w[j + 8 * i] = static_cast<float>((b[j] >> (2 * i)) & 3);
    }
  }
#endif
}

/// Rows = number of activation rows handled together (1..4). The group scale is folded into the
/// decoded chunk (w = s * q, q = u + code_bias exactly), so lanes accumulate across groups and are
/// reduced once per output; offsets enter through the group sums of x: sum_k x_k off_g = off_g *
/// xsum_g.
template <int Bits, int Rows, Codes C = Codes::kUnsigned>
void gemv_rows(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk;
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const auto [s, off] = float32_row_params(a.w, n);  // off null: all zero
    alignas(64) float acc[Rows][kChunk] = {};
    alignas(64) float w[kChunk];
    for (int64_t c = 0; c < full_chunks; ++c) {
      decode_chunk<Bits, C>(row, c, w);
      const float scale = s[(c * kChunk) / a.w.group_size];
      for (int j = 0; j < kChunk; ++j) w[j] = (w[j] + a.w.code_bias) * scale;
      for (int r = 0; r < Rows; ++r) {
        const float* xc = xr[r] + c * kChunk;
        for (int j = 0; j < kChunk; ++j) acc[r][j] += xc[j] * w[j];
      }
    }
    float out[Rows];
    for (int r = 0; r < Rows; ++r) {
      for (int width = kChunk / 2; width >= 1; width /= 2) {
        for (int j = 0; j < width; ++j) acc[r][j] += acc[r][j + width];
      }
      out[r] = acc[r][0];
    }
    if (full_chunks * kChunk < a.w.k) {  // tail of K: part of the last group
      decode_chunk<Bits, C>(row, full_chunks, w);
      const float scale = s[a.w.groups - 1];
      for (int r = 0; r < Rows; ++r) {
        for (int64_t j = 0; j < a.w.k - full_chunks * kChunk; ++j) {
          out[r] += xr[r][full_chunks * kChunk + j] * ((w[j] + a.w.code_bias) * scale);
        }
      }
    }
    for (int r = 0; r < Rows; ++r) {
      const float* sums = a.x_group_sums + (m0 + r) * a.w.groups;
      double offset_term = 0.0;  // per group, not per element: double costs nothing here
      for (int64_t g = 0; off != nullptr && g < a.w.groups; ++g)
        offset_term += static_cast<double>(off[g]) * sums[g];
      a.w.y[(m0 + r) * a.w.y_stride + n] = static_cast<float>(out[r] + offset_term);
    }
  }
}

/// Row n of W in float32: W[k] = s[g] * (u[k] + code_bias) + off[g] (sgemm path at large M);
/// float8 rows: W[k] = s[g] * value(code k), with code_bias and off zero.
template <int Bits, Codes C = Codes::kUnsigned>
void dequantize_row(const uint8_t* __restrict row, int64_t k, float code_bias, const float* s,
                    const float* off, int64_t group_size, float* __restrict out) {
  alignas(64) float w[kChunk];
  for (int64_t c = 0; c * kChunk < k; ++c) {
    decode_chunk<Bits, C>(row, c, w);  // rows are padded to whole chunks
    const int64_t len = std::min<int64_t>(kChunk, k - c * kChunk);
    const int64_t g0 = c * kChunk / group_size, g1 = (c * kChunk + len - 1) / group_size;
    if (g0 == g1) {  // one group (group sizes that are multiples of 32): a vector loop
      const float scale = s[g0], offset = off[g0];
      float* dst = out + c * kChunk;
      for (int64_t j = 0; j < len; ++j) dst[j] = scale * (w[j] + code_bias) + offset;
      continue;
    }
    for (int64_t j = 0; j < len; ++j) {
      const int64_t g = (c * kChunk + j) / group_size;
      out[c * kChunk + j] = s[g] * (w[j] + code_bias) + off[g];
    }
  }
}

#if defined(__AVX2__)
/// The 32 unsigned codes of chunk c as floats in element order (w[i] holds elements 8i..8i+7).
/// Each vpmovzxbd reads 8 bytes straight from memory; 4-bit bytes hold elements j and j + 16,
/// 2-bit bytes elements j, j + 8, j + 16, j + 24, so one widening feeds 2 or 4 registers.
template <int Bits, Codes C = Codes::kUnsigned>
inline void decode_unsigned(const uint8_t* row, int64_t c, __m256 w[4]) {
  auto widen = [](const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  };
  if constexpr (C != Codes::kUnsigned) {
    for (int i = 0; i < 4; ++i) w[i] = float8_values8<C>(row + c * 32 + 8 * i);
  } else if constexpr (Bits == 8) {
    for (int i = 0; i < 4; ++i) w[i] = _mm256_cvtepi32_ps(widen(row + c * 32 + 8 * i));
  } else if constexpr (Bits == 4) {
    const __m256i low4 = _mm256_set1_epi32(0x0F);
    const __m256i v0 = widen(row + c * 16), v1 = widen(row + c * 16 + 8);
    w[0] = _mm256_cvtepi32_ps(_mm256_and_si256(v0, low4));
    w[1] = _mm256_cvtepi32_ps(_mm256_and_si256(v1, low4));
    w[2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4));
    w[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4));
  } else {
    const __m256i low2 = _mm256_set1_epi32(0x03);
    const __m256i v = widen(row + c * 8);
    w[0] = _mm256_cvtepi32_ps(_mm256_and_si256(v, low2));
    w[1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 2), low2));
    w[2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 4), low2));
    w[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 6));
  }
}

/// Register-resident gemv_rows on unsigned codes: W = s (u + qmin) + off, so
/// x . W = sum_g s_g (x . u)_g + sum_g (qmin s_g + off_g) xsum_g. The first sum runs in two
/// accumulators per activation row over spans of Span (1 or 2) chunks inside a group, then is
/// scaled into a running total: short dependency chains, no per-element bias or sign work, and
/// a fixed, fully unrolled span so the loop carries no per-span bookkeeping but a countdown.
template <int Bits, int Rows, int Span, bool ChunkGroups, Codes C>
void gemv_rows_avx2(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk;
  const int64_t chunks_per_group =
      a.w.group_size >= a.w.k ? std::max<int64_t>(full_chunks, 1) : a.w.group_size / kChunk;
  const int64_t spans = full_chunks / Span, spans_per_group = chunks_per_group / Span;
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const auto [s, off] = float32_row_params(a.w, n);  // off null: all zero
    __m256 total[Rows][Span];
    for (int r = 0; r < Rows; ++r) {
      for (int i = 0; i < Span; ++i) total[r][i] = _mm256_setzero_ps();
    }
    GroupScaleCursor group(s, spans_per_group);
    for (int64_t sp = 0; sp < spans; ++sp) {
      __m256 acc[Rows][2];
      for (int i = 0; i < Span; ++i) {
        const int64_t c = sp * Span + i;
        if (ChunkGroups || i == 0) {
          for (int r = 0; r < Rows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        }
        __m256 w[4];
        prefetch_at_line_start(row, c * Bits * 4);
        decode_unsigned<Bits, C>(row, c, w);
        for (int r = 0; r < Rows; ++r) {
          const float* xc = xr[r] + c * kChunk;
          acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xc), w[0], acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xc + 8), w[1], acc[r][1]);
          acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xc + 16), w[2], acc[r][0]);
          acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xc + 24), w[3], acc[r][1]);
        }
        if constexpr (ChunkGroups) {  // one group per chunk: scale each into its own total
          const __m256 scale = _mm256_broadcast_ss(s + c);
          for (int r = 0; r < Rows; ++r) {
            total[r][i] = _mm256_fmadd_ps(_mm256_add_ps(acc[r][0], acc[r][1]), scale, total[r][i]);
          }
        }
      }
      if constexpr (!ChunkGroups) {
        const __m256 scale = _mm256_broadcast_ss(group.scale);
        for (int r = 0; r < Rows; ++r)
          total[r][0] = _mm256_fmadd_ps(_mm256_add_ps(acc[r][0], acc[r][1]), scale, total[r][0]);
        group.step();
      }
    }
    alignas(32) float u_tail[kChunk];
    const int64_t tail = a.w.k - full_chunks * kChunk;
    if (tail > 0) decode_chunk<Bits, C>(row, full_chunks, u_tail);
    const int64_t odd_chunk = spans * Span;  // a last whole chunk the spans did not cover
    alignas(32) float u_odd[kChunk];
    if (odd_chunk < full_chunks) decode_chunk<Bits, C>(row, odd_chunk, u_odd);
    for (int r = 0; r < Rows; ++r) {
      __m256 sum = total[r][0];
      for (int i = 1; i < Span; ++i) sum = _mm256_add_ps(sum, total[r][i]);
      float out = horizontal_sum(sum);
      for (int64_t j = 0; odd_chunk < full_chunks && j < kChunk; ++j)
        out += xr[r][odd_chunk * kChunk + j] * (u_odd[j] * s[odd_chunk * kChunk / a.w.group_size]);
      for (int64_t j = 0; j < tail; ++j)
        out += xr[r][full_chunks * kChunk + j] * (u_tail[j] * s[a.w.groups - 1]);
      out += group_bias_term(s, off, a.w.code_bias, a.x_group_sums + (m0 + r) * a.w.groups,
                             a.w.groups);
      a.w.y[(m0 + r) * a.w.y_stride + n] = out;
    }
  }
}

/// Picks the unrolling: pairs of chunks, scaled per chunk when every group is one chunk, per
/// span when groups hold an even number of chunks; single chunks otherwise.
template <int Bits, int Rows, Codes C = Codes::kUnsigned>
void gemv_rows_avx2(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk;
  const int64_t chunks_per_group =
      a.w.group_size >= a.w.k ? std::max<int64_t>(full_chunks, 1) : a.w.group_size / kChunk;
  if (chunks_per_group == 1 && a.w.group_size < a.w.k) {
    gemv_rows_avx2<Bits, Rows, 2, true, C>(a, m0);
  } else if (chunks_per_group % 2 == 0) {
    gemv_rows_avx2<Bits, Rows, 2, false, C>(a, m0);
  } else {
    gemv_rows_avx2<Bits, Rows, 1, false, C>(a, m0);
  }
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
/// What the AVX-512 float8 decode leaves out of each value, for the caller's scale to make up:
/// e4m3fn codes come out as value * 2^-8 (float8_values8 without its multiply), e5m2 codes
/// exact. A power of two, so the scaled sums round as if the values had been exact.
template <Codes C>
constexpr float kFloat8DecodeUnit = C == Codes::kE4M3 ? 256.0f : 1.0f;

/// The 32 float8 codes of chunk c as value / kFloat8DecodeUnit in two 16-lane halves, through
/// float16 as float8_values8 does, the bytes widened to 32 words at once and bit 14 set in one
/// ternary-logic op: 4 ops before the conversions where a mask-and-blend NaN took 8 (1 thread,
/// 4096^2 in cache, M = 1: 10.1 -> 13.7 GB/s).
template <Codes C>
inline void float8_values32(const uint8_t* row, int64_t c, __m512 w[2]) {
  const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 32));
  __m512i half;
  if constexpr (C == Codes::kE5M2) {
    half = _mm512_slli_epi16(_mm512_cvtepu8_epi16(bytes), 8);
  } else {
    const __m512i t = _mm512_slli_epi16(_mm512_cvtepi8_epi16(bytes), 7);
    const __m512i stepped = _mm512_add_epi16(t, _mm512_set1_epi16(0x0080));
    // imm 0x78: where the third operand has a bit, first XOR second; elsewhere the first.
    half = _mm512_ternarylogic_epi32(t, stepped, _mm512_set1_epi16(0x4000), 0x78);
  }
  w[0] = _mm512_cvtph_ps(_mm512_castsi512_si256(half));
  w[1] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(half, 1));
}

/// The 32 unsigned codes of chunk c as floats in two 16-lane halves: elements 0-15 and 16-31
/// (float8 codes: their values / kFloat8DecodeUnit).
/// 4-bit bytes hold elements j and j + 16, so one widening of 16 bytes feeds both halves; 2-bit
/// bytes hold j, j + 8, j + 16, j + 24, so the 8 bytes go to both 256-bit halves of a register
/// and shift by 0 and 2 (elements 0-15), then 4 and 6 (16-31).
template <int Bits, Codes C = Codes::kUnsigned>
inline void decode_unsigned16(const uint8_t* row, int64_t c, __m512 w[2]) {
  auto widen16 = [](const uint8_t* p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  if constexpr (C != Codes::kUnsigned) {
    float8_values32<C>(row, c, w);
  } else if constexpr (Bits == 8) {
    w[0] = _mm512_cvtepi32_ps(widen16(row + c * 32));
    w[1] = _mm512_cvtepi32_ps(widen16(row + c * 32 + 16));
  } else if constexpr (Bits == 4) {
    const __m512i v = widen16(row + c * 16);
    w[0] = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0x0F)));
    w[1] = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
  } else {
    const __m128i bytes =
        _mm_castpd_si128(_mm_loaddup_pd(reinterpret_cast<const double*>(row + c * 8)));
    const __m512i v = _mm512_cvtepu8_epi32(bytes), low2 = _mm512_set1_epi32(0x03);
    const __m512i shifts_01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(2), 1);
    const __m512i shifts_23 = _mm512_inserti64x4(_mm512_set1_epi32(4), _mm256_set1_epi32(6), 1);
    w[0] = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(v, shifts_01), low2));
    w[1] = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(v, shifts_23), low2));
  }
}

/// rest[r] += x_r . (s * u) over chunks [c0, end of K) of a row, one element at a time: what the
/// vector kernels leave after their whole steps (a partial last group, K's partial chunk).
template <int Bits, Codes C, int Rows>
void add_chunks_from(const GemvArgs& a, const uint8_t* row, const float* s, const float* const* xr,
                     int64_t c0, float* rest) {
  alignas(64) float u[kChunk];
  for (int64_t c = c0; c * kChunk < a.w.k; ++c) {
    decode_chunk<Bits, C>(row, c, u);
    const float scale = s[c * kChunk / a.w.group_size];
    const int64_t len = std::min<int64_t>(kChunk, a.w.k - c * kChunk);
    for (int r = 0; r < Rows; ++r) {
      for (int64_t j = 0; j < len; ++j) rest[r] += xr[r][c * kChunk + j] * (u[j] * scale);
    }
  }
}

/// gemv_rows_avx2 in 512-bit lanes, which halves the decode work per code: per chunk, two
/// 16-lane products per activation row, summed over a block of Block chunks that share a scale
/// (a group, or four chunks of a per-channel row), then scaled into one of two running totals
/// that alternate by block, so no FMA chain is longer than a block. The 256-bit kernel ran the
/// 4-bit rows at 27 GB/s from DRAM, compute-bound on the conversions.
template <int Bits, int Rows, int Block, Codes C>
void gemv_rows_avx512(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk, blocks = full_chunks / Block;
  const bool per_channel = a.w.group_size >= a.w.k;
  // A per-channel row has one scale: its cursor never steps.
  const int64_t blocks_per_group = per_channel ? blocks + 1 : a.w.group_size / kChunk / Block;
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const auto [s, off] = float32_row_params(a.w, n);  // off null: all zero
    __m512 total[2][Rows];
    for (int r = 0; r < Rows; ++r) total[0][r] = total[1][r] = _mm512_setzero_ps();
    GroupScaleCursor group(s, blocks_per_group);
    auto run_block = [&](int64_t b, __m512(&into)[Rows]) {
      __m512 acc[Rows];
      for (int i = 0; i < Block; ++i) {
        const int64_t c = b * Block + i;
        prefetch_at_line_start(row, c * Bits * 4);
        __m512 w[2];
        decode_unsigned16<Bits, C>(row, c, w);
        for (int r = 0; r < Rows; ++r) {
          const float* xc = xr[r] + c * kChunk;
          const __m512 first = _mm512_loadu_ps(xc);
          acc[r] = i == 0 ? _mm512_mul_ps(first, w[0]) : _mm512_fmadd_ps(first, w[0], acc[r]);
          acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(xc + 16), w[1], acc[r]);
        }
      }
      const __m512 scale = _mm512_set1_ps(*group.scale * kFloat8DecodeUnit<C>);
      for (int r = 0; r < Rows; ++r) into[r] = _mm512_fmadd_ps(acc[r], scale, into[r]);
      group.step();
    };
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) run_block(b, total[0]), run_block(b + 1, total[1]);
    if (b < blocks) run_block(b, total[0]);
    // Chunks past the last whole block (per channel, or a partial last group), then K's tail.
    float rest[Rows] = {};
    add_chunks_from<Bits, C, Rows>(a, row, s, xr, blocks * Block, rest);
    for (int r = 0; r < Rows; ++r) {
      const float out = _mm512_reduce_add_ps(_mm512_add_ps(total[0][r], total[1][r])) + rest[r];
      a.w.y[(m0 + r) * a.w.y_stride + n] =
          out + group_bias_term(s, off, a.w.code_bias, a.x_group_sums + (m0 + r) * a.w.groups,
                                a.w.groups);
    }
  }
}

/// 4-bit rows through a table per group: the 16 products s * u of the group's scale with every
/// code u, which vpermps indexes with the codes themselves (it reads the low 4 bits of each
/// lane, so the low nibbles need no mask). Per chunk 4 ops of decoding and 2 FMAs into the
/// totals, where decode_unsigned16 takes 5 and the block's scale 1-3 more: 1 thread, 4096^2 in
/// cache, one token, GB/s of weights: group 32 10.1 -> 11.2-11.3, per channel 11.0-11.1 ->
/// 11.9-12.1 (port 5 bound: the widening and both lookups run there). Four
/// running totals per token (two per chunk, chunks alternating) keep the FMA chains off their
/// latency. The partial last chunk and the qmin and offset terms go as in gemv_rows_avx512.
template <int Rows>
void gemv_rows_u4_table_avx512(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk;
  const int64_t chunks_per_group =
      a.w.group_size >= a.w.k ? full_chunks + 1 : a.w.group_size / kChunk;
  const __m512 codes = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const auto [s, off] = float32_row_params(a.w, n);  // off null: all zero
    __m512 total[Rows][4];
    for (auto& token : total)
      for (auto& t : token) t = _mm512_setzero_ps();
    const float* scale = s;
    int64_t group_end = chunks_per_group;
    __m512 table = _mm512_mul_ps(_mm512_set1_ps(*scale), codes);
    auto chunk = [&](int64_t c, int first) {
      if (c == group_end) {  // chunks arrive in order: the next group starts here
        table = _mm512_mul_ps(_mm512_set1_ps(*++scale), codes);
        group_end += chunks_per_group;
      }
      prefetch_at_line_start(row, c * 16);
      const __m512i v =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 16)));
      const __m512 w0 = _mm512_permutexvar_ps(v, table);  // elements 0-15: the low nibbles
      const __m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);  // 16-31
      for (int r = 0; r < Rows; ++r) {
        const float* xc = xr[r] + c * kChunk;
        total[r][first] = _mm512_fmadd_ps(_mm512_loadu_ps(xc), w0, total[r][first]);
        total[r][first + 1] = _mm512_fmadd_ps(_mm512_loadu_ps(xc + 16), w1, total[r][first + 1]);
      }
    };
    int64_t c = 0;
    for (; c + 2 <= full_chunks; c += 2) chunk(c, 0), chunk(c + 1, 2);
    if (c < full_chunks) chunk(c, 0);
    float rest[Rows] = {};
    add_chunks_from<4, Codes::kUnsigned, Rows>(a, row, s, xr, full_chunks, rest);  // K's tail
    for (int r = 0; r < Rows; ++r) {
      const __m512 sum = _mm512_add_ps(_mm512_add_ps(total[r][0], total[r][1]),
                                       _mm512_add_ps(total[r][2], total[r][3]));
      a.w.y[(m0 + r) * a.w.y_stride + n] =
          _mm512_reduce_add_ps(sum) + rest[r] +
          group_bias_term(s, off, a.w.code_bias, a.x_group_sums + (m0 + r) * a.w.groups,
                          a.w.groups);
    }
  }
}

/// Picks the block: four chunks where a group (or a per-channel row) spans a multiple of four,
/// else two, else one. 4-bit codes take the table kernel above.
template <int Bits, int Rows, Codes C = Codes::kUnsigned>
void gemv_rows_avx512(const GemvArgs& a, int64_t m0) {
  const int64_t chunks_per_group = a.w.group_size / kChunk;
  if constexpr (Bits == 4 && C == Codes::kUnsigned) {
    gemv_rows_u4_table_avx512<Rows>(a, m0);
  } else if (a.w.group_size >= a.w.k || chunks_per_group % 4 == 0) {
    gemv_rows_avx512<Bits, Rows, 4, C>(a, m0);
  } else if (chunks_per_group % 2 == 0) {
    gemv_rows_avx512<Bits, Rows, 2, C>(a, m0);
  } else {
    gemv_rows_avx512<Bits, Rows, 1, C>(a, m0);
  }
}
#endif

template <int Bits, Codes C = Codes::kUnsigned>
void gemv(const GemvArgs& a) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#define QK_GEMV_ROWS gemv_rows_avx512
#elif defined(__AVX2__)
#define QK_GEMV_ROWS gemv_rows_avx2
#else
#define QK_GEMV_ROWS gemv_rows
#endif
  int64_t m = 0;
  for (; m + 4 <= a.m; m += 4) QK_GEMV_ROWS<Bits, 4, C>(a, m);
  switch (a.m - m) {
    case 3:
      QK_GEMV_ROWS<Bits, 3, C>(a, m);
      break;
    case 2:
      QK_GEMV_ROWS<Bits, 2, C>(a, m);
      break;
    case 1:
      QK_GEMV_ROWS<Bits, 1, C>(a, m);
      break;
    default:
      break;
  }
#undef QK_GEMV_ROWS
}

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

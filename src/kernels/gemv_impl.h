// Weight-only GEMV/small-GEMM kernels, written once in portable C++ with explicit vector lanes
// (independent accumulators the compiler maps to SIMD registers) and compiled per ISA.
// QK_ISA_NAMESPACE names the instantiation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "gemv.h"
#include "int_dot.h"
#include "quantkit/core/float_convert.h"
#include "vector_sum.h"

// GCC 12 takes the undefined pass-through operand of unmasked AVX-512 intrinsics (conversions,
// permutes, 256-bit extracts) for a read of an uninitialised variable.
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "gemv_int8_tiles.h"  // after the pragmas: its AVX-512 shuffles need them too

namespace quantkit::kernels::QK_ISA_NAMESPACE {

constexpr int kChunk = 32;  // elements decoded at once
// Software prefetch along the (contiguous) packed rows (prefetch_ahead). The hardware
// prefetcher alone leaves a fifth of the DRAM bandwidth unused here; OpenBLAS's sgemv prefetches
// the same way.
constexpr int64_t kLineBytes = 64;

/// Prefetches the codes ahead of p, once per 64-byte line: into L2 and into L1 at the distances of
/// decode_tuning (gemv.h). Once per line rather than per 16-byte chunk made the int4
/// single-token GEMV 1.09x faster in cache and 1.18-1.29x from DRAM.
#if defined(__AVX2__)
inline void prefetch_ahead(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + decode_tuning.l2_prefetch_bytes), _MM_HINT_T1);
  if (decode_tuning.l1_prefetch_bytes != 0)
    _mm_prefetch(reinterpret_cast<const char*>(p + decode_tuning.l1_prefetch_bytes), _MM_HINT_T0);
}
/// prefetch_ahead(row + offset) where offset starts a 64-byte line (rows are line-aligned), for
/// loops that step by less than a line.
inline void prefetch_at_line_start(const uint8_t* row, int64_t offset) {
  if ((offset & (kLineBytes - 1)) == 0) prefetch_ahead(row + offset);
}

/// The float16 group scales are a second stream beside the codes (an eighth of their bytes at
/// 4-bit group 32, a quarter at 2-bit), which the hardware prefetcher served late: fetching the
/// scales of the row kScaleRowsAhead on made 2-bit g32 decode 1.08x faster (17.6 -> 19.3 GB/s,
/// 2 threads, interleaved runs) and 4-bit g32 about 1.04x.
constexpr int64_t kScaleRowsAhead = 4;
/// Fetches the float16 scales of the row kScaleRowsAhead past the one at h (an address past the
/// last row is harmless: a prefetch never faults).
inline void prefetch_scales(const uint16_t* h, int64_t groups) {
  const uintptr_t ahead = reinterpret_cast<uintptr_t>(h + groups) +
                          static_cast<uintptr_t>((kScaleRowsAhead - 1) * groups * 2);
  for (int64_t b = 0; b < groups * 2; b += kLineBytes)
    _mm_prefetch(reinterpret_cast<const char*>(ahead + static_cast<uintptr_t>(b)), _MM_HINT_T0);
}
#endif

/// Compact group metadata to float32 (GemvKernels::expand_group_params).
inline void expand_group_params(const uint16_t* h, const int8_t* z, int64_t count, float* s,
                                float* off) {
  int64_t i = 0;
#if defined(__F16C__) && defined(__AVX2__)
  for (; i + 8 <= count; i += 8) {
    const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
    _mm256_storeu_ps(s + i, sv);
    if (z == nullptr) continue;
    const __m256 zv = _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(z + i))));
    _mm256_storeu_ps(off + i, _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), sv), zv));
  }
#endif
  for (; i < count; ++i) {
    s[i] = f16_bits_to_float(h[i]);
    if (z != nullptr) off[i] = -s[i] * static_cast<float>(z[i]);
  }
}

/// Row n's float32 scales and offsets (off nullptr: all zero): the weight's own arrays, or its
/// compact metadata expanded into `buffer` (2 * groups floats).
struct RowGroupParams {
  const float* s;
  const float* off;
};
inline RowGroupParams row_group_params(const GemvWeights& w, int64_t n, float* buffer) {
  if (w.scales_f16 == nullptr) {
    return {w.scales + n * w.groups, w.offsets != nullptr ? w.offsets + n * w.groups : nullptr};
  }
  const int8_t* z = w.zero_points != nullptr ? w.zero_points + n * w.groups : nullptr;
  expand_group_params(w.scales_f16 + n * w.groups, z, w.groups, buffer, buffer + w.groups);
  return {buffer, z != nullptr ? buffer + w.groups : nullptr};
}

/// Decodes the 32 codes of chunk c of a packed row into floats (layout in linear.h).
template <int Bits>
inline void decode_chunk(const uint8_t* __restrict row, int64_t c, float* __restrict w) {
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
template <int Bits, int Rows>
void gemv_rows(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk;
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = a.w.scales + n * a.w.groups;
    const float* off =
        a.w.offsets != nullptr ? a.w.offsets + n * a.w.groups : nullptr;  // null: all zero
    alignas(64) float acc[Rows][kChunk] = {};
    alignas(64) float w[kChunk];
    for (int64_t c = 0; c < full_chunks; ++c) {
      decode_chunk<Bits>(row, c, w);
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
      decode_chunk<Bits>(row, full_chunks, w);
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

/// Row n of W in float32: W[k] = s[g] * (u[k] + code_bias) + off[g] (sgemm path at large M).
template <int Bits>
void dequantize_row(const uint8_t* __restrict row, int64_t k, float code_bias, const float* s,
                    const float* off, int64_t group_size, float* __restrict out) {
  alignas(64) float w[kChunk];
  for (int64_t c = 0; c * kChunk < k; ++c) {
    decode_chunk<Bits>(row, c, w);
    const int64_t len = std::min<int64_t>(kChunk, k - c * kChunk);
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
template <int Bits>
inline void decode_unsigned(const uint8_t* row, int64_t c, __m256 w[4]) {
  auto widen = [](const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  };
  if constexpr (Bits == 8) {
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

#if defined(__AVX512F__)
inline __m256 halves_added(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}
#endif

/// The running sum of the bias functions below, in the order they share: steps of 16 groups in
/// 512-bit lanes (avx512), their halves added, then steps of 8, then one group at a time.
struct BiasSum {
  explicit BiasSum(float qmin_value) : qmin(qmin_value), qv(_mm256_set1_ps(qmin_value)) {}
  float qmin;
  __m256 qv, acc = _mm256_setzero_ps();
#if defined(__AVX512F__)
  __m512 qv16 = _mm512_set1_ps(qmin), acc16 = _mm512_setzero_ps();
#endif
};

/// Where the bias sums' steps of 8 groups end, from g on: after the steps of 16 (avx512), one
/// step of 8 at most; elsewhere all of them.
inline int64_t steps_of_8_end(int64_t g, int64_t groups) {
#if defined(__AVX512F__)
  return std::min(groups, g + 8);
#else
  (void)g;
  return groups;
#endif
}

/// sum_g (qmin * s[g] + off[g]) * sums[g]: what the signed codes and the offsets add to the
/// product on unsigned codes (off = nullptr: all zero). Every FMA is spelled out: this file is
/// built with -ffp-contract=fast, and expand_scales_with_bias must round exactly the same way:
/// both sum blocks of 16 groups in 512-bit lanes where the TU has AVX-512, then one block of 8
/// in 256-bit lanes, then one group at a time.
inline float group_bias_term(const float* s, const float* off, float qmin, const float* sums,
                             int64_t groups) {
  BiasSum sum(qmin);
  int64_t g = 0;
#if defined(__AVX512F__)
  for (; g + 16 <= groups; g += 16) {
    const __m512 sv = _mm512_loadu_ps(s + g);
    const __m512 b = off != nullptr ? _mm512_fmadd_ps(sum.qv16, sv, _mm512_loadu_ps(off + g))
                                    : _mm512_mul_ps(sum.qv16, sv);
    sum.acc16 = _mm512_fmadd_ps(b, _mm512_loadu_ps(sums + g), sum.acc16);
  }
  sum.acc = halves_added(sum.acc16);
#endif
  for (const int64_t end = steps_of_8_end(g, groups); g + 8 <= end; g += 8) {
    const __m256 sv = _mm256_loadu_ps(s + g);
    const __m256 b = off != nullptr ? _mm256_fmadd_ps(sum.qv, sv, _mm256_loadu_ps(off + g))
                                    : _mm256_mul_ps(sum.qv, sv);
    sum.acc = _mm256_fmadd_ps(b, _mm256_loadu_ps(sums + g), sum.acc);
  }
  float out = horizontal_sum(sum.acc);
  for (; g < groups; ++g)
    out = std::fma(std::fma(qmin, s[g], off != nullptr ? off[g] : 0.0f), sums[g], out);
  return out;
}

/// Compact metadata of one row (float16 scales h, int8 zero points z or null) to float32 scales
/// out[g] = s[g], or, when fold is given, the single-token kernels' folded scales
/// out[c] = fold[c] * s[c / Span] for each of the `chunks` chunks (Span chunks per group),
/// returning group_bias_term's value bit for bit: qmin s + off = s (qmin - z) exactly, a float16
/// times a small integer. One pass instead of expanding, folding and summing the bias in three,
/// which took a sixth of the W4A16 g32 decode kernel's time (1.08-1.17x in cache, TinyLlama
/// decode 1.12x); 16 groups a step at the avx512 level, where the folding was still a quarter
/// of the decode kernels' time.
template <int Span = 1>
inline float expand_scales_with_bias(const uint16_t* h, const int8_t* z, int64_t groups, float qmin,
                                     const float* sums, const float* fold, float* out,
                                     int64_t chunks = 0) {
  // Whole groups only take the vector stores: a partial last group has fewer than Span chunks.
  const int64_t whole_groups = fold != nullptr && Span > 1 ? chunks / Span : groups;
  auto store_scalar = [&](int64_t g, float sg) {
    if (fold == nullptr) out[g] = sg;
    for (int64_t c = g * Span; fold != nullptr && c < std::min(chunks, (g + 1) * Span); ++c)
      out[c] = fold[c] * sg;
  };
  auto store_8 = [&](int64_t g, __m256 sv) {  // groups g..g+7
    if (fold == nullptr) {
      _mm256_storeu_ps(out + g, sv);
    } else if (g + 8 > whole_groups) {
      for (int64_t i = 0; i < 8; ++i) store_scalar(g + i, f16_bits_to_float(h[g + i]));
    } else {
      for (int part = 0; part < Span; ++part) {  // chunks g Span + 8 part .. + 8
        const __m256i spread =
            _mm256_add_epi32(_mm256_srli_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), Span / 2),
                             _mm256_set1_epi32(8 * part / Span));
        const int64_t c = g * Span + 8 * part;
        _mm256_storeu_ps(out + c, _mm256_mul_ps(_mm256_loadu_ps(fold + c),
                                                _mm256_permutevar8x32_ps(sv, spread)));
      }
    }
  };
  BiasSum sum(qmin);
  int64_t g = 0;
#if defined(__AVX512F__)
  for (; g + 16 <= groups; g += 16) {
    const __m512 sv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + g)));
    if (Span == 1 && fold != nullptr) {
      _mm512_storeu_ps(out + g, _mm512_mul_ps(_mm512_loadu_ps(fold + g), sv));
    } else {
      store_8(g, _mm512_castps512_ps256(sv));
      store_8(g + 8, _mm512_extractf32x8_ps(sv, 1));
    }
    __m512 b = _mm512_mul_ps(sum.qv16, sv);
    if (z != nullptr) {
      const __m512 zv = _mm512_cvtepi32_ps(
          _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z + g))));
      b = _mm512_fmadd_ps(sum.qv16, sv, _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), sv), zv));
    }
    sum.acc16 = _mm512_fmadd_ps(b, _mm512_loadu_ps(sums + g), sum.acc16);
  }
  sum.acc = halves_added(sum.acc16);
#endif
  for (const int64_t end = steps_of_8_end(g, groups); g + 8 <= end; g += 8) {
    const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + g)));
    store_8(g, sv);
    __m256 b = _mm256_mul_ps(sum.qv, sv);
    if (z != nullptr) {
      const __m256 zv = _mm256_cvtepi32_ps(
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(z + g))));
      b = _mm256_fmadd_ps(sum.qv, sv, _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), sv), zv));
    }
    sum.acc = _mm256_fmadd_ps(b, _mm256_loadu_ps(sums + g), sum.acc);
  }
  float bias = horizontal_sum(sum.acc);
  for (; g < groups; ++g) {
    const float sg = f16_bits_to_float(h[g]);
    store_scalar(g, sg);
    const float off = z != nullptr ? -sg * static_cast<float>(z[g]) : 0.0f;
    bias = std::fma(std::fma(qmin, sg, off), sums[g], bias);
  }
  return bias;
}

/// Walks a row's group scales in steps (chunks or spans) with a countdown to the next group,
/// so the hot loops carry no division or per-group loop nest.
struct GroupScaleCursor {
  const float* scale;
  int64_t steps_per_group, left;
  GroupScaleCursor(const float* scales, int64_t steps)
      : scale(scales), steps_per_group(steps), left(steps) {}
  void step() {
    if (--left == 0) left = steps_per_group, ++scale;
  }
};

/// Register-resident gemv_rows on unsigned codes: W = s (u + qmin) + off, so
/// x . W = sum_g s_g (x . u)_g + sum_g (qmin s_g + off_g) xsum_g. The first sum runs in two
/// accumulators per activation row over spans of Span (1 or 2) chunks inside a group, then is
/// scaled into a running total: short dependency chains, no per-element bias or sign work, and
/// a fixed, fully unrolled span so the loop carries no per-span bookkeeping but a countdown.
template <int Bits, int Rows, int Span, bool ChunkGroups>
void gemv_rows_avx2(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk;
  const int64_t chunks_per_group =
      a.w.group_size >= a.w.k ? std::max<int64_t>(full_chunks, 1) : a.w.group_size / kChunk;
  const int64_t spans = full_chunks / Span, spans_per_group = chunks_per_group / Span;
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = a.w.scales + n * a.w.groups;
    const float* off =
        a.w.offsets != nullptr ? a.w.offsets + n * a.w.groups : nullptr;  // null: all zero
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
        decode_unsigned<Bits>(row, c, w);
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
    if (tail > 0) decode_chunk<Bits>(row, full_chunks, u_tail);
    const int64_t odd_chunk = spans * Span;  // a last whole chunk the spans did not cover
    alignas(32) float u_odd[kChunk];
    if (odd_chunk < full_chunks) decode_chunk<Bits>(row, odd_chunk, u_odd);
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
template <int Bits, int Rows>
void gemv_rows_avx2(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.w.k / kChunk;
  const int64_t chunks_per_group =
      a.w.group_size >= a.w.k ? std::max<int64_t>(full_chunks, 1) : a.w.group_size / kChunk;
  if (chunks_per_group == 1 && a.w.group_size < a.w.k) {
    gemv_rows_avx2<Bits, Rows, 2, true>(a, m0);
  } else if (chunks_per_group % 2 == 0) {
    gemv_rows_avx2<Bits, Rows, 2, false>(a, m0);
  } else {
    gemv_rows_avx2<Bits, Rows, 1, false>(a, m0);
  }
}
#endif

/// Integer dot products of int8 activations with 8-bit (signed) or 4-bit codes over whole
/// 32-element chunks (activations are zero-padded). Portable form: the specification of the
/// AVX2 kernels gemv_int8_w8_rows_avx2 and gemv_int8_w4_avx2.
template <int Bits>
inline int32_t dot_chunk_int(const int8_t* xq, const uint8_t* row, int64_t c, int32_t code_bias) {
  int32_t sum = 0;
  if constexpr (Bits == 8) {
    for (int j = 0; j < 32; ++j) sum += static_cast<int32_t>(xq[j]) * (row[c * 32 + j] + code_bias);
  } else {
    for (int j = 0; j < 16; ++j) {
      const uint8_t b = row[c * 16 + j];
      sum += static_cast<int32_t>(xq[j]) * ((b & 0x0F) + code_bias) +
             static_cast<int32_t>(xq[j + 16]) * ((b >> 4) + code_bias);
    }
  }
  return sum;
}

#if defined(__AVX2__)
/// The 32 unsigned 4-bit codes of chunk c as bytes in element order (low nibbles are elements
/// 0..15, high nibbles 16..31), prefetching further along the row.
template <bool Prefetch>
inline __m256i nibbles_w4_chunk(const uint8_t* row, int64_t c) {
  if constexpr (Prefetch) prefetch_at_line_start(row, c * 16);
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 16));
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), low4), _mm_and_si128(b, low4));
}

/// acc + the int32 lanes of chunk c's dot with xq.
template <bool Prefetch>
inline __m256i dot_w4_chunk(__m256i acc, const uint8_t* row, const int8_t* xq, int64_t c) {
  const __m256i u = nibbles_w4_chunk<Prefetch>(row, c);
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + c * kChunk));
  return dot_u8_s8(acc, u, x);
}

/// W4A8 for one token on unsigned codes: per chunk, maddubs(u, xq) summed into int32 lanes; per
/// group the lanes become floats scaled by s_g into one of two running totals (alternating, so
/// the total's FMA latency does not serialise one-chunk groups). qmin and the offsets enter once
/// per row through the group sums of xq, as in the float kernel.
inline void gemv_int8_w4_row_avx2(const GemvInt8Args& a, int64_t r) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int8_t* xq = a.xq + r * a.xq_stride;
  const float* xsums = a.xq_group_sums + r * a.w.groups;
  thread_local std::vector<float> buffer;  // the row's float32 scales, from compact metadata
  buffer.resize(static_cast<size_t>(a.w.groups));
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = buffer.data();
    float bias = 0.0f;
    if (a.w.scales_f16 != nullptr) {
      bias = expand_scales_with_bias(
          a.w.scales_f16 + n * a.w.groups,
          a.w.zero_points != nullptr ? a.w.zero_points + n * a.w.groups : nullptr, a.w.groups,
          a.w.code_bias, xsums, nullptr, buffer.data());
    } else {
      s = a.w.scales + n * a.w.groups;
      bias = group_bias_term(s, a.w.offsets != nullptr ? a.w.offsets + n * a.w.groups : nullptr,
                             a.w.code_bias, xsums, a.w.groups);
    }
    __m256 total0 = _mm256_setzero_ps(), total1 = _mm256_setzero_ps();
    if (chunks_per_group == 1) {  // one chunk per group (group size 32): a line per step
      int64_t c = 0;
      auto chunk = [&](int64_t ci, __m256& total) {
        total = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot_w4_chunk<false>(_mm256_setzero_si256(), row, xq, ci)),
            _mm256_broadcast_ss(s + ci), total);
      };
      for (; c + 4 <= chunks; c += 4) {  // a 64-byte line: one prefetch (1.05-1.07x)
        prefetch_ahead(row + c * 16);
        chunk(c, total0);
        chunk(c + 1, total1);
        chunk(c + 2, total0);
        chunk(c + 3, total1);
      }
      for (; c < chunks; ++c) chunk(c, c % 2 == 0 ? total0 : total1);
    } else {
      for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
        const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
        int64_t c = c0;
        for (; c + 2 <= c1; c += 2) {
          acc0 = dot_w4_chunk<true>(acc0, row, xq, c);
          acc1 = dot_w4_chunk<true>(acc1, row, xq, c + 1);
        }
        if (c < c1) acc0 = dot_w4_chunk<true>(acc0, row, xq, c);
        total0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc0, acc1)),
                                 _mm256_broadcast_ss(s + g), total0);
        std::swap(total0, total1);
      }
    }
    const float out = horizontal_sum(_mm256_add_ps(total0, total1)) + bias;
    a.w.y[r * a.w.y_stride + n] = out * a.x_scale[r];
  }
}

#if defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VNNI__)
/// A row's group scales spread per chunk for the avx512 kernels that take four chunks a step:
/// 3 zeros past the last chunk (a partial last step), then scratch for the row's group scales
/// and offsets as floats. Per thread, so it stays in L1.
class ChunkScaleSpread {
 public:
  ChunkScaleSpread(int64_t chunks, int64_t groups, int64_t chunks_per_group)
      : chunks_(chunks), chunks_per_group_(chunks_per_group) {
    buffer().resize(static_cast<size_t>(chunks + kPadding + 2 * groups));
    std::fill_n(buffer().begin() + chunks, kPadding, 0.0f);
  }
  const float* spread() const { return buffer().data(); }
  float* scratch() { return buffer().data() + chunks_ + kPadding; }
  /// Chunk c's scale = s[c / chunks_per_group]. A copy at one chunk a group (a fill per group
  /// cost a sixth of the W4A16 multi-token kernel's time); nothing to do when s is spread().
  void spread_from(const float* s, int64_t groups) {
    float* out = buffer().data();
    if (s == out) return;
    if (chunks_per_group_ == 1) {
      std::copy_n(s, chunks_, out);
      return;
    }
    for (int64_t g = 0; g < groups; ++g)
      std::fill_n(out + g * chunks_per_group_,
                  std::min(chunks_per_group_, chunks_ - g * chunks_per_group_), s[g]);
  }
  /// Where a kernel that expands compact scales itself should write them: straight into the
  /// spread at one chunk a group, else the scratch.
  float* expand_target() { return chunks_per_group_ == 1 ? buffer().data() : scratch(); }

 private:
  static constexpr int64_t kPadding = 3;
  static std::vector<float>& buffer() {
    thread_local std::vector<float> b;
    return b;
  }
  int64_t chunks_, chunks_per_group_;
};

/// W4A8 for one token at the avx512 level, four chunks (64 bytes of codes) a step: the low
/// nibbles hold elements 0..15 of each chunk and the high ones 16..31, and two vshufi32x4
/// gather the matching activations from the token's natural order, so each vpdpbusd takes 64
/// codes. Int32 lanes 4q..4q+3 belong to chunk c + q, times that chunk's group scale (spread
/// per chunk once per row). Per step 10 ops on 512-bit lanes, where the avx2 row kernel took
/// about 9 per chunk on 256-bit ones.
inline void gemv_int8_w4_row_avx512(const GemvInt8Args& a, int64_t r) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int8_t* xq = a.xq + r * a.xq_stride;  // zero-padded to whole steps of 4 chunks
  const float* xsums = a.xq_group_sums + r * a.w.groups;
  ChunkScaleSpread scales(chunks, a.w.groups, chunks_per_group);
  const float* cs = scales.spread();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i quarters = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = nullptr;
    float bias = 0.0f;
    if (a.w.scales_f16 != nullptr) {
      float* dst = scales.expand_target();
      bias = expand_scales_with_bias(
          a.w.scales_f16 + n * a.w.groups,
          a.w.zero_points != nullptr ? a.w.zero_points + n * a.w.groups : nullptr, a.w.groups,
          a.w.code_bias, xsums, nullptr, dst);
      s = dst;
    } else {
      s = a.w.scales + n * a.w.groups;
      bias = group_bias_term(s, a.w.offsets != nullptr ? a.w.offsets + n * a.w.groups : nullptr,
                             a.w.code_bias, xsums, a.w.groups);
    }
    scales.spread_from(s, a.w.groups);
    __m512 total = _mm512_setzero_ps(), spare = _mm512_setzero_ps();
    // Rows are padded to 64 bytes, activations to whole steps (zeros): a partial last step
    // reads inside both, and its missing chunks have zero scales.
    for (int64_t c = 0; c < chunks; c += 4) {
      prefetch_ahead(row + c * 16);
      const __m512i b = _mm512_loadu_si512(row + c * 16);
      const __m512i x0 = _mm512_loadu_si512(xq + c * kChunk);       // chunks c, c + 1
      const __m512i x1 = _mm512_loadu_si512(xq + c * kChunk + 64);  // chunks c + 2, c + 3
      const __m512i x_low = _mm512_shuffle_i32x4(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));
      const __m512i x_high = _mm512_shuffle_i32x4(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
      __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(b, low4), x_low);
      d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(b, 4), low4), x_high);
      const __m512 scale =
          _mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(_mm_loadu_ps(cs + c)));
      total = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), scale, total);
      std::swap(total, spare);
    }
    const __m512 sum = _mm512_add_ps(total, spare);
    const float out =
        horizontal_sum(_mm256_add_ps(_mm512_castps512_ps256(sum), _mm512_extractf32x8_ps(sum, 1))) +
        bias;
    a.w.y[r * a.w.y_stride + n] = out * a.x_scale[r];
  }
}
#endif

/// W4A8: from kTileMinTokens[0] tokens on, channel tiles (gemv_int8_tiles.h: 1.3-1.8x the
/// per-row kernel with 4 tokens per decoded chunk that it replaced, 1 thread, M = 8..512);
/// below, one token at a time along the rows, which streams the weights once with no regrouping.
inline void gemv_int8_w4_avx2(const GemvInt8Args& a) {
  if (a.m >= kTileMinTokens[0]) {
    gemv_int8_tiled_avx2<4>(a);
    return;
  }
#if defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VNNI__)
  for (int64_t r = 0; r < a.m; ++r) gemv_int8_w4_row_avx512(a, r);
#else
  for (int64_t r = 0; r < a.m; ++r) gemv_int8_w4_row_avx2(a, r);
#endif
}
#endif

#if defined(__AVX2__)
/// W8A8 for Rows tokens at once: each weight chunk is loaded once and meets every token. With
/// VNNI through one vpdpbusd of the unsigned codes u, and q . x = u . x + qmin sum x per group
/// (in wrapping 32-bit arithmetic, which is exact: the true dot fits, whatever u . x does).
/// Without, the chunk is made signed and split into |q| once, then sign + maddubs + madd per
/// token: q = u + qmin may be -128, whose magnitude fits maddubs' unsigned operand, so
/// |q| * sign(x, q) is exact (activations stay within +-127) and below saturation
/// (2 * 128 * 127 < 32768). Per group the int32 dot is reduced and combined in double, as in
/// the portable specification (gemv_int8).
/// One token keeps one vpdpbusd chain on purpose: four independent chains ran 2.3x faster with
/// the weights in L2 (27 -> 64 GB/s, 1 thread) but 0.84x from DRAM (16.0 -> 13.5 GB/s 1 thread,
/// 29 -> 26 on 2; any prefetch distance). On Sapphire Rapids (with its L1 prefetch 1 KiB ahead)
/// a loop that outruns DRAM streams worse than one that just keeps up. Zen 5, without that
/// prefetch, streams best with the fastest loop: where DecodeTuning::wide_8bit_single_token
/// holds, one token goes through gemv_int8_w8_token_vnni512.
template <int Rows>
void gemv_int8_w8_rows_avx2(const GemvInt8Args& a, int64_t r0) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const __m256i ones16 = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(-128);
  const int8_t* xq[Rows];
  for (int r = 0; r < Rows; ++r) xq[r] = a.xq + (r0 + r) * a.xq_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = a.w.scales + n * a.w.groups;
    double out[Rows] = {};
    for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
      const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
      __m256i acc[Rows];
      for (int r = 0; r < Rows; ++r) acc[r] = _mm256_setzero_si256();
      for (int64_t c = c0; c < c1; ++c) {
        prefetch_at_line_start(row, c * 32);
        const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 32));
        if constexpr (kHaveVnni) {
          for (int r = 0; r < Rows; ++r) {
            acc[r] =
                dot_u8_s8(acc[r], u,
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[r] + c * kChunk)));
          }
          continue;
        }
        const __m256i q = _mm256_add_epi8(u, flip);
        const __m256i q_abs = _mm256_abs_epi8(q);
        for (int r = 0; r < Rows; ++r) {
          const __m256i x =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[r] + c * kChunk));
          acc[r] = _mm256_add_epi32(
              acc[r],
              _mm256_madd_epi16(_mm256_maddubs_epi16(q_abs, _mm256_sign_epi8(x, q)), ones16));
        }
      }
      for (int r = 0; r < Rows; ++r) {
        int32_t dot = horizontal_sum_i32(acc[r]);
        if constexpr (kHaveVnni) {
          const auto qmin_sum = static_cast<int32_t>(a.w.code_bias) *
                                static_cast<int32_t>(a.xq_group_sums[(r0 + r) * a.w.groups + g]);
          dot = static_cast<int32_t>(static_cast<uint32_t>(dot) + static_cast<uint32_t>(qmin_sum));
        }
        out[r] += static_cast<double>(s[g]) * dot;
        if (a.w.offsets != nullptr) {
          out[r] += static_cast<double>(a.w.offsets[n * a.w.groups + g]) *
                    a.xq_group_sums[(r0 + r) * a.w.groups + g];
        }
      }
    }
    for (int r = 0; r < Rows; ++r)
      a.w.y[(r0 + r) * a.w.y_stride + n] = static_cast<float>(out[r] * a.x_scale[r0 + r]);
  }
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// A group's share of one output of the VNNI W8A8 kernels, from the dot of the unsigned codes:
/// s (u . xq + qmin sum xq) in wrapping int32 (exact: the true dot fits, whatever u . xq does),
/// plus the offset (if any) times sum xq, in double as the portable specification (gemv_int8).
inline double w8_group_term(int32_t unsigned_dot, float qmin, float xsum, float scale,
                            const float* offset) {
  const auto qmin_sum = static_cast<int32_t>(qmin) * static_cast<int32_t>(xsum);
  const auto dot =
      static_cast<int32_t>(static_cast<uint32_t>(unsigned_dot) + static_cast<uint32_t>(qmin_sum));
  double out = static_cast<double>(scale) * dot;
  if (offset != nullptr) out += static_cast<double>(*offset) * xsum;
  return out;
}

/// One token of W8A8 at 512 bits: two chunks a vpdpbusd (groups of an even number of chunks, or
/// one group), reduced per group as gemv_int8_w8_rows_avx2.
inline void gemv_int8_w8_token_vnni512(const GemvInt8Args& a, int64_t r) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int8_t* xq = a.xq + r * a.xq_stride;
  const float* xsums = a.xq_group_sums + r * a.w.groups;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = a.w.scales + n * a.w.groups;
    double out = 0.0;
    for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
      const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
      __m512i acc = _mm512_setzero_si512();
      // Rows are padded to 64 bytes and xq to 128 (zeros): an odd last chunk reads inside both.
      for (int64_t c = c0; c < c1; c += 2) {
        prefetch_ahead(row + c * kChunk);
        acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(row + c * kChunk),
                                  _mm512_loadu_si512(xq + c * kChunk));
      }
      out += w8_group_term(_mm512_reduce_add_epi32(acc), a.w.code_bias, xsums[g], s[g],
                           a.w.offsets != nullptr ? a.w.offsets + n * a.w.groups + g : nullptr);
    }
    a.w.y[r * a.w.y_stride + n] = static_cast<float>(out * a.x_scale[r]);
  }
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// Per-channel W8A8 on the rows as packed: Rows weight rows x Tokens tokens of int32 lanes, one
/// 64-byte load of each row and each token per step and a vpdpbusd per pair, each pair's lanes
/// summed once at the end (one group) and finished as gemv_int8_w8_token_vnni512 does. No
/// regrouping of the codes, which in 16-channel tiles took as long as the products at 8 tokens.
template <int Rows, int Tokens>
void w8_rows_by_tokens_vnni512(const GemvInt8Args& a, int64_t n0, int64_t r0) {
  const int64_t steps = (a.w.k + 63) / 64;  // rows padded to 64 bytes, xq to 128 (zeros)
  const uint8_t* row[Rows];
  const int8_t* xq[Tokens];
  for (int i = 0; i < Rows; ++i) row[i] = a.w.codes + (n0 + i) * a.w.row_bytes;
  for (int t = 0; t < Tokens; ++t) xq[t] = a.xq + (r0 + t) * a.xq_stride;
  // Into L2, the same line of the next block's rows (Rows rows on): prefetch_ahead's 8 KiB
  // along a row fell among this block's own rows. Streamed, M = 8: 390 -> 700 GOPS (two blocks
  // ahead: 610-680).
  auto load_row = [&](int i, int64_t s) {
    _mm_prefetch(reinterpret_cast<const char*>(row[i] + Rows * a.w.row_bytes + s * 64),
                 _MM_HINT_T1);
    return _mm512_loadu_si512(row[i] + s * 64);
  };
  __m512i acc[Rows][Tokens];
  if constexpr (Rows == 4 && Tokens == 4) {
    // Named accumulators: as an array GCC 12 copied each into a fresh register before every
    // vpdpbusd and back after (32 moves a step beside 16 products). Zen 5, 4096^2, 2 threads,
    // in cache M = 4 / 8 / 12: 800-990 / 975-1000 / 950-960 -> 1035-1070 / 1160-1190 /
    // 1080-1115 GOPS; streamed M = 8: 745 -> 700-725 (the faster loop waits on DRAM more: the
    // L2 prefetch spread over passes, or sequential, or an L1 one beside it, only lost more).
    __m512i d00 = _mm512_setzero_si512(), d01 = d00, d02 = d00, d03 = d00, d10 = d00, d11 = d00,
            d12 = d00, d13 = d00, d20 = d00, d21 = d00, d22 = d00, d23 = d00, d30 = d00, d31 = d00,
            d32 = d00, d33 = d00;
    for (int64_t s = 0; s < steps; ++s) {
      const __m512i w0 = load_row(0, s), w1 = load_row(1, s), w2 = load_row(2, s),
                    w3 = load_row(3, s);
#define QK_TOKEN(t)                                       \
  {                                                       \
    const __m512i x = _mm512_loadu_si512(xq[t] + s * 64); \
    d0##t = _mm512_dpbusd_epi32(d0##t, w0, x);            \
    d1##t = _mm512_dpbusd_epi32(d1##t, w1, x);            \
    d2##t = _mm512_dpbusd_epi32(d2##t, w2, x);            \
    d3##t = _mm512_dpbusd_epi32(d3##t, w3, x);            \
  }
      QK_TOKEN(0) QK_TOKEN(1) QK_TOKEN(2) QK_TOKEN(3)
#undef QK_TOKEN
    }
    const __m512i named[4][4] = {
        {d00, d01, d02, d03}, {d10, d11, d12, d13}, {d20, d21, d22, d23}, {d30, d31, d32, d33}};
    for (int i = 0; i < 4; ++i)
      for (int t = 0; t < 4; ++t) acc[i][t] = named[i][t];
  } else {
    for (auto& per_row : acc)
      for (auto& v : per_row) v = _mm512_setzero_si512();
    for (int64_t s = 0; s < steps; ++s) {
      __m512i w[Rows];
      for (int i = 0; i < Rows; ++i) w[i] = load_row(i, s);
#pragma GCC unroll 8
      for (int t = 0; t < Tokens; ++t) {
        const __m512i x = _mm512_loadu_si512(xq[t] + s * 64);
#pragma GCC unroll 4
        for (int i = 0; i < Rows; ++i) acc[i][t] = _mm512_dpbusd_epi32(acc[i][t], w[i], x);
      }
    }
  }
  for (int i = 0; i < Rows; ++i) {
    const int64_t n = n0 + i;
    for (int t = 0; t < Tokens; ++t) {
      const double out = w8_group_term(_mm512_reduce_add_epi32(acc[i][t]), a.w.code_bias,
                                       a.xq_group_sums[(r0 + t) * a.w.groups], a.w.scales[n],
                                       a.w.offsets != nullptr ? a.w.offsets + n : nullptr);
      a.w.y[(r0 + t) * a.w.y_stride + n] = static_cast<float>(out * a.x_scale[r0 + t]);
    }
  }
}

/// Rows rows from n0 for every token, 4 a pass. 4 rows x 4 tokens beat 2 x 8 and 3 x 6 (Zen 5,
/// 4096^2 in cache, 2 threads, M = 8 / 32: 820 / 870 GOPS against 590-620 / 570-590).
template <int Rows>
void w8_rows_all_tokens_vnni512(const GemvInt8Args& a, int64_t n0) {
  int64_t r = 0;
  for (; r + 4 <= a.m; r += 4) w8_rows_by_tokens_vnni512<Rows, 4>(a, n0, r);
  if (a.m - r == 3) w8_rows_by_tokens_vnni512<Rows, 3>(a, n0, r);
  if (a.m - r == 2) w8_rows_by_tokens_vnni512<Rows, 2>(a, n0, r);
  if (a.m - r == 1) w8_rows_by_tokens_vnni512<Rows, 1>(a, n0, r);
}

/// Per-channel W8A8 for a few tokens (kWideRowsMaxTokens8Bit): 4 rows at a time (the rows' codes
/// stay in L1 for every token pass).
inline void gemv_int8_w8_per_channel_vnni512(const GemvInt8Args& a) {
  int64_t n = a.w.n_begin;
  for (; n + 4 <= a.w.n_end; n += 4) w8_rows_all_tokens_vnni512<4>(a, n);
  for (; n < a.w.n_end; ++n) w8_rows_all_tokens_vnni512<1>(a, n);
}
#endif

template <int Bits>
void gemv_int8(const GemvInt8Args& a) {
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
  if (a.w.channel_tiles) {  // as stored: the tiles take every token count
    gemv_int8_tiled_avx2<Bits>(a);
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (Bits == 4) {
    gemv_int8_w4_avx2(a);
    return;
  } else {
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    constexpr int64_t kMinTokens = kWideTileMinTokens8Bit;  // 16-channel tiles
#else
    constexpr int64_t kMinTokens = kTileMinTokens[1];
#endif
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    if (a.w.groups == 1 && a.m >= 2 && a.m < kWideRowsMaxTokens8Bit) {
      gemv_int8_w8_per_channel_vnni512(a);
      return;
    }
#endif
    if (a.m >= kMinTokens) {
      gemv_int8_tiled_avx2<8>(a);
      return;
    }
    int64_t r = 0;
    for (; r + 4 <= a.m; r += 4) gemv_int8_w8_rows_avx2<4>(a, r);
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    const int64_t cpg = a.w.group_size >= a.w.k ? 1 : a.w.group_size / kChunk;
    if (decode_tuning.wide_8bit_single_token && (a.w.groups == 1 || cpg % 2 == 0)) {
      for (; r < a.m; ++r) gemv_int8_w8_token_vnni512(a, r);
      return;
    }
#endif
    for (; r < a.m; ++r) gemv_int8_w8_rows_avx2<1>(a, r);
    return;
  }
#endif
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  // 8-bit codes become signed inside the dot; 4-bit codes need qmin * sum(x) per group.
  const bool bias_per_group = Bits != 8;
  const auto qmin = static_cast<int32_t>(a.w.code_bias);
  for (int64_t r = 0; r < a.m; ++r) {
    const int8_t* xq = a.xq + r * a.xq_stride;
    const float* xsums = a.xq_group_sums + r * a.w.groups;
    for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
      const uint8_t* row = a.w.codes + n * a.w.row_bytes;
      const float* s = a.w.scales + n * a.w.groups;
      double out = 0.0;
      for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
        const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
        int32_t dot = 0;
        for (int64_t c = c0; c < c1; ++c)
          dot += dot_chunk_int<Bits>(xq + c * kChunk, row, c, bias_per_group ? 0 : qmin);
        if (bias_per_group) dot += qmin * static_cast<int32_t>(xsums[g]);
        out += static_cast<double>(s[g]) * dot;
        if (a.w.offsets != nullptr)
          out += static_cast<double>(a.w.offsets[n * a.w.groups + g]) * xsums[g];
      }
      a.w.y[r * a.w.y_stride + n] = static_cast<float>(out * a.x_scale[r]);
    }
  }
}

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
/// Where the int16 kernels read each of Rows tokens: activations and chunk scales.
template <int Rows>
struct Int16Tokens {
  const int16_t* xh[Rows];
  const float* sx[Rows];
  Int16Tokens(const GemvInt16Args& a, int64_t r0) {
    for (int r = 0; r < Rows; ++r) {
      xh[r] = a.xh + (r0 + r) * a.xh_stride;
      sx[r] = a.chunk_scales + (r0 + r) * a.chunks;
    }
  }
};

/// y[t, n] from a token's running total, plus what qmin and the offsets add through the group
/// sums of its rounded x. Callers unroll their loop over the tokens: a rolled loop indexing the
/// totals kept them in memory, with a store per token and chunk.
template <bool PerChannel>
inline void store_int16_total(const GemvInt16Args& a, int64_t t, int64_t n, __m256 sum) {
  const float* s = a.w.scales + n * a.w.groups;
  const float* off = a.w.offsets != nullptr ? a.w.offsets + n * a.w.groups : nullptr;
  if constexpr (PerChannel) sum = _mm256_mul_ps(sum, _mm256_broadcast_ss(s));
  a.w.y[t * a.w.y_stride + n] =
      horizontal_sum(sum) +
      group_bias_term(s, off, a.w.code_bias, a.xh_group_sums + t * a.w.groups, a.w.groups);
}
#endif

#if defined(__AVX2__)
/// Chunk c of unsigned codes as two vectors of 16 int16 lanes (elements 0..15 and 16..31).
template <int Bits, bool Prefetch = true>
inline void codes_i16_chunk(const uint8_t* row, int64_t c, __m256i* w0, __m256i* w1) {
  auto widen = [](const uint8_t* p) {
    return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  if constexpr (Prefetch) {
    prefetch_at_line_start(row, c * Bits * 4);
  }
  if constexpr (Bits == 8) {
    *w0 = widen(row + c * 32);
    *w1 = widen(row + c * 32 + 16);
  } else {
    const __m256i b = widen(row + c * 16);
    *w0 = _mm256_and_si256(b, _mm256_set1_epi16(0x0F));
    *w1 = _mm256_srli_epi16(b, 4);
  }
}

/// sum over the chunk of xh * u in 8 int32 lanes (u <= 255, |xh| <= 32767: no overflow).
inline __m256i dot_i16(__m256i w0, __m256i w1, const int16_t* xh) {
  const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xh));
  const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xh + 16));
  return dot_i16_i16(_mm256_madd_epi16(w0, x0), w1, x1);
}

/// Int16-activation GEMV for Rows tokens: each chunk of codes is widened to int16 once and meets
/// every token through two vpmaddwd (2 ops per 16 MACs, against widen + convert + FMA per 8 on
/// float activations); the int32 lanes become floats times the chunk scale (times the group
/// scale, unless PerChannel: then s is applied once at the end). One flat loop over the chunks
/// with a countdown to the next group: a loop nest per group cost a third of the speed at group
/// size 32 and 64. One token alternates two running totals so the FMA latency does not
/// serialise the chunks; several tokens are independent chains already.
/// p[0], p[1] in lanes 0 and 1 (an unaligned 8-byte load: p is only 4-byte aligned).
inline __m128 two_floats(const float* p) {
  return _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

/// cs[c] = sx[c] * s[c / chunks_per_group]: 8 chunks a step where a group spans 1, 2 or 4.
inline void chunk_times_group_scales(const float* sx, const float* s, int64_t chunks,
                                     int64_t chunks_per_group, float* cs) {
  int64_t c = 0;
  if (chunks_per_group == 1) {
    for (; c + 8 <= chunks; c += 8)
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), _mm256_loadu_ps(s + c)));
  } else if (chunks_per_group == 2) {
    const __m256i spread = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    for (; c + 8 <= chunks; c += 8) {
      const __m256 g =
          _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + c / 2)), spread);
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), g));
    }
  } else if (chunks_per_group == 4) {
    const __m256i spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    for (; c + 8 <= chunks; c += 8) {
      const __m128 two = two_floats(s + c / 4);
      const __m256 g = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), spread);
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), g));
    }
  }
  for (int64_t g = c / chunks_per_group; c < chunks; ++g) {  // c is on a group boundary here
    const int64_t end = std::min(chunks, c + chunks_per_group);
    const __m256 scale = _mm256_broadcast_ss(s + g);
    for (; c + 8 <= end; c += 8)
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), scale));
    for (; c < end; ++c) cs[c] = sx[c] * s[g];
  }
}

/// step(c) for c = 0, Step, 2 Step, ... below `chunks` (of Bits-bit codes along `row`), with one
/// prefetch per 64-byte line of codes.
template <int Bits, int Step, class StepFn>
inline void for_each_step_by_line(const uint8_t* row, int64_t chunks, StepFn&& step) {
  constexpr int64_t kChunksPerLine = kLineBytes / (Bits * 4);
  static_assert(kChunksPerLine % Step == 0);
  int64_t c = 0;
  for (; c + kChunksPerLine <= chunks; c += kChunksPerLine) {
    prefetch_ahead(row + c * Bits * 4);
    for (int64_t i = 0; i < kChunksPerLine; i += Step) step(c + i);
  }
  for (; c < chunks; c += Step) step(c);
}

/// A single-token kernel's view of its token and, per row, the folded scales: cs[c] = chunk
/// scale c times the group scale of c (one pass per row, chunk_times_group_scales), plus
/// zeros past the last chunk (kernels that step over 2 or 4 chunks). Buffers are per thread and
/// stay in L1.
class SingleTokenScales {
 public:
  SingleTokenScales(const GemvInt16Args& a, int64_t r0)
      : a_(a),
        r0_(r0),
        chunks_per_group_(a.w.group_size >= a.w.k ? a.chunks : a.w.group_size / kChunk) {
    buffer().resize(static_cast<size_t>(a.chunks + kPadding + 2 * a.w.groups));
    std::fill_n(buffer().begin() + a.chunks, kPadding, 0.0f);
  }
  const int16_t* xh() const { return a_.xh + r0_ * a_.xh_stride; }
  const float* folded() const { return buffer().data(); }
  /// Folds row n's group scales into the chunk scales.
  void fold_row(int64_t n) {
    float* cs = buffer().data();
    const int64_t groups = a_.w.groups;
    if (a_.w.scales_f16 != nullptr && chunks_per_group_ <= 4 && chunks_per_group_ != 3) {
      const uint16_t* h = a_.w.scales_f16 + n * groups;
      prefetch_scales(h, groups);
      const int8_t* z = a_.w.zero_points != nullptr ? a_.w.zero_points + n * groups : nullptr;
      const float* sums = a_.xh_group_sums + r0_ * groups;
      const float* sx = a_.chunk_scales + r0_ * a_.chunks;
      const float qmin = a_.w.code_bias;
      bias_ = chunks_per_group_ == 1
                  ? expand_scales_with_bias<1>(h, z, groups, qmin, sums, sx, cs, a_.chunks)
              : chunks_per_group_ == 2
                  ? expand_scales_with_bias<2>(h, z, groups, qmin, sums, sx, cs, a_.chunks)
                  : expand_scales_with_bias<4>(h, z, groups, qmin, sums, sx, cs, a_.chunks);
      return;
    }
    const RowGroupParams row = row_group_params(a_.w, n, cs + a_.chunks + kPadding);
    chunk_times_group_scales(a_.chunk_scales + r0_ * a_.chunks, row.s, a_.chunks, chunks_per_group_,
                             cs);
    bias_ = group_bias_term(row.s, row.off, a_.w.code_bias, a_.xh_group_sums + r0_ * a_.w.groups,
                            a_.w.groups);
  }
  /// y[token, n] from the row's running total (after fold_row(n)), plus what qmin and the
  /// offsets add through the group sums of the rounded x.
  void store(int64_t n, __m256 total) const {
    a_.w.y[r0_ * a_.w.y_stride + n] = horizontal_sum(total) + bias_;
  }

 private:
  static constexpr int64_t kPadding = 7;  // zero scales past the last chunk: steps of 8 chunks
  static std::vector<float>& buffer() {
    thread_local std::vector<float> b;
    return b;
  }

  const GemvInt16Args& a_;
  int64_t r0_, chunks_per_group_;
  float bias_ = 0.0f;
};

/// One token (decode): per row, each chunk's activation scale is multiplied into its group
/// scale in one vector pass (chunk_times_group_scales), so the chunk loop is widen, two
/// vpmaddwd, convert and one FMA: 1.07-1.12x the per-chunk multiply of gemv_int16_rows_avx2 with
/// the weights in cache (1 thread, interleaved; level when DRAM is the limit). Compact float16
/// scales and int8 zero points are expanded a row at a time into a buffer that stays in L1; at
/// group size 32 in the same pass as the folding and the bias (expand_scales_with_bias).
template <int Bits>
void gemv_int16_single_token_avx2(const GemvInt16Args& a, int64_t r0) {
  SingleTokenScales token(a, r0);
  const int16_t* xh = token.xh();
  const float* cs = token.folded();
  const int64_t chunks = a.chunks;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    token.fold_row(n);
    __m256 total = _mm256_setzero_ps(), spare = _mm256_setzero_ps();
    auto chunk = [&](int64_t c) {
      __m256i w0, w1;
      codes_i16_chunk<Bits, false>(row, c, &w0, &w1);
      total = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_i16(w0, w1, xh + c * kChunk)),
                              _mm256_broadcast_ss(cs + c), total);
      std::swap(total, spare);
    };
    for_each_step_by_line<Bits, 1>(row, chunks, chunk);
    token.store(n, _mm256_add_ps(total, spare));
  }
}

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

/// One token with 4-bit codes and split-byte activations (layout {4, 16, split}), four chunks
/// per 512-bit step: 64 bytes of codes give 64 low nibbles (chunk c + q's elements 0..15 in
/// bytes 16q..16q+15) and 64 high ones (elements 16..31); vpdpbusd meets them with the high
/// bytes of the activations, the sum is shifted left 8, and two more meet the low bytes with the
/// nibbles (unsigned low bytes times codes as signed bytes, 0..15). Int32 lanes 4q..4q+3 belong
/// to chunk c + q, each quarter times its folded scale. Per four chunks 11 ops, 7 of them on
/// port 0, where the int16 kernel on {2, 16} it replaced took 16 (8 on port 0): 1.12x in L1,
/// 1.03-1.05x from DRAM on 1 thread (2 threads: within noise).
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

inline void gemv_int16_u4_single_token_vnni512(const GemvInt16Args& a, int64_t r0) {
  // Constants made inside the step (hoisted by the compiler): captured, they travelled on the
  // stack and were reloaded every step.
  single_token_split_rows<4, 4>(a, r0, [](const uint8_t* codes, const int8_t* x, const float* s) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    const __m512i quarters = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i b = _mm512_loadu_si512(codes);
    const __m512i lo = _mm512_and_si512(b, low4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
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
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
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
      if constexpr (Rows == 8) {
        // Named accumulators and the quads unrolled: as arrays (or with the quad loop rolled)
        // GCC 12 copied them between registers around every vpdpbusd and spilled some. W4A16
        // g32, 4096^2 in cache, 2 threads, M = 8 / 32 / 128 / 512: 480 / 510-560 / 600 / 590 ->
        // 540 / 605-660 / 710 / 690 GFLOPS.
        __m512i h0 = _mm512_setzero_si512(), h1 = h0, h2 = h0, h3 = h0, h4 = h0, h5 = h0, h6 = h0,
                h7 = h0, l0 = h0, l1 = h0, l2 = h0, l3 = h0, l4 = h0, l5 = h0, l6 = h0, l7 = h0;
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          __m512i lo, hi;
          nibbles(q, &lo, &hi);
#define QK_TOKEN(r)                                      \
  {                                                      \
    const uint8_t* x = xb[r] + at + 4 * q;               \
    h##r = _mm512_dpbusd_epi32(h##r, lo, quad(x));       \
    h##r = _mm512_dpbusd_epi32(h##r, hi, quad(x + 128)); \
    l##r = _mm512_dpbusd_epi32(l##r, quad(x + 64), lo);  \
    l##r = _mm512_dpbusd_epi32(l##r, quad(x + 192), hi); \
  }
          QK_TOKEN(0)
          QK_TOKEN(1) QK_TOKEN(2) QK_TOKEN(3) QK_TOKEN(4) QK_TOKEN(5) QK_TOKEN(6) QK_TOKEN(7)
#undef QK_TOKEN
        }
        const __m512i named_high[8] = {h0, h1, h2, h3, h4, h5, h6, h7};
        const __m512i named_low[8] = {l0, l1, l2, l3, l4, l5, l6, l7};
        for (int r = 0; r < 8; ++r) high[r] = named_high[r], low[r] = named_low[r];
      } else {
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
      }
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m512i d = _mm512_add_epi32(_mm512_slli_epi32(high[r], 8), low[r]);
        total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                   _mm512_mul_ps(scale, _mm512_set1_ps(sx[r][c])), total[r]);
      }
    }
    const __m512 bias = _mm512_loadu_ps(t.biases.data() + g * 16);
    for (int r = 0; r < Rows; ++r)
      total[r] = _mm512_fmadd_ps(bias, _mm512_set1_ps(xsums[r][g]), total[r]);
  }
  const auto valid = static_cast<__mmask16>((1u << std::min<int64_t>(16, a.w.n_end - n0)) - 1);
  for (int r = 0; r < Rows; ++r)
    _mm512_mask_storeu_ps(a.w.y + (r0 + r) * a.w.y_stride + n0, valid, total[r]);
}

/// The slice through 16-channel tiles of 4-bit codes, 8 tokens a pass. Zen 5, 4096^2 in cache,
/// 2 threads, against gemv_int16_u4_tokens_vnni512: W4A16 g32 M = 2 / 3 / 4 / 8 / 32 / 128
/// 170 / 155 / 290 / 253 / 258 / 276 -> 240 / 235 / 425 / 482 / 560 / 545 GFLOPS; per channel
/// M = 32 340 -> 670, g128 M = 32 280 -> 650. It also beats dequantized tiles + sgemm at any M
/// (g32 M = 256 / 512 / 1024: 168 / 195 / 215 against 530 / 560 / 550), so at the avx512 level
/// the int16 GEMV takes 4-bit weights at every M (gemm_min_rows).
inline void gemv_int16_u4_tiled_vnni512(const GemvInt16Args& a) {
  thread_local ChannelTile tile;
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += 16) {
    fill_channel_tile16<4>(a.w, n0, tile);
    int64_t r = 0;
    for (; r + 8 <= a.m; r += 8) u4_tile_tokens_i16<8>(a, tile, r, n0);
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

template <int Bits, int Rows, bool PerChannel>
void gemv_int16_rows_avx2(const GemvInt16Args& a, int64_t r0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const Int16Tokens<Rows> tokens(a, r0);
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = a.w.scales + n * a.w.groups;
    __m256 total[Rows], spare = _mm256_setzero_ps();
    for (auto& t : total) t = _mm256_setzero_ps();
    GroupScaleCursor group(s, chunks_per_group);
    for (int64_t c = 0; c < chunks; ++c) {
      __m256i w0, w1;
      codes_i16_chunk<Bits>(row, c, &w0, &w1);
      const __m256 gs = _mm256_broadcast_ss(group.scale);
      for (int r = 0; r < Rows; ++r) {
        __m256 scale = _mm256_broadcast_ss(tokens.sx[r] + c);
        if constexpr (!PerChannel) scale = _mm256_mul_ps(scale, gs);
        total[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_i16(w0, w1, tokens.xh[r] + c * kChunk)),
                                   scale, total[r]);
      }
      if constexpr (Rows == 1) std::swap(total[0], spare);
      group.step();
    }
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r)
      store_int16_total<PerChannel>(a, r0 + r, n,
                                    Rows == 1 ? _mm256_add_ps(total[r], spare) : total[r]);
  }
}

/// Chunks c and c + 1 of 2-bit codes widened by one 16-byte load: vector i holds elements
/// 8i..8i+7 of chunk c, then of chunk c + 1 (the activations' order for 2-bit codes).
template <bool Prefetch = true>
inline void codes_i16_pair_w2(const uint8_t* row, int64_t c, __m256i w[4]) {
  if constexpr (Prefetch) prefetch_at_line_start(row, c * 8);
  const __m256i b =
      _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 8)));
  const __m256i three = _mm256_set1_epi16(3);
  w[0] = _mm256_and_si256(b, three);
  w[1] = _mm256_and_si256(_mm256_srli_epi16(b, 2), three);
  w[2] = _mm256_and_si256(_mm256_srli_epi16(b, 4), three);
  w[3] = _mm256_srli_epi16(b, 6);
}

/// The int32 lanes of a pair of 2-bit chunks (codes_i16_pair_w2) times their 64 activations:
/// two independent chains of two dot steps, joined once.
inline __m256i dot_i16_pair_w2(const __m256i w[4], const int16_t* x) {
  auto xs = [&](int i) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16 * i)); };
  return _mm256_add_epi32(dot_i16_i16(_mm256_madd_epi16(w[0], xs(0)), w[1], xs(1)),
                          dot_i16_i16(_mm256_madd_epi16(w[2], xs(2)), w[3], xs(3)));
}

/// One token with 2-bit codes: gemv_int16_single_token_avx2's scheme on pairs of chunks (lanes
/// 0..3 from chunk c, 4..7 from c + 1, each half times its folded scale).
inline void gemv_int16_w2_single_token_avx2(const GemvInt16Args& a, int64_t r0) {
  SingleTokenScales token(a, r0);
  const int16_t* xh = token.xh();
  const float* cs = token.folded();  // cs[chunks] = 0: an odd last chunk pairs with zero padding
  const __m256i halves = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    token.fold_row(n);
    __m256 total = _mm256_setzero_ps(), spare = _mm256_setzero_ps();
    auto pair_of_chunks = [&](int64_t c) {
      __m256i w[4];
      codes_i16_pair_w2<false>(row, c, w);
      const __m256i d = dot_i16_pair_w2(w, xh + c * kChunk);
      const __m128 pair = two_floats(cs + c);
      const __m256 scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(pair), halves);
      total = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, total);
      std::swap(total, spare);
    };
    for_each_step_by_line<2, 2>(row, a.chunks, pair_of_chunks);
    token.store(n, _mm256_add_ps(total, spare));
  }
}

/// 2-bit codes: a pair of chunks per step, int32 lanes 0..3 from chunk c and 4..7 from c + 1, so
/// the scales are per half: (scale of c) x 4, (scale of c + 1) x 4.
template <int Rows, bool PerChannel>
void gemv_int16_w2_rows_avx2(const GemvInt16Args& a, int64_t r0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  auto halves = [](const float* lo, const float* hi) {
    return _mm256_set_m128(_mm_broadcast_ss(hi), _mm_broadcast_ss(lo));
  };
  const Int16Tokens<Rows> tokens(a, r0);
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = a.w.scales + n * a.w.groups;
    __m256 total[Rows], spare = _mm256_setzero_ps();
    for (auto& t : total) t = _mm256_setzero_ps();
    GroupScaleCursor group(s, chunks_per_group);
    for (int64_t c = 0; c < chunks; c += 2) {
      __m256i w[4];
      codes_i16_pair_w2(row, c, w);
      const bool pair = c + 1 < chunks;  // an odd last chunk pairs with zero padding
      __m256 ws = _mm256_setzero_ps();
      if constexpr (!PerChannel) {
        const float* s0 = group.scale;
        group.step();
        ws = halves(s0, pair ? group.scale : s0);
        if (pair) group.step();
      }
      for (int r = 0; r < Rows; ++r) {
        const __m256i d = dot_i16_pair_w2(w, tokens.xh[r] + c * kChunk);
        __m256 scale = halves(tokens.sx[r] + c, tokens.sx[r] + c + (pair ? 1 : 0));
        if constexpr (!PerChannel) scale = _mm256_mul_ps(scale, ws);
        total[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, total[r]);
      }
      if constexpr (Rows == 1) std::swap(total[0], spare);
    }
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r)
      store_int16_total<PerChannel>(a, r0 + r, n,
                                    Rows == 1 ? _mm256_add_ps(total[r], spare) : total[r]);
  }
}

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
      if (int16_single_token_shape(a.w.groups, a.w.group_size)) {
        gemv_int16_w2_single_token_avx2(a, m);
      } else {
        gemv_int16_w2_rows_avx2<1, PerChannel>(a, m);
      }
    }
  } else {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
    if (Bits == 4 && a.layout == Int16Layout{4, 16, true} &&
        !(a.m == 1 && (a.w.groups == 1 || int16_single_token_shape(a.w.groups, a.w.group_size)))) {
#if defined(__AVX512VNNI__)
      if (a.m >= 2) {
        gemv_int16_u4_tiled_vnni512(a);
        return;
      }
#endif
      for (; m < a.m; ++m) gemv_int16_u4_tokens_vnni512<1>(a, m);
      return;
    }
#endif
    for (; m + 4 <= a.m; m += 4) gemv_int16_rows_avx2<Bits, 4, PerChannel>(a, m);
    if (a.m - m == 3) gemv_int16_rows_avx2<Bits, 3, PerChannel>(a, m);
    if (a.m - m == 2) gemv_int16_rows_avx2<Bits, 2, PerChannel>(a, m);
    if (a.m - m == 1) {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
      if (Bits == 4 && a.layout == Int16Layout{4, 16, true}) {
        gemv_int16_u4_single_token_vnni512(a, m);
        return;
      }
      if (Bits == 8 && decode_tuning.wide_8bit_single_token &&
          (a.w.groups == 1 || int16_single_token_shape(a.w.groups, a.w.group_size))) {
        gemv_int16_u8_single_token_vnni512(a, m);
        return;
      }
#endif
      if (int16_single_token_shape(a.w.groups, a.w.group_size)) {
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
      const float* s = a.w.scales + n * a.w.groups;
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

template <int Bits>
void gemv(const GemvArgs& a) {
#if defined(__AVX2__)
#define QK_GEMV_ROWS gemv_rows_avx2
#else
#define QK_GEMV_ROWS gemv_rows
#endif
  int64_t m = 0;
  for (; m + 4 <= a.m; m += 4) QK_GEMV_ROWS<Bits, 4>(a, m);
  switch (a.m - m) {
    case 3:
      QK_GEMV_ROWS<Bits, 3>(a, m);
      break;
    case 2:
      QK_GEMV_ROWS<Bits, 2>(a, m);
      break;
    case 1:
      QK_GEMV_ROWS<Bits, 1>(a, m);
      break;
    default:
      break;
  }
#undef QK_GEMV_ROWS
}

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
constexpr bool kI8ReadsChannelTiles = true;
#else
constexpr bool kI8ReadsChannelTiles = false;
#endif

// The AVX-512 single-token kernels take 64 (4-bit) and 32 bytes (2-bit) of codes a step.
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
constexpr Int16Layout kU4SingleTokenLayout{4, 16, true}, kU2SingleTokenLayout{8, 8, true};
#else
constexpr Int16Layout kU4SingleTokenLayout{1, 32}, kU2SingleTokenLayout{2, 8};
#endif

inline const GemvKernels kGemvTable = {gemv<8>,
                                       gemv<4>,
                                       gemv<2>,
                                       dequantize_row<8>,
                                       dequantize_row<4>,
                                       dequantize_row<2>,
                                       gemv_int8<8>,
                                       gemv_int8<4>,
                                       kI8ReadsChannelTiles,
                                       gemv_int16<8>,
                                       gemv_int16<4>,
                                       gemv_int16<2>,
                                       expand_group_params,
                                       kU4SingleTokenLayout,
                                       kU2SingleTokenLayout};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

// Weight-only GEMV/small-GEMM kernels, written once in portable C++ with explicit vector lanes
// (independent accumulators the compiler maps to SIMD registers) and compiled per ISA.
// QK_ISA_NAMESPACE names the instantiation.
#pragma once

#include <algorithm>
#include <cstdint>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "gemv.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

constexpr int kChunk = 32;  // elements decoded at once

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
  const int64_t full_chunks = a.k / kChunk;
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.n_begin; n < a.n_end; ++n) {
    const uint8_t* row = a.codes + n * a.row_bytes;
    const float* s = a.scales + n * a.groups;
    const float* off = a.offsets + n * a.groups;
    alignas(64) float acc[Rows][kChunk] = {};
    alignas(64) float w[kChunk];
    for (int64_t c = 0; c < full_chunks; ++c) {
      decode_chunk<Bits>(row, c, w);
      const float scale = s[(c * kChunk) / a.group_size];
      for (int j = 0; j < kChunk; ++j) w[j] = (w[j] + a.code_bias) * scale;
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
    if (full_chunks * kChunk < a.k) {  // tail of K: part of the last group
      decode_chunk<Bits>(row, full_chunks, w);
      const float scale = s[a.groups - 1];
      for (int r = 0; r < Rows; ++r) {
        for (int64_t j = 0; j < a.k - full_chunks * kChunk; ++j) {
          out[r] += xr[r][full_chunks * kChunk + j] * ((w[j] + a.code_bias) * scale);
        }
      }
    }
    for (int r = 0; r < Rows; ++r) {
      const float* sums = a.x_group_sums + (m0 + r) * a.groups;
      double offset_term = 0.0;  // per group, not per element: double costs nothing here
      for (int64_t g = 0; g < a.groups; ++g) offset_term += static_cast<double>(off[g]) * sums[g];
      a.y[(m0 + r) * a.y_stride + n] = static_cast<float>(out[r] + offset_term);
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

template <int Bits>
void gemv(const GemvArgs& a) {
  int64_t m = 0;
  for (; m + 4 <= a.m; m += 4) gemv_rows<Bits, 4>(a, m);
  switch (a.m - m) {
    case 3:
      gemv_rows<Bits, 3>(a, m);
      break;
    case 2:
      gemv_rows<Bits, 2>(a, m);
      break;
    case 1:
      gemv_rows<Bits, 1>(a, m);
      break;
    default:
      break;
  }
}

inline const GemvKernels kGemvTable = {gemv<8>,           gemv<4>,           gemv<2>,
                                       dequantize_row<8>, dequantize_row<4>, dequantize_row<2>};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

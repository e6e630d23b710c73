// The row kernels, written once in portable C++ that the compiler vectorises; included by one
// translation unit per ISA, each compiled with its own -m flags (and -ffp-contract=off, so every
// build rounds exactly like the reference). QK_ISA_NAMESPACE names the instantiation.
#pragma once

#include <bit>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <limits>

#include "quant_rows.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

void quantize_bytes(const float* __restrict x, int64_t n, float inv, float zp, float qmin,
                    float qmax, uint8_t* __restrict codes) {
  // clamp(zp + round(v), qmin, qmax) == zp + round(clamp(v, qmin - zp, qmax - zp)) because the
  // bounds are integers and rounding is monotone. Clamping first keeps |v| <= 2^9, where adding
  // and removing 1.5 * 2^23 rounds half-to-even with no select, so the loop vectorises.
  const float lo = qmin - zp, hi = qmax - zp;
  constexpr float kMagic = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] * inv;
    v = v > hi ? hi : v;   // NaN stays NaN here ...
    v = v >= lo ? v : lo;  // ... and becomes qmin here
    const float t = zp + ((v + kMagic) - kMagic);
    codes[i] = static_cast<uint8_t>(static_cast<int32_t>(t));
  }
}

void dequantize_bytes(const uint8_t* __restrict codes, int64_t n, bool is_signed, float s, float zp,
                      float* __restrict y) {
  if (is_signed) {
    const auto* c = reinterpret_cast<const int8_t*>(codes);
    for (int64_t i = 0; i < n; ++i) y[i] = s * (static_cast<float>(c[i]) - zp);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = s * (static_cast<float>(codes[i]) - zp);
  }
}

void pack_nibbles(const uint8_t* __restrict codes, int64_t bytes, uint8_t* __restrict out) {
  for (int64_t i = 0; i < bytes; ++i) {
    out[i] = static_cast<uint8_t>((codes[2 * i] & 0x0F) | (codes[2 * i + 1] << 4));
  }
}

void unpack_nibbles(const uint8_t* __restrict packed, int64_t bytes, bool is_signed,
                    uint8_t* __restrict codes) {
  if (is_signed) {
    for (int64_t i = 0; i < bytes; ++i) {
      const auto b = static_cast<int8_t>(packed[i]);
      codes[2 * i] = static_cast<uint8_t>(static_cast<int8_t>(static_cast<uint8_t>(b << 4)) >> 4);
      codes[2 * i + 1] = static_cast<uint8_t>(b >> 4);
    }
  } else {
    for (int64_t i = 0; i < bytes; ++i) {
      codes[2 * i] = packed[i] & 0x0F;
      codes[2 * i + 1] = packed[i] >> 4;
    }
  }
}

#if defined(__AVX2__)
/// Eight lanes of exact min/max; for the short runs of per-group quantization the portable
/// 16-lane form below costs more in set-up and reduction than in the loop itself.
void minmax(const float* __restrict x, int64_t n, float* mn, float* mx, float* poison) {
  __m256 lo = _mm256_set1_ps(*mn), hi = _mm256_set1_ps(*mx);
  const __m256i exponent = _mm256_set1_epi32(0x7F800000);
  __m256i bad = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(v, lo);  // a NaN in v keeps lo, like `v < lo ? v : lo`
    hi = _mm256_max_ps(v, hi);
    bad = _mm256_or_si256(
        bad, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v), exponent), exponent));
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, lo);
  _mm256_store_ps(h, hi);
  float low = *mn, high = *mx;
  bool any_bad = !_mm256_testz_si256(bad, bad);
  for (int j = 0; j < 8; ++j) {
    low = l[j] < low ? l[j] : low;
    high = h[j] > high ? h[j] : high;
  }
  for (; i < n; ++i) {
    const float v = x[i];
    low = v < low ? v : low;
    high = v > high ? v : high;
    any_bad = any_bad || (std::bit_cast<uint32_t>(v) & 0x7F800000u) == 0x7F800000u;
  }
  *mn = low;
  *mx = high;
  if (any_bad) *poison = std::numeric_limits<float>::quiet_NaN();
}
#else
void minmax(const float* __restrict x, int64_t n, float* mn, float* mx, float* poison) {
  // Independent lanes instead of one running value: the compiler turns each lane update into a
  // vector compare+blend. Non-finite inputs are flagged from their exponent bits.
  constexpr int kLanes = 16;
  float lo[kLanes], hi[kLanes];
  uint32_t bad[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    lo[j] = *mn;
    hi[j] = *mx;
    bad[j] = 0;
  }
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      lo[j] = v < lo[j] ? v : lo[j];
      hi[j] = v > hi[j] ? v : hi[j];
      bad[j] |= static_cast<uint32_t>((std::bit_cast<uint32_t>(v) & 0x7F800000u) == 0x7F800000u);
    }
  }
  for (; i < n; ++i) {
    const float v = x[i];
    lo[0] = v < lo[0] ? v : lo[0];
    hi[0] = v > hi[0] ? v : hi[0];
    bad[0] |= static_cast<uint32_t>((std::bit_cast<uint32_t>(v) & 0x7F800000u) == 0x7F800000u);
  }
  uint32_t any_bad = 0;
  for (int j = 0; j < kLanes; ++j) {
    *mn = lo[j] < *mn ? lo[j] : *mn;
    *mx = hi[j] > *mx ? hi[j] : *mx;
    any_bad |= bad[j];
  }
  if (any_bad) *poison = std::numeric_limits<float>::quiet_NaN();
}

#endif

inline const QuantRowKernels kTable = {quantize_bytes, dequantize_bytes, pack_nibbles,
                                       unpack_nibbles, minmax};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

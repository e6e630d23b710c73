// The row kernels, written once in portable C++ that the compiler vectorises; included by one
// translation unit per ISA, each compiled with its own -m flags (and -ffp-contract=off, so every
// build rounds exactly like the reference). QK_ISA_NAMESPACE names the instantiation.
#pragma once

#include <algorithm>
#include <bit>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <limits>

#include "quant_rows.h"

// GCC 12 takes the undefined pass-through operand of unmasked AVX-512 intrinsics (max,
// conversions, permutes) for a read of an uninitialised variable (as gemv_rows.h notes).
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

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
/// 16-lane form below costs more in set-up and reduction than in the loop itself. Long runs (a
/// token's row) go four vectors a step into independent pairs, which the min/max latency chain
/// of one pair held to 2 floats a cycle (per-token W8A8 at M = 512: 4-7 % of the time).
void minmax(const float* __restrict x, int64_t n, float* mn, float* mx, float* poison) {
  __m256 lo = _mm256_set1_ps(*mn), hi = _mm256_set1_ps(*mx);
  const __m256i exponent = _mm256_set1_epi32(0x7F800000);
  __m256i bad = _mm256_setzero_si256();
  int64_t i = 0;
  if (n >= 64) {
    __m256 lo1 = lo, hi1 = hi, lo2 = lo, hi2 = hi, lo3 = lo, hi3 = hi;
    __m256i bad1 = bad;
    for (; i + 32 <= n; i += 32) {
      const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
      const __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
      lo = _mm256_min_ps(v0, lo);
      hi = _mm256_max_ps(v0, hi);
      lo1 = _mm256_min_ps(v1, lo1);
      hi1 = _mm256_max_ps(v1, hi1);
      lo2 = _mm256_min_ps(v2, lo2);
      hi2 = _mm256_max_ps(v2, hi2);
      lo3 = _mm256_min_ps(v3, lo3);
      hi3 = _mm256_max_ps(v3, hi3);
      // Non-finite: all exponent bits set in any of the four.
      const __m256i e01 = _mm256_or_si256(
          _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v0), exponent), exponent),
          _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v1), exponent), exponent));
      const __m256i e23 = _mm256_or_si256(
          _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v2), exponent), exponent),
          _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v3), exponent), exponent));
      bad = _mm256_or_si256(bad, e01);
      bad1 = _mm256_or_si256(bad1, e23);
    }
    // The partial results are finite or the input was poisoned: their order does not matter.
    lo = _mm256_min_ps(_mm256_min_ps(lo, lo1), _mm256_min_ps(lo2, lo3));
    hi = _mm256_max_ps(_mm256_max_ps(hi, hi1), _mm256_max_ps(hi2, hi3));
    bad = _mm256_or_si256(bad, bad1);
  }
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

#if defined(__AVX2__)
/// One chunk of round_row_int16 (32 elements). GCC leaves the max-with-finiteness loop of the
/// portable version scalar (about 95 ns a chunk); this is about ten times quicker.
inline bool round_chunk_int16(const float* __restrict x, int16_t* __restrict q, float* scale,
                              int32_t* sum) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256i exponent = _mm256_set1_epi32(0x7F800000);
  __m256 v[4], amax = _mm256_setzero_ps();
  __m256i bad = _mm256_setzero_si256();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    const __m256 a = _mm256_and_ps(v[i], abs_mask);
    bad = _mm256_or_si256(
        bad, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(a), exponent), exponent));
    amax = _mm256_max_ps(amax, a);
  }
  if (!_mm256_testz_si256(bad, bad)) return false;
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float top = _mm_cvtss_f32(m4);
  if (!(top > 0.0f)) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_setzero_si256());
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 16), _mm256_setzero_si256());
    *scale = 0.0f;
    *sum = 0;
    return true;
  }
  const __m256d inv = _mm256_set1_pd(32767.0 / static_cast<double>(top));
  const __m256d hi = _mm256_set1_pd(32767.0), lo = _mm256_set1_pd(-32767.0);
  __m128i total = _mm_setzero_si128();
  auto round4 = [&](__m128 f) {  // 4 floats -> 4 int32, in double as the portable version
    const __m256d d = _mm256_round_pd(_mm256_mul_pd(_mm256_cvtps_pd(f), inv),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m128i r = _mm256_cvtpd_epi32(_mm256_max_pd(_mm256_min_pd(d, hi), lo));
    total = _mm_add_epi32(total, r);
    return r;
  };
  for (int i = 0; i < 4; ++i) {
    const __m128i a = round4(_mm256_castps256_ps128(v[i]));
    const __m128i b = round4(_mm256_extractf128_ps(v[i], 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 8 * i), _mm_packs_epi32(a, b));
  }
  total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0x4E));
  total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0xB1));
  *scale = static_cast<float>(static_cast<double>(top) / 32767.0);
  *sum = _mm_cvtsi128_si32(total);
  return true;
}
#else
/// One chunk of round_row_int16, from a whole 32-element block.
inline bool round_chunk_int16(const float* __restrict x, int16_t* __restrict q, float* scale,
                              int32_t* sum) {
  constexpr int kChunk = 32;
  float amax = 0.0f;
  uint32_t bad = 0;
  for (int j = 0; j < kChunk; ++j) {
    const float a = std::fabs(x[j]);
    bad |= static_cast<uint32_t>((std::bit_cast<uint32_t>(a) & 0x7F800000u) == 0x7F800000u);
    amax = amax < a ? a : amax;
  }
  if (bad != 0) return false;
  if (!(amax > 0.0f)) {
    for (int j = 0; j < kChunk; ++j) q[j] = 0;
    *scale = 0.0f;
    *sum = 0;
    return true;
  }
  // In double: 32767 / amax overflows float below 1e-34. Adding and removing 1.5 * 2^52 rounds
  // half to even exactly (|v| <= 32767 here); the clamp only guards the last ulp.
  const double inv = 32767.0 / static_cast<double>(amax), magic = 6755399441055744.0;
  int32_t total = 0;
  for (int j = 0; j < kChunk; ++j) {
    double v = (static_cast<double>(x[j]) * inv + magic) - magic;
    v = v > 32767.0 ? 32767.0 : (v < -32767.0 ? -32767.0 : v);
    q[j] = static_cast<int16_t>(static_cast<int32_t>(v));
    total += q[j];
  }
  *scale = static_cast<float>(static_cast<double>(amax) / 32767.0);
  *sum = total;
  return true;
}
#endif

bool round_row_int16(const float* __restrict x, int64_t k, int16_t* __restrict q,
                     float* __restrict scales, int32_t* __restrict sums) {
  constexpr int64_t kChunk = 32;
  const int64_t whole = k / kChunk;
  for (int64_t c = 0; c < whole; ++c) {
    if (!round_chunk_int16(x + c * kChunk, q + c * kChunk, scales + c, sums + c)) return false;
  }
  if (k % kChunk == 0) return true;
  float tail[kChunk] = {};  // zeros change neither the chunk's max nor its codes
  for (int64_t j = 0; j < k % kChunk; ++j) tail[j] = x[whole * kChunk + j];
  return round_chunk_int16(tail, q + whole * kChunk, scales + whole, sums + whole);
}

int32_t sum_int8(const int8_t* __restrict codes, int64_t n) {
  int32_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += codes[i];
  return sum;
}

/// quantize_token_int8 as minmax, quantize_bytes and sum_int8 state it: the portable form, and
/// the AVX-512 one's for group sizes that are not a multiple of 16.
bool quantize_token_int8_composed(const float* x, int64_t k, int64_t group_size, int8_t* codes,
                                  float* scale, float* group_sums) {
  float mn = 0.0f, mx = 0.0f, poison = 0.0f;
  minmax(x, k, &mn, &mx, &poison);
  if (std::isnan(poison)) return false;
  const float amax = std::max(-mn, mx);
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  *scale = amax > 0.0f ? amax / 127.0f : 1.0f;
  quantize_bytes(x, k, inv, 0.0f, -127.0f, 127.0f, reinterpret_cast<uint8_t*>(codes));
  for (int64_t b = 0, g = 0; group_size > 0 && b < k; b += group_size, ++g)
    group_sums[g] = static_cast<float>(sum_int8(codes + b, std::min(group_size, k - b)));
  return true;
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
/// Two passes over the row where the composed form takes three (and a call per group): max |x|
/// as the unsigned maximum of the magnitude bits, which order like the values and put NaN and
/// Inf above every finite one; then the codes, 64 at a time through two saturating packs, with
/// their int32 values summed per group on the way. The same codes: |x * inv| <= 127 (1 + 2^-23)
/// rounds into [-127, 127], so the clamp never acts, and the conversion rounds half to even as
/// the composed form's magic constant does. (Per-token W8A8 at M = 512 spent 4-5 % of its time
/// in the composed form; 512 tokens of 4096, 1 thread: 700 -> 450 us.)
bool quantize_token_int8(const float* x, int64_t k, int64_t group_size, int8_t* codes, float* scale,
                         float* group_sums) {
  const bool whole_row = group_size == 0 || group_size >= k;  // no sums, or one group
  if (!whole_row && group_size % 16 != 0)
    return quantize_token_int8_composed(x, k, group_size, codes, scale, group_sums);
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  auto bits = [&](const float* p) { return _mm512_and_si512(_mm512_loadu_si512(p), magnitude); };
  __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 64 <= k; i += 64) {
    m0 = _mm512_max_epu32(m0, bits(x + i));
    m1 = _mm512_max_epu32(m1, bits(x + i + 16));
    m2 = _mm512_max_epu32(m2, bits(x + i + 32));
    m3 = _mm512_max_epu32(m3, bits(x + i + 48));
  }
  for (; i + 16 <= k; i += 16) m0 = _mm512_max_epu32(m0, bits(x + i));
  const auto tail = [](int64_t n) { return static_cast<__mmask16>((1u << n) - 1); };
  if (i < k)
    m0 = _mm512_max_epu32(
        m0, _mm512_and_si512(_mm512_maskz_loadu_epi32(tail(k - i), x + i), magnitude));
  const uint32_t top =
      _mm512_reduce_max_epu32(_mm512_max_epu32(_mm512_max_epu32(m0, m1), _mm512_max_epu32(m2, m3)));
  if (top >= 0x7F800000u) return false;
  const float amax = std::bit_cast<float>(top);
  const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  *scale = amax > 0.0f ? amax / 127.0f : 1.0f;
  auto round16 = [&](__m512 v) {
    return _mm512_cvt_roundps_epi32(_mm512_mul_ps(v, inv),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  };
  // The packs interleave 128-bit lanes: dword 4 L + j of their result holds vector j's lane L.
  const __m512i lanes_in_order =
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const int64_t run = whole_row ? k : group_size;
  for (int64_t b = 0, g = 0; b < k; b += run, ++g) {
    const int64_t end = std::min(k, b + run);
    __m512i sum = _mm512_setzero_si512();
    int64_t j = b;
    for (; j + 64 <= end; j += 64) {
      const __m512i q0 = round16(_mm512_loadu_ps(x + j)), q1 = round16(_mm512_loadu_ps(x + j + 16));
      const __m512i q2 = round16(_mm512_loadu_ps(x + j + 32)),
                    q3 = round16(_mm512_loadu_ps(x + j + 48));
      sum = _mm512_add_epi32(sum,
                             _mm512_add_epi32(_mm512_add_epi32(q0, q1), _mm512_add_epi32(q2, q3)));
      const __m512i packed =
          _mm512_packs_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3));
      _mm512_storeu_si512(codes + j, _mm512_permutexvar_epi32(lanes_in_order, packed));
    }
    for (; j + 16 <= end; j += 16) {
      const __m512i q = round16(_mm512_loadu_ps(x + j));
      sum = _mm512_add_epi32(sum, q);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + j), _mm512_cvtsepi32_epi8(q));
    }
    if (j < end) {  // the row's last elements (other groups are whole multiples of 16)
      const __m512i q = round16(_mm512_maskz_loadu_ps(tail(end - j), x + j));  // zeros: codes 0
      sum = _mm512_add_epi32(sum, q);
      _mm512_mask_cvtsepi32_storeu_epi8(codes + j, tail(end - j), q);
    }
    if (group_size > 0) group_sums[g] = static_cast<float>(_mm512_reduce_add_epi32(sum));
  }
  return true;
}
#else
bool quantize_token_int8(const float* x, int64_t k, int64_t group_size, int8_t* codes, float* scale,
                         float* group_sums) {
  return quantize_token_int8_composed(x, k, group_size, codes, scale, group_sums);
}
#endif

inline const QuantRowKernels kTable = {
    quantize_bytes, dequantize_bytes, pack_nibbles, unpack_nibbles,
    minmax,         round_row_int16,  sum_int8,     quantize_token_int8};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

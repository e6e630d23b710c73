// Integer dot-product steps of the per-ISA kernels: one VNNI instruction where the TU is built
// for AVX-512 VNNI (the avx512 level) or AVX-VNNI (avx2_vnni), the AVX2 sequence it replaces
// elsewhere. Include it after defining QK_ISA_NAMESPACE (each ISA's TU compiles its own copy, as
// vector_sum.h says why).
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstdint>

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
/// Whether vpdpbusd / vpdpwssd are there: 8-bit weights can then stay unsigned (no sign trick),
/// since one instruction multiplies unsigned by signed bytes into int32 without saturating.
constexpr bool kHaveVnni = true;
#else
constexpr bool kHaveVnni = false;
#endif

/// acc + in each int32 lane the sum of the 4 products u * s of its bytes (u unsigned, s
/// signed). Without VNNI through maddubs, whose int16 pair sums saturate: callers keep
/// 2 * max u * max |s| below 32768 there (4-bit codes: 2 * 15 * 127).
inline __m256i dot_u8_s8(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/// acc + in each int32 lane the sum of the 2 products a * b of its int16 halves.
inline __m256i dot_i16_i16(__m256i acc, __m256i a, __m256i b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(acc, a, b);
#elif defined(__AVXVNNI__)
  return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

#if defined(__AVX512BW__)
/// Bits [Shift, Shift + Width) of every byte of v, moved to the low bits: the unpacking of
/// 2- and 4-bit codes. With GFNI (the avx512 level) one GF(2) affine transform, whose matrix
/// row 7 - i picks input bit Shift + i for output bit i, instead of a shift and a mask: a
/// quarter fewer vector ops in the 2-bit single-token loop (1.12x in L1 on Zen 5).
template <int Shift, int Width>
inline __m512i byte_field(__m512i v) {
  static_assert(Shift >= 0 && Width > 0 && Shift + Width <= 8);
#if defined(__GFNI__)
  if constexpr (Shift > 0) {
    uint64_t matrix = 0;
    for (int i = 0; i < Width; ++i) matrix |= (uint64_t{1} << (Shift + i)) << (8 * (7 - i));
    return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(static_cast<long long>(matrix)), 0);
  }
#endif
  const __m512i mask = _mm512_set1_epi8(static_cast<char>((1 << Width) - 1));
  return _mm512_and_si512(_mm512_srli_epi16(v, Shift), mask);
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE
#endif

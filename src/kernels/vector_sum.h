// Horizontal sums of AVX2 vectors for the per-ISA kernel sources. Include it after defining
// QK_ISA_NAMESPACE: each ISA's translation unit then compiles its own copy, whereas one inline
// function shared by TUs built with different flags would let the linker keep the AVX-512 copy
// for every caller.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstdint>

namespace quantkit::kernels::QK_ISA_NAMESPACE {

inline float horizontal_sum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

inline int32_t horizontal_sum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE
#endif

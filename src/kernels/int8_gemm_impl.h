// The int16 dot-product block kernel, compiled once per ISA (QK_ISA_NAMESPACE). The portable
// loop is the specification; with AVX2 the same sums come from vpmaddwd, 2 rows of A against 4
// rows of B per pass so every loaded vector is used more than once.
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace quantkit::kernels::QK_ISA_NAMESPACE {

namespace {

#if defined(__AVX2__)
inline int32_t hsum(__m256i v) {
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  const __m128i t = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1)));
}
#endif

// acc[i, j] for rows [0, m) of a and [0, n) of b, k a multiple of 16.
void dot_block(const int16_t* a, int64_t m, const int16_t* b, int64_t n, int64_t k, int64_t stride,
               int32_t* acc, int64_t ldc) {
  int64_t i = 0;
#if defined(__AVX2__)
  for (; i + 2 <= m; i += 2) {
    const int16_t* a0 = a + i * stride;
    const int16_t* a1 = a0 + stride;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const int16_t* b0 = b + j * stride;
      __m256i c[8];
      for (auto& v : c) v = _mm256_setzero_si256();
      for (int64_t p = 0; p < k; p += 16) {
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a0 + p));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a1 + p));
        for (int q = 0; q < 4; ++q) {
          const __m256i w =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + q * stride + p));
          c[q] = _mm256_add_epi32(c[q], _mm256_madd_epi16(x0, w));
          c[4 + q] = _mm256_add_epi32(c[4 + q], _mm256_madd_epi16(x1, w));
        }
      }
      for (int q = 0; q < 4; ++q) {
        acc[i * ldc + j + q] = hsum(c[q]);
        acc[(i + 1) * ldc + j + q] = hsum(c[4 + q]);
      }
    }
    for (; j < n; ++j) {
      const int16_t* b0 = b + j * stride;
      __m256i c0 = _mm256_setzero_si256(), c1 = _mm256_setzero_si256();
      for (int64_t p = 0; p < k; p += 16) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + p));
        c0 = _mm256_add_epi32(
            c0, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a0 + p)), w));
        c1 = _mm256_add_epi32(
            c1, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a1 + p)), w));
      }
      acc[i * ldc + j] = hsum(c0);
      acc[(i + 1) * ldc + j] = hsum(c1);
    }
  }
#endif
  for (; i < m; ++i) {
    const int16_t* x = a + i * stride;
    for (int64_t j = 0; j < n; ++j) {
      const int16_t* w = b + j * stride;
      int32_t sum = 0;
      for (int64_t p = 0; p < k; ++p) sum += static_cast<int32_t>(x[p]) * w[p];
      acc[i * ldc + j] = sum;
    }
  }
}

}  // namespace

const Int16DotBlock kInt16DotBlock = dot_block;

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

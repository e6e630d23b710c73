// The int16 dot-product block kernel, compiled once per ISA (QK_ISA_NAMESPACE). The portable
// loop is the specification; with AVX2 the same sums come from vpmaddwd (vpdpwssd where the level
// has VNNI: int_dot.h), 2 rows of A against 4 rows of B per pass so every loaded vector is used
// more than once.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>

#include "int_dot.h"
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
          c[q] = dot_i16_i16(c[q], x0, w);
          c[4 + q] = dot_i16_i16(c[4 + q], x1, w);
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
        c0 = dot_i16_i16(c0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a0 + p)), w);
        c1 = dot_i16_i16(c1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a1 + p)), w);
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

void requantize_row(const int32_t* acc, int64_t n, double multiplier, double bias, double out_scale,
                    double zero_point, double qmin, double qmax, uint8_t* out, int64_t out_stride) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256d m = _mm256_set1_pd(multiplier), b = _mm256_set1_pd(bias);
  const __m256d s = _mm256_set1_pd(out_scale), z = _mm256_set1_pd(zero_point);
  const __m256d lo = _mm256_set1_pd(qmin), hi = _mm256_set1_pd(qmax);
  for (; i + 4 <= n; i += 4) {
    const __m256d a =
        _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + i)));
    const __m256d y = _mm256_add_pd(_mm256_mul_pd(a, m), b);
    __m256d q = _mm256_round_pd(_mm256_div_pd(y, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_pd(_mm256_max_pd(_mm256_add_pd(q, z), lo), hi);
    alignas(16) int32_t v[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(v), _mm256_cvtpd_epi32(q));
    for (int j = 0; j < 4; ++j) out[(i + j) * out_stride] = static_cast<uint8_t>(v[j]);
  }
#endif
  for (; i < n; ++i) {
    const double y = static_cast<double>(acc[i]) * multiplier + bias;
    const double q = std::nearbyint(y / out_scale) + zero_point;
    out[i * out_stride] =
        static_cast<uint8_t>(static_cast<int32_t>(std::min(std::max(q, qmin), qmax)));
  }
}

void panel_gemm(const int16_t* a, int64_t m, int64_t stride, const int16_t* panel, int64_t n,
                int64_t n_padded, int32_t* acc, int64_t ldc) {
  int64_t i = 0;
#if defined(__AVX2__)
  // 2 rows of a x 32 channels per pass: 8 accumulators, 4 panel loads shared by both rows.
  for (; i + 2 <= m; i += 2) {
    const int16_t* a0 = a + i * stride;
    const int16_t* a1 = a0 + stride;
    for (int64_t j0 = 0; j0 < n_padded; j0 += 32) {
      const int64_t vecs = std::min<int64_t>(4, (n_padded - j0) / 8);
      __m256i c0[4], c1[4];
      for (int v = 0; v < 4; ++v) c0[v] = c1[v] = _mm256_setzero_si256();
      for (int64_t k = 0; k < stride; k += 2) {
        int32_t p0, p1;
        std::memcpy(&p0, a0 + k, 4);
        std::memcpy(&p1, a1 + k, 4);
        const __m256i x0 = _mm256_set1_epi32(p0), x1 = _mm256_set1_epi32(p1);
        const int16_t* w = panel + ((k / 2) * n_padded + j0) * 2;
        for (int v = 0; v < 4; ++v) {
          if (v >= vecs) break;
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + v * 16));
          c0[v] = dot_i16_i16(c0[v], x0, wv);
          c1[v] = dot_i16_i16(c1[v], x1, wv);
        }
      }
      for (int v = 0; v < vecs; ++v) {
        alignas(32) int32_t r0[8], r1[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(r0), c0[v]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(r1), c1[v]);
        for (int q = 0; q < 8; ++q) {
          const int64_t j = j0 + v * 8 + q;
          if (j >= n) break;
          acc[j * ldc + i] = r0[q];
          acc[j * ldc + i + 1] = r1[q];
        }
      }
    }
  }
#endif
  for (; i < m; ++i) {
    const int16_t* x = a + i * stride;
    for (int64_t j = 0; j < n; ++j) {
      int32_t sum = 0;
      for (int64_t k = 0; k < stride; ++k) {
        sum += static_cast<int32_t>(x[k]) * panel[((k / 2) * n_padded + j) * 2 + k % 2];
      }
      acc[j * ldc + i] = sum;
    }
  }
}

}  // namespace

const Int8GemmKernels kInt8GemmKernels = {dot_block, requantize_row, panel_gemm};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

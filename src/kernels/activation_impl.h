// Activation kernels, compiled once per ISA (QK_ISA_NAMESPACE). With AVX2 the erf comes from
// Abramowitz & Stegun 7.1.26, erf(z) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-z^2)
// with t = 1 / (1 + p z), for z >= 0 (odd symmetry for z < 0), and exp from vector_exp.h.
#include <cmath>
#include <cstdint>

#include "activation.h"
#include "vector_exp.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace quantkit::kernels::QK_ISA_NAMESPACE {

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;

float gelu_scalar(float x) {
  return 0.5f * x * (1.0f + std::erf(x * kInvSqrt2));
}

#if defined(__AVX2__)
inline __m256 gelu8(__m256 x) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(kInvSqrt2));
  const __m256 az = _mm256_andnot_ps(sign_mask, z);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
  __m256 poly = _mm256_set1_ps(1.061405429f);
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-1.453152027f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
  const __m256 e = exp_nonpositive(_mm256_mul_ps(_mm256_xor_ps(az, sign_mask), az));
  // 1 + erf(z) is 2 - erfc(|z|) for z >= 0 and erfc(|z|) itself for z < 0, which keeps the
  // negative side free of the cancellation in 1 + (-(1 - erfc)).
  const __m256 erfc_abs = _mm256_mul_ps(_mm256_mul_ps(poly, t), e);
  const __m256 one_plus_erf =
      _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), erfc_abs), erfc_abs, z);
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), one_plus_erf);
}
#endif

void gelu(const float* x, int64_t n, float* y) {
  int64_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
  if (i < n) {  // the tail through a padded vector, so every element sees the same formula
    alignas(32) float buf[8] = {};
    for (int64_t j = i; j < n; ++j) buf[j - i] = x[j];
    _mm256_store_ps(buf, gelu8(_mm256_load_ps(buf)));
    for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
    i = n;
  }
#endif
  for (; i < n; ++i) y[i] = gelu_scalar(x[i]);
}

float silu_mul_scalar(float g, float u) {
  return g / (1.0f + std::exp(-g)) * u;
}

#if defined(__AVX2__)
/// silu(g) = g sigmoid(g) with e = exp(-|g|) <= 1: sigmoid is 1 / (1 + e) for g >= 0 and
/// e / (1 + e) below, so exp never overflows.
inline __m256 silu8(__m256 g) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256 e = exp_nonpositive(_mm256_or_ps(g, sign_mask));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 numerator = _mm256_blendv_ps(one, e, g);  // the sign bit of g picks e
  return _mm256_mul_ps(g, _mm256_div_ps(numerator, _mm256_add_ps(one, e)));
}
#endif

void silu_mul(const float* g, const float* u, int64_t n, float* y) {
  int64_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu8(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
  if (i < n) {  // the tail through a padded vector, so every element sees the same formula
    alignas(32) float gb[8] = {}, ub[8] = {};
    for (int64_t j = i; j < n; ++j) gb[j - i] = g[j], ub[j - i] = u[j];
    _mm256_store_ps(gb, _mm256_mul_ps(silu8(_mm256_load_ps(gb)), _mm256_load_ps(ub)));
    for (int64_t j = i; j < n; ++j) y[j] = gb[j - i];
    i = n;
  }
#endif
  for (; i < n; ++i) y[i] = silu_mul_scalar(g[i], u[i]);
}

}  // namespace

const ActivationKernels kActivationTable = {gelu, silu_mul};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

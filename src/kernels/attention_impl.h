// Attention kernels, compiled once per ISA (QK_ISA_NAMESPACE): scores, softmax and the
// weighted sum of values, each a pass over the positions that serves every query of the group.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "attention.h"
#include "prefetch.h"
#include "vector_exp.h"
#include "vector_sum.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace quantkit::kernels::QK_ISA_NAMESPACE {

namespace {

/// a . b over 8 independent partial sums (FMA lanes with AVX2): a single running sum would be
/// a chain of dependent adds, 4 cycles per element.
float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  if (i + 8 <= n) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    i += 8;
  }
  float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
#else
  float part[8] = {};
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) part[j] += a[i + j] * b[i + j];
  }
  float sum =
      ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

/// s[j] = exp(s[j] - max) in place; returns their sum.
float exp_shifted(float* s, int64_t n, float max) {
  int64_t j = 0;
  float sum = 0.0f;
#if defined(__AVX2__)
  __m256 acc = _mm256_setzero_ps();
  const __m256 m = _mm256_set1_ps(max);
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(s + j), m));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  sum = horizontal_sum(acc);
#endif
  for (; j < n; ++j) sum += (s[j] = std::exp(s[j] - max));
  return sum;
}

/// out[0, n) += w * v[0, n).
void add_scaled(float* __restrict out, float w, const float* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += w * v[i];
}

/// Prefetches row j + kAhead: key and value rows sit a whole KV row apart (kv_heads * dim
/// floats), a stride the hardware prefetcher follows too late; without this the passes wait on
/// L3 or DRAM for every row.
constexpr int64_t kAhead = 8;
inline void prefetch_row(const float* rows, int64_t stride, int64_t j, int64_t len, int64_t dim) {
  if (j + kAhead >= len) return;
  const float* row = rows + (j + kAhead) * stride;
  for (int64_t e = 0; e < dim; e += 16) prefetch_l1(row + e);
}

/// scale * q . k_j for every query and position (scores[i * len + j]).
void scores_portable(const AttentionArgs& a) {
  for (int64_t j = 0; j < a.len; ++j) {  // each key row once, for every query
    prefetch_row(a.keys, a.kv_stride, j, a.len, a.dim);
    const float* k = a.keys + j * a.kv_stride;
    for (int64_t i = 0; i < a.queries; ++i)
      a.scores[i * a.len + j] = dot(a.q + i * a.q_stride, k, a.dim) * a.scale;
  }
}

/// out_i = sum_j w_ij v_j with the normalised weights in scores.
void values_portable(const AttentionArgs& a) {
  for (int64_t i = 0; i < a.queries; ++i) std::fill_n(a.out + i * a.out_stride, a.dim, 0.0f);
  for (int64_t j = 0; j < a.len; ++j) {  // each value row once, for every query
    prefetch_row(a.values, a.kv_stride, j, a.len, a.dim);
    const float* v = a.values + j * a.kv_stride;
    for (int64_t i = 0; i < a.queries; ++i)
      add_scaled(a.out + i * a.out_stride, a.scores[i * a.len + j], v, a.dim);
  }
}

#if defined(__AVX2__)
/// q . k for 8 key rows at once (dim a multiple of 8): 8 FMA lanes per row, then one hadd tree
/// turns the 8 accumulators into the 8 sums, in row order.
inline __m256 dot_8_rows(const float* q, const float* k, int64_t stride, int64_t dim) {
  __m256 acc[8];
  for (auto& v : acc) v = _mm256_setzero_ps();
  for (int64_t e = 0; e < dim; e += 8) {
    const __m256 qv = _mm256_loadu_ps(q + e);
    for (int r = 0; r < 8; ++r)
      acc[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + r * stride + e), acc[r]);
  }
  // hadd(hadd(a0, a1), hadd(a2, a3)) holds rows 0-3's sums of lanes 0-3 in its low half and
  // of lanes 4-7 in its high half.
  const __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
  const __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
}

/// Blocks of 8 key rows (2 KB at dim 64) stay in L1 while every query meets them.
void scores_avx2(const AttentionArgs& a) {
  const __m256 scale = _mm256_set1_ps(a.scale);
  int64_t j = 0;
  for (; j + 8 <= a.len; j += 8) {
    for (int64_t p = 0; p < 8; ++p) prefetch_row(a.keys, a.kv_stride, j + p, a.len, a.dim);
    const float* k = a.keys + j * a.kv_stride;
    for (int64_t i = 0; i < a.queries; ++i) {
      const __m256 d = dot_8_rows(a.q + i * a.q_stride, k, a.kv_stride, a.dim);
      _mm256_storeu_ps(a.scores + i * a.len + j, _mm256_mul_ps(d, scale));
    }
  }
  for (; j < a.len; ++j) {
    for (int64_t i = 0; i < a.queries; ++i)
      a.scores[i * a.len + j] =
          dot(a.q + i * a.q_stride, a.keys + j * a.kv_stride, a.dim) * a.scale;
  }
}

/// acc[v] += w_j * row_j[8 v ..] over rows [j0, j1), Vectors (a compile-time count, so acc stays
/// in registers) slices of 8 floats from out.
template <int Vectors>
inline void fold_rows(const float* w, const float* rows, int64_t stride, int64_t j0, int64_t j1,
                      float* out) {
  __m256 acc[Vectors];
  for (int v = 0; v < Vectors; ++v) acc[v] = _mm256_loadu_ps(out + 8 * v);
  for (int64_t j = j0; j < j1; ++j) {
    const __m256 wj = _mm256_broadcast_ss(w + j);
    const float* row = rows + j * stride;
    for (int v = 0; v < Vectors; ++v)
      acc[v] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(row + 8 * v), acc[v]);
  }
  for (int v = 0; v < Vectors; ++v) _mm256_storeu_ps(out + 8 * v, acc[v]);
}

/// Blocks of 16 value rows stay in L1 while every query folds them into 64-float slices of its
/// output held in registers (dim a multiple of 8).
void values_avx2(const AttentionArgs& a) {
  constexpr int64_t kBlock = 16;
  for (int64_t i = 0; i < a.queries; ++i) std::fill_n(a.out + i * a.out_stride, a.dim, 0.0f);
  for (int64_t j0 = 0; j0 < a.len; j0 += kBlock) {
    const int64_t j1 = std::min(a.len, j0 + kBlock);
    for (int64_t j = j0; j < j1; ++j)
      prefetch_row(a.values, a.kv_stride, j + kBlock - kAhead, a.len, a.dim);
    for (int64_t i = 0; i < a.queries; ++i) {
      const float* w = a.scores + i * a.len;
      float* out = a.out + i * a.out_stride;
      int64_t e = 0;
      for (; e + 64 <= a.dim; e += 64) fold_rows<8>(w, a.values + e, a.kv_stride, j0, j1, out + e);
      for (; e < a.dim; e += 8) fold_rows<1>(w, a.values + e, a.kv_stride, j0, j1, out + e);
    }
  }
}
#endif

void attend(const AttentionArgs& a) {
#if defined(__AVX2__)
  const bool vector_rows = a.dim % 8 == 0;
  vector_rows ? scores_avx2(a) : scores_portable(a);
#else
  scores_portable(a);
#endif
  for (int64_t i = 0; i < a.queries; ++i) {
    float* s = a.scores + i * a.len;
    const float max = *std::max_element(s, s + a.len);
    const float inv_sum = 1.0f / exp_shifted(s, a.len, max);
    for (int64_t j = 0; j < a.len; ++j) s[j] *= inv_sum;
  }
#if defined(__AVX2__)
  vector_rows ? values_avx2(a) : values_portable(a);
#else
  values_portable(a);
#endif
}

}  // namespace

const AttentionKernels kAttentionTable = {attend};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

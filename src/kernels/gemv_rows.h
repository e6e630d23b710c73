// What the GEMV kernels share: the chunk size, software prefetch along the packed rows, the
// expansion of compact group metadata, and the group bias sums (what qmin and the offsets add
// through the sums of x), which every activation type rounds the same way.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
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
#include "prefetch.h"
#include "quantkit/core/float_convert.h"
#include "vector_sum.h"

// GCC 12 takes the undefined pass-through operand of unmasked AVX-512 intrinsics (conversions,
// permutes, 256-bit extracts) for a read of an uninitialised variable.
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

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
  prefetch_l2(p + decode_tuning.l2_prefetch_bytes);
  if (decode_tuning.l1_prefetch_bytes != 0) prefetch_l1(p + decode_tuning.l1_prefetch_bytes);
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
    prefetch_l1(reinterpret_cast<const char*>(ahead + static_cast<uintptr_t>(b)));
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
/// Row n's float32 metadata where the weight holds it as float32 (never compact).
inline RowGroupParams float32_row_params(const GemvWeights& w, int64_t n) {
  return {w.scales + n * w.groups, w.offsets != nullptr ? w.offsets + n * w.groups : nullptr};
}
inline RowGroupParams row_group_params(const GemvWeights& w, int64_t n, float* buffer) {
  if (w.scales_f16 == nullptr) return float32_row_params(w, n);
  const int8_t* z = w.zero_points != nullptr ? w.zero_points + n * w.groups : nullptr;
  expand_group_params(w.scales_f16 + n * w.groups, z, w.groups, buffer, buffer + w.groups);
  return {buffer, z != nullptr ? buffer + w.groups : nullptr};
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
#endif

#if defined(__AVX2__)
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
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

// The int16 kernels' shared pieces (tokens, widened codes, folded chunk scales) and the AVX2
// row kernels, which take any number of tokens (8-, 4- and 2-bit codes in the plain layouts).
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_rows.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX2__)
/// Where the int16 kernels read each of Rows tokens: activations and chunk scales.
template <int Rows>
struct Int16Tokens {
  const int16_t* xh[Rows];
  const float* sx[Rows];
  Int16Tokens(const GemvInt16Args& a, int64_t r0) {
    for (int r = 0; r < Rows; ++r) {
      xh[r] = a.xh + (r0 + r) * a.xh_stride;
      sx[r] = a.chunk_scales + (r0 + r) * a.chunks;
    }
  }
};

/// y[t, n] from a token's running total, plus what qmin and the offsets add through the group
/// sums of its rounded x. Callers unroll their loop over the tokens: a rolled loop indexing the
/// totals kept them in memory, with a store per token and chunk.
template <bool PerChannel>
inline void store_int16_total(const GemvInt16Args& a, int64_t t, int64_t n, __m256 sum) {
  const auto [s, off] = float32_row_params(a.w, n);
  if constexpr (PerChannel) sum = _mm256_mul_ps(sum, _mm256_broadcast_ss(s));
  a.w.y[t * a.w.y_stride + n] =
      horizontal_sum(sum) +
      group_bias_term(s, off, a.w.code_bias, a.xh_group_sums + t * a.w.groups, a.w.groups);
}
/// Chunk c of unsigned codes as two vectors of 16 int16 lanes (elements 0..15 and 16..31).
template <int Bits, bool Prefetch = true>
inline void codes_i16_chunk(const uint8_t* row, int64_t c, __m256i* w0, __m256i* w1) {
  auto widen = [](const uint8_t* p) {
    return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  if constexpr (Prefetch) {
    prefetch_at_line_start(row, c * Bits * 4);
  }
  if constexpr (Bits == 8) {
    *w0 = widen(row + c * 32);
    *w1 = widen(row + c * 32 + 16);
  } else {
    const __m256i b = widen(row + c * 16);
    *w0 = _mm256_and_si256(b, _mm256_set1_epi16(0x0F));
    *w1 = _mm256_srli_epi16(b, 4);
  }
}

/// sum over the chunk of xh * u in 8 int32 lanes (u <= 255, |xh| <= 32767: no overflow).
inline __m256i dot_i16(__m256i w0, __m256i w1, const int16_t* xh) {
  const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xh));
  const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xh + 16));
  return dot_i16_i16(_mm256_madd_epi16(w0, x0), w1, x1);
}

/// p[0], p[1] in lanes 0 and 1 (an unaligned 8-byte load: p is only 4-byte aligned).
inline __m128 two_floats(const float* p) {
  return _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

/// cs[c] = sx[c] * s[c / chunks_per_group]: 8 chunks a step where a group spans 1, 2 or 4.
inline void chunk_times_group_scales(const float* sx, const float* s, int64_t chunks,
                                     int64_t chunks_per_group, float* cs) {
  int64_t c = 0;
  if (chunks_per_group == 1) {
    for (; c + 8 <= chunks; c += 8)
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), _mm256_loadu_ps(s + c)));
  } else if (chunks_per_group == 2) {
    const __m256i spread = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    for (; c + 8 <= chunks; c += 8) {
      const __m256 g =
          _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + c / 2)), spread);
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), g));
    }
  } else if (chunks_per_group == 4) {
    const __m256i spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    for (; c + 8 <= chunks; c += 8) {
      const __m128 two = two_floats(s + c / 4);
      const __m256 g = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), spread);
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), g));
    }
  }
  for (int64_t g = c / chunks_per_group; c < chunks; ++g) {  // c is on a group boundary here
    const int64_t end = std::min(chunks, c + chunks_per_group);
    const __m256 scale = _mm256_broadcast_ss(s + g);
    for (; c + 8 <= end; c += 8)
      _mm256_storeu_ps(cs + c, _mm256_mul_ps(_mm256_loadu_ps(sx + c), scale));
    for (; c < end; ++c) cs[c] = sx[c] * s[g];
  }
}

/// step(c) for c = 0, Step, 2 Step, ... below `chunks` (of Bits-bit codes along `row`), with one
/// prefetch per 64-byte line of codes.
template <int Bits, int Step, class StepFn>
inline void for_each_step_by_line(const uint8_t* row, int64_t chunks, StepFn&& step) {
  constexpr int64_t kChunksPerLine = kLineBytes / (Bits * 4);
  static_assert(kChunksPerLine % Step == 0);
  int64_t c = 0;
  for (; c + kChunksPerLine <= chunks; c += kChunksPerLine) {
    prefetch_ahead(row + c * Bits * 4);
    for (int64_t i = 0; i < kChunksPerLine; i += Step) step(c + i);
  }
  for (; c < chunks; c += Step) step(c);
}

/// A single-token kernel's view of its token and, per row, the folded scales: cs[c] = chunk
/// scale c times the group scale of c (one pass per row, chunk_times_group_scales), plus
/// zeros past the last chunk (kernels that step over 2 or 4 chunks). Buffers are per thread and
/// stay in L1.
class SingleTokenScales {
 public:
  SingleTokenScales(const GemvInt16Args& a, int64_t r0)
      : a_(a),
        r0_(r0),
        chunks_per_group_(a.w.group_size >= a.w.k ? a.chunks : a.w.group_size / kChunk) {
    buffer().resize(static_cast<size_t>(a.chunks + kPadding + 2 * a.w.groups));
    std::fill_n(buffer().begin() + a.chunks, kPadding, 0.0f);
  }
  const int16_t* xh() const { return a_.xh + r0_ * a_.xh_stride; }
  const float* folded() const { return buffer().data(); }
  /// Folds row n's group scales into the chunk scales.
  void fold_row(int64_t n) {
    float* cs = buffer().data();
    const int64_t groups = a_.w.groups;
    if (a_.w.scales_f16 != nullptr && chunks_per_group_ <= 4 && chunks_per_group_ != 3) {
      const uint16_t* h = a_.w.scales_f16 + n * groups;
      prefetch_scales(h, groups);
      const int8_t* z = a_.w.zero_points != nullptr ? a_.w.zero_points + n * groups : nullptr;
      const float* sums = a_.xh_group_sums + r0_ * groups;
      const float* sx = a_.chunk_scales + r0_ * a_.chunks;
      const float qmin = a_.w.code_bias;
      bias_ = chunks_per_group_ == 1
                  ? expand_scales_with_bias<1>(h, z, groups, qmin, sums, sx, cs, a_.chunks)
              : chunks_per_group_ == 2
                  ? expand_scales_with_bias<2>(h, z, groups, qmin, sums, sx, cs, a_.chunks)
                  : expand_scales_with_bias<4>(h, z, groups, qmin, sums, sx, cs, a_.chunks);
      return;
    }
    const RowGroupParams row = row_group_params(a_.w, n, cs + a_.chunks + kPadding);
    chunk_times_group_scales(a_.chunk_scales + r0_ * a_.chunks, row.s, a_.chunks, chunks_per_group_,
                             cs);
    bias_ = group_bias_term(row.s, row.off, a_.w.code_bias, a_.xh_group_sums + r0_ * a_.w.groups,
                            a_.w.groups);
  }
  /// y[token, n] from the row's running total (after fold_row(n)), plus what qmin and the
  /// offsets add through the group sums of the rounded x.
  void store(int64_t n, __m256 total) const { store_sum(n, horizontal_sum(total)); }
  /// The same from the total's horizontal sum.
  void store_sum(int64_t n, float sum) const { a_.w.y[r0_ * a_.w.y_stride + n] = sum + bias_; }

 private:
  static constexpr int64_t kPadding = 7;  // zero scales past the last chunk: steps of 8 chunks
  static std::vector<float>& buffer() {
    thread_local std::vector<float> b;
    return b;
  }

  const GemvInt16Args& a_;
  int64_t r0_, chunks_per_group_;
  float bias_ = 0.0f;
};

/// Int16-activation GEMV for Rows tokens: each chunk of codes is widened to int16 once and meets
/// every token through two vpmaddwd (2 ops per 16 MACs, against widen + convert + FMA per 8 on
/// float activations); the int32 lanes become floats times the chunk scale (times the group
/// scale, unless PerChannel: then s is applied once at the end). One flat loop over the chunks
/// with a countdown to the next group: a loop nest per group cost a third of the speed at group
/// size 32 and 64. One token alternates two running totals so the FMA latency does not
/// serialise the chunks; several tokens are independent chains already.
template <int Bits, int Rows, bool PerChannel>
void gemv_int16_rows_avx2(const GemvInt16Args& a, int64_t r0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const Int16Tokens<Rows> tokens(a, r0);
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = float32_row_params(a.w, n).s;
    __m256 total[Rows], spare = _mm256_setzero_ps();
    for (auto& t : total) t = _mm256_setzero_ps();
    GroupScaleCursor group(s, chunks_per_group);
    for (int64_t c = 0; c < chunks; ++c) {
      __m256i w0, w1;
      codes_i16_chunk<Bits>(row, c, &w0, &w1);
      const __m256 gs = _mm256_broadcast_ss(group.scale);
      for (int r = 0; r < Rows; ++r) {
        __m256 scale = _mm256_broadcast_ss(tokens.sx[r] + c);
        if constexpr (!PerChannel) scale = _mm256_mul_ps(scale, gs);
        total[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_i16(w0, w1, tokens.xh[r] + c * kChunk)),
                                   scale, total[r]);
      }
      if constexpr (Rows == 1) std::swap(total[0], spare);
      group.step();
    }
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r)
      store_int16_total<PerChannel>(a, r0 + r, n,
                                    Rows == 1 ? _mm256_add_ps(total[r], spare) : total[r]);
  }
}

/// Chunks c and c + 1 of 2-bit codes widened by one 16-byte load: vector i holds elements
/// 8i..8i+7 of chunk c, then of chunk c + 1 (the activations' order for 2-bit codes).
template <bool Prefetch = true>
inline void codes_i16_pair_w2(const uint8_t* row, int64_t c, __m256i w[4]) {
  if constexpr (Prefetch) prefetch_at_line_start(row, c * 8);
  const __m256i b =
      _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 8)));
  const __m256i three = _mm256_set1_epi16(3);
  w[0] = _mm256_and_si256(b, three);
  w[1] = _mm256_and_si256(_mm256_srli_epi16(b, 2), three);
  w[2] = _mm256_and_si256(_mm256_srli_epi16(b, 4), three);
  w[3] = _mm256_srli_epi16(b, 6);
}

/// The int32 lanes of a pair of 2-bit chunks (codes_i16_pair_w2) times their 64 activations:
/// two independent chains of two dot steps, joined once.
inline __m256i dot_i16_pair_w2(const __m256i w[4], const int16_t* x) {
  auto xs = [&](int i) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16 * i)); };
  return _mm256_add_epi32(dot_i16_i16(_mm256_madd_epi16(w[0], xs(0)), w[1], xs(1)),
                          dot_i16_i16(_mm256_madd_epi16(w[2], xs(2)), w[3], xs(3)));
}

/// 2-bit codes: a pair of chunks per step, int32 lanes 0..3 from chunk c and 4..7 from c + 1, so
/// the scales are per half: (scale of c) x 4, (scale of c + 1) x 4.
template <int Rows, bool PerChannel>
void gemv_int16_w2_rows_avx2(const GemvInt16Args& a, int64_t r0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  auto halves = [](const float* lo, const float* hi) {
    return _mm256_set_m128(_mm_broadcast_ss(hi), _mm_broadcast_ss(lo));
  };
  const Int16Tokens<Rows> tokens(a, r0);
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = float32_row_params(a.w, n).s;
    __m256 total[Rows], spare = _mm256_setzero_ps();
    for (auto& t : total) t = _mm256_setzero_ps();
    GroupScaleCursor group(s, chunks_per_group);
    for (int64_t c = 0; c < chunks; c += 2) {
      __m256i w[4];
      codes_i16_pair_w2(row, c, w);
      const bool pair = c + 1 < chunks;  // an odd last chunk pairs with zero padding
      __m256 ws = _mm256_setzero_ps();
      if constexpr (!PerChannel) {
        const float* s0 = group.scale;
        group.step();
        ws = halves(s0, pair ? group.scale : s0);
        if (pair) group.step();
      }
      for (int r = 0; r < Rows; ++r) {
        const __m256i d = dot_i16_pair_w2(w, tokens.xh[r] + c * kChunk);
        __m256 scale = halves(tokens.sx[r] + c, tokens.sx[r] + c + (pair ? 1 : 0));
        if constexpr (!PerChannel) scale = _mm256_mul_ps(scale, ws);
        total[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, total[r]);
      }
      if constexpr (Rows == 1) std::swap(total[0], spare);
    }
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r)
      store_int16_total<PerChannel>(a, r0 + r, n,
                                    Rows == 1 ? _mm256_add_ps(total[r], spare) : total[r]);
  }
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

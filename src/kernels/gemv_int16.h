// Int16 activations (GemvInt16Args, the weight-only GEMV's default): vpmaddwd / vpdpwssd on
// the rounded chunks of x, single-token kernels that fold the chunk scales per group, and
// 4-bit channel tiles.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int8_tiles.h"
#include "gemv_rows.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

/// Integer dot of chunk c of unsigned 8-, 4- or 2-bit codes with its 32 int16 activations (xh is
/// the token's whole row, in int16_activation_slot order): the specification of the int16 AVX2
/// kernels.
template <int Bits>
inline int64_t dot_chunk_i16(const int16_t* xh, Int16Layout layout, const uint8_t* row, int64_t c) {
  int64_t sum = 0;
  for (int j = 0; j < 32; ++j) {
    int32_t u = 0;
    if constexpr (Bits == 8) u = row[c * 32 + j];
    if constexpr (Bits == 4) u = (row[c * 16 + j % 16] >> (j < 16 ? 0 : 4)) & 0x0F;
    if constexpr (Bits == 2) u = (row[c * 8 + j % 8] >> (2 * (j / 8))) & 3;
    sum += static_cast<int64_t>(xh[int16_activation_slot(layout, c, j)]) * u;
  }
  return sum;
}

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
#endif

#if defined(__AVX2__)
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

/// Int16-activation GEMV for Rows tokens: each chunk of codes is widened to int16 once and meets
/// every token through two vpmaddwd (2 ops per 16 MACs, against widen + convert + FMA per 8 on
/// float activations); the int32 lanes become floats times the chunk scale (times the group
/// scale, unless PerChannel: then s is applied once at the end). One flat loop over the chunks
/// with a countdown to the next group: a loop nest per group cost a third of the speed at group
/// size 32 and 64. One token alternates two running totals so the FMA latency does not
/// serialise the chunks; several tokens are independent chains already.
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

/// Group size 32 (a group per chunk, groups > 1): the single-token AVX2 kernels fold the group
/// scales into the chunk scales 8 chunks at a time inside their chunk loop, and sum the bias
/// (qmin s + off against the group sums) alongside, instead of SingleTokenScales::fold_row's
/// pass per row that stored them for the loop to reload: 4-bit 8.3 -> 7.6 and 2-bit 14.3 ->
/// 12.3 cycles per 32 bytes of codes (K = 4096 in L2, one thread, Zen 3). At group size 64 and
/// 128 the pass is cheaper than spreading each group's scale over its chunks in the loop
/// (8.0 against 8.2-8.3), so they keep it. Compact float16 scales and float32 ones take the
/// same arithmetic, so they agree bit for bit.
class InlineFold32 {
 public:
  InlineFold32(const GemvInt16Args& a, int64_t r0)
      : w_(a.w),
        sx_(a.chunk_scales + r0 * a.chunks),
        sums_(a.xh_group_sums + r0 * a.w.groups),
        chunks_(a.chunks),
        qmin_(_mm256_set1_ps(a.w.code_bias)) {}
  static bool takes(const GemvInt16Args& a) { return a.w.groups > 1 && a.w.group_size == kChunk; }
  void start_row(int64_t n) {
    const int64_t at = n * w_.groups;
    h_ = w_.scales_f16 != nullptr ? w_.scales_f16 + at : nullptr;
    if (h_ != nullptr) prefetch_scales(h_, w_.groups);
    z_ = h_ != nullptr && w_.zero_points != nullptr ? w_.zero_points + at : nullptr;
    s_ = h_ == nullptr ? w_.scales + at : nullptr;
    off_ = h_ == nullptr && w_.offsets != nullptr ? w_.offsets + at : nullptr;
    acc_ = _mm256_setzero_ps();
    tail_bias_ = 0.0f;
  }
  /// Folded scales of chunks c..c+7 (c + 8 <= chunks) into out[0..8).
  void block(int64_t c, float* out) {
    __m256 sv, off;
    if (h_ != nullptr) {
      sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h_ + c)));
      // off = -s z, exact as the product of a float16 and a small integer is.
      off = z_ == nullptr ? _mm256_setzero_ps()
                          : _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), sv),
                                          _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                              reinterpret_cast<const __m128i*>(z_ + c)))));
    } else {
      sv = _mm256_loadu_ps(s_ + c);
      off = off_ == nullptr ? _mm256_setzero_ps() : _mm256_loadu_ps(off_ + c);
    }
    _mm256_store_ps(out, _mm256_mul_ps(sv, _mm256_loadu_ps(sx_ + c)));
    acc_ = _mm256_fmadd_ps(_mm256_fmadd_ps(qmin_, sv, off), _mm256_loadu_ps(sums_ + c), acc_);
  }
  /// The last chunks (fewer than 8) from c: their folded scales, zeros after them.
  void tail(int64_t c, float* out) {
    for (int j = 0; j < 8; ++j, ++c) {
      if (c >= chunks_) {
        out[j] = 0.0f;
        continue;
      }
      float s, off;
      if (h_ != nullptr) {
        s = f16_bits_to_float(h_[c]);
        off = z_ != nullptr ? -s * static_cast<float>(z_[c]) : 0.0f;
      } else {
        s = s_[c];
        off = off_ != nullptr ? off_[c] : 0.0f;
      }
      out[j] = s * sx_[c];
      tail_bias_ = std::fma(std::fma(w_.code_bias, s, off), sums_[c], tail_bias_);
    }
  }
  float bias() const { return horizontal_sum(acc_) + tail_bias_; }

 private:
  const GemvWeights& w_;
  const float* sx_;
  const float* sums_;
  int64_t chunks_;
  __m256 qmin_;
  const uint16_t* h_ = nullptr;
  const int8_t* z_ = nullptr;
  const float* s_ = nullptr;
  const float* off_ = nullptr;
  __m256 acc_ = _mm256_setzero_ps();
  float tail_bias_ = 0.0f;
};

/// A step's int32 dots as floats and the scales of their lanes (256-bit lanes).
struct ScaledDot8 {
  __m256 dot, scale;
};

/// The row loop of the AVX2 single-token kernels at group size 32 (InlineFold32): step(row, c,
/// scales) computes Step chunks from c (scales[i]: the folded scale of chunk c + i) into two
/// alternating totals. False (nothing done) for other group sizes.
template <int Bits, int Step, class StepFn>
bool single_token_rows_fold32_avx2(const GemvInt16Args& a, int64_t r0, StepFn step) {
  if (!InlineFold32::takes(a)) return false;
  InlineFold32 fold(a, r0);
  constexpr int kLinesPer8 = 8 * Bits * 4 / kLineBytes;  // chunks come 8 at a time
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    fold.start_row(n);
    __m256 total = _mm256_setzero_ps(), spare = _mm256_setzero_ps();
    alignas(32) float scales[8];
    auto block = [&](int64_t c, int64_t count) {
      for (int i = 0; i < count; i += Step) {
        const ScaledDot8 p = step(row, c + i, scales + i);
        total = _mm256_fmadd_ps(p.dot, p.scale, total);
        std::swap(total, spare);
      }
    };
    int64_t c = 0;
    for (; c + 8 <= a.chunks; c += 8) {
      for (int line = 0; line < kLinesPer8; ++line)
        prefetch_ahead(row + c * Bits * 4 + line * kLineBytes);
      fold.block(c, scales);
      block(c, 8);
    }
    if (c < a.chunks) {
      fold.tail(c, scales);
      block(c, a.chunks - c);
    }
    a.w.y[r0 * a.w.y_stride + n] = horizontal_sum(_mm256_add_ps(total, spare)) + fold.bias();
  }
  return true;
}

/// Chunks a step of the AVX2 single-token kernel (below) takes.
template <int Bits>
constexpr int kSingleTokenStep = Bits == 4 ? 2 : 1;

/// One step of the AVX2 single-token kernel: the int32 dots of kSingleTokenStep chunks from c as
/// floats, and their lanes' scales from s[0..step).
/// - 8-bit (layout {1, 32}): the chunk widened to int16 lanes, two vpmaddwd.
/// - 4-bit (layout {2, 8}): chunks c and c + 1 from one 32-byte load, their bytes unpacked to
///   int16 inside each 128-bit lane (bytes 0..7 and 8..15 of chunk c in the low lane, of c + 1
///   in the high one), whose low and high nibbles are runs 0..3 of the two chunks side by side:
///   four vpmaddwd, int32 lanes 0..3 from chunk c and 4..7 from c + 1. Against a vpmovzxbw per
///   chunk (a lane-crossing widen, under one a cycle here) and a convert and FMA per chunk:
///   7.7 -> 6.7 cycles per 32 bytes of codes at group size 32 (K = 4096 in L2, Zen 3); from
///   DRAM (2 threads, 1 GiB, interleaved) 1.03-1.11x at group size 32, 64 and 128.
template <int Bits>
inline ScaledDot8 single_token_step_avx2(const uint8_t* row, int64_t c, const int16_t* xh,
                                         const float* s) {
  if constexpr (Bits == 4) {
    auto x = [&](int run) {
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xh + c * kChunk + 16 * run));
    };
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 16));
    const __m256i low4 = _mm256_set1_epi16(0x0F);
    const __m256i first = _mm256_unpacklo_epi8(b, _mm256_setzero_si256());
    const __m256i second = _mm256_unpackhi_epi8(b, _mm256_setzero_si256());
    const __m256i d =
        _mm256_add_epi32(dot_i16_i16(_mm256_madd_epi16(_mm256_and_si256(first, low4), x(0)),
                                     _mm256_and_si256(second, low4), x(1)),
                         dot_i16_i16(_mm256_madd_epi16(_mm256_srli_epi16(first, 4), x(2)),
                                     _mm256_srli_epi16(second, 4), x(3)));
    const __m256i halves = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    return ScaledDot8{_mm256_cvtepi32_ps(d),
                      _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two_floats(s)), halves)};
  } else {
    __m256i w0, w1;
    codes_i16_chunk<Bits, false>(row, c, &w0, &w1);
    return ScaledDot8{_mm256_cvtepi32_ps(dot_i16(w0, w1, xh + c * kChunk)), _mm256_broadcast_ss(s)};
  }
}

/// The row loop of the AVX2 single-token kernels where the scales are not folded inline: per
/// row, scales(n) gives the scales the steps read (zeros past the last chunk: a step may read
/// past it), step(row, c, scales + c) as for single_token_rows_fold32_avx2, and store(n, sum)
/// takes the sum of the float dots times the scales.
template <int Bits, int Step, class StepFn, class Scales, class Store>
void single_token_rows_avx2(const GemvInt16Args& a, StepFn step, Scales scales, Store store) {
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* cs = scales(n);
    __m256 total = _mm256_setzero_ps(), spare = _mm256_setzero_ps();
    for_each_step_by_line<Bits, Step>(row, a.chunks, [&](int64_t c) {
      const ScaledDot8 p = step(row, c, cs + c);
      total = _mm256_fmadd_ps(p.dot, p.scale, total);
      std::swap(total, spare);
    });
    store(n, horizontal_sum(_mm256_add_ps(total, spare)));
  }
}

/// One token (decode), 8- and 4-bit codes (single_token_step_avx2): per row, each chunk's
/// activation scale is multiplied into its group scale once (InlineFold32 at group size 32,
/// else SingleTokenScales' pass per row), so a chunk costs its dots, a convert and an FMA.
/// Per channel the chunk scales stay as they are and the row's scale goes on the sum; compact
/// metadata is read here (a float16 and a zero point a row).
template <int Bits>
void gemv_int16_single_token_avx2(const GemvInt16Args& a, int64_t r0) {
  constexpr int kStep = kSingleTokenStep<Bits>;
  const int16_t* xh = a.xh + r0 * a.xh_stride;
  auto step = [xh](const uint8_t* row, int64_t c, const float* scales) {
    return single_token_step_avx2<Bits>(row, c, xh, scales);
  };
  if (single_token_rows_fold32_avx2<Bits, kStep>(a, r0, step)) return;
  float* y = a.w.y + r0 * a.w.y_stride;
  if (a.w.groups == 1) {
    thread_local std::vector<float> sx;  // the token's chunk scales and a zero
    sx.assign(a.chunk_scales + r0 * a.chunks, a.chunk_scales + (r0 + 1) * a.chunks);
    sx.push_back(0.0f);
    float params[16];  // row_group_params' s and off (room for its vector loop, not taken)
    RowGroupParams p{};
    single_token_rows_avx2<Bits, kStep>(
        a, step,
        [&](int64_t n) {
          p = row_group_params(a.w, n, params);
          return sx.data();
        },
        [&](int64_t n, float sum) {
          y[n] = sum * p.s[0] + group_bias_term(p.s, p.off, a.w.code_bias, a.xh_group_sums + r0, 1);
        });
    return;
  }
  SingleTokenScales token(a, r0);
  single_token_rows_avx2<Bits, kStep>(
      a, step,
      [&](int64_t n) {
        token.fold_row(n);
        return token.folded();
      },
      [&](int64_t n, float sum) { token.store_sum(n, sum); });
}

#if defined(__AVX512BW__) && defined(__AVX512DQ__)
/// y[token, n] from the two alternating totals of an AVX-512 single-token kernel.
inline void store_totals_avx512(const SingleTokenScales& token, int64_t n, __m512 total,
                                __m512 spare) {
  const __m512 sum = _mm512_add_ps(total, spare);
  token.store(n, _mm256_add_ps(_mm512_castps512_ps256(sum), _mm512_extractf32x8_ps(sum, 1)));
}

/// Int32 dots of four chunks of 4-bit codes (lo: their low nibbles, hi: their high ones) with
/// split-byte activations at x: the high bytes of lo's partners at x, their low bytes at x + 64,
/// then hi's at x + 128 and x + 192 (Int16Layout {4, 16, split}).
inline __m512i split_dot_u4(__m512i lo, __m512i hi, const int8_t* x) {
  __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(x));
  d = _mm512_slli_epi32(_mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512(x + 128)), 8);
  d = _mm512_dpbusd_epi32(d, _mm512_loadu_si512(x + 64), lo);
  return _mm512_dpbusd_epi32(d, _mm512_loadu_si512(x + 192), hi);
}

/// One token with 4-bit codes and split-byte activations (layout {4, 16, split}), four chunks
/// per 512-bit step: 64 bytes of codes give 64 low nibbles (chunk c + q's elements 0..15 in
/// bytes 16q..16q+15) and 64 high ones (elements 16..31); vpdpbusd meets them with the high
/// bytes of the activations, the sum is shifted left 8, and two more meet the low bytes with the
/// nibbles (unsigned low bytes times codes as signed bytes, 0..15). Int32 lanes 4q..4q+3 belong
/// to chunk c + q, each quarter times its folded scale. Per four chunks 11 ops, 7 of them on
/// port 0, where the int16 kernel on {2, 16} it replaced took 16 (8 on port 0): 1.12x in L1,
/// 1.03-1.05x from DRAM on 1 thread (2 threads: within noise).
/// One step's int32 dots as floats and the scales of their lanes.
struct ScaledDot {
  __m512 dot, scale;
};

/// The row loop of the single-token split-byte kernels: per row, fold the scales, then one
/// step_dot(codes, x, folded scales) per Step chunks into two alternating totals. step_dot
/// returns its values rather than adding into the totals, which kept them in registers (a
/// lambda updating captured totals ran the 2-bit kernel at 0.9x under GCC 12).
template <int Bits, int Step, class StepDot>
void single_token_split_rows(const GemvInt16Args& a, int64_t r0, StepDot step_dot) {
  SingleTokenScales token(a, r0);
  const auto* xb = reinterpret_cast<const int8_t*>(token.xh());
  const float* cs = token.folded();  // zeros past the last chunk: a partial last step
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    token.fold_row(n);
    __m512 total = _mm512_setzero_ps(), spare = _mm512_setzero_ps();
    // Rows are padded to 64 bytes and activations to whole steps (zeros): a partial last step
    // reads inside both.
    auto step = [&](int64_t c) {
      const ScaledDot p = step_dot(row + c * Bits * 4, xb + c * 64, cs + c);
      total = _mm512_fmadd_ps(p.dot, p.scale, total);
      std::swap(total, spare);
    };
    for_each_step_by_line<Bits, Step>(row, a.chunks, step);
    store_totals_avx512(token, n, total, spare);
  }
}

inline void gemv_int16_u4_single_token_vnni512(const GemvInt16Args& a, int64_t r0) {
  // Constants made inside the step (hoisted by the compiler): captured, they travelled on the
  // stack and were reloaded every step.
  single_token_split_rows<4, 4>(a, r0, [](const uint8_t* codes, const int8_t* x, const float* s) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    const __m512i quarters = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512i b = _mm512_loadu_si512(codes);
    // One load: GCC folded it into both the mask and the shift, and the loads bound this loop
    // (W4A16 g32 M = 1, 4096^2 in cache, 2 threads: 68-69 -> 72.5-73 GB/s).
    __asm__("" : "+v"(b));
    const __m512i lo = _mm512_and_si512(b, low4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
    return ScaledDot{_mm512_cvtepi32_ps(split_dot_u4(lo, hi, x)),
                     _mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(_mm_loadu_ps(s)))};
  });
}

/// One token with 8-bit codes on plain int16 activations (layout {1, 32}): per chunk the 32
/// codes widen to int16 lanes and meet the chunk's activations in one vpdpwssd.
inline void gemv_int16_u8_single_token_vnni512(const GemvInt16Args& a, int64_t r0) {
  single_token_split_rows<8, 1>(a, r0, [](const uint8_t* codes, const int8_t* x, const float* s) {
    const __m512i w =
        _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes)));
    const __m512i d = _mm512_dpwssd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(x));
    return ScaledDot{_mm512_cvtepi32_ps(d), _mm512_set1_ps(*s)};
  });
}

/// 4-bit codes for Rows tokens on split-byte activations (layout {4, 16, split}, as
/// gemv_int16_u4_single_token_vnni512): the 64 bytes of codes of a step are unpacked once and
/// meet every token through 4 vpdpbusd; each token's lanes are scaled by its chunk scales times
/// the chunks' group scales (spread per chunk once per row). Any group size, per-channel too.
/// Per token and step 6 ops on port 0, where gemv_int16_rows_avx2 took 16 ops on 256-bit
/// lanes for the same four chunks: W4A16 g32 4096^2 in cache, 2 threads, M = 8 / 32 / 128:
/// 133-139 / 139-149 / 140-144 -> 207-210 / 163-174 / 210-227 GFLOPS (16 tokens a pass: less).
/// From 2 tokens on the 16-channel tiles (gemv_int16_u4_tiled_vnni512) replaced it; it still
/// takes one token whose group size the single-token kernel does not (3 chunks, say).
template <int Rows>
void gemv_int16_u4_tokens_vnni512(const GemvInt16Args& a, int64_t r0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  ChunkScaleSpread scales(chunks, a.w.groups, chunks_per_group);
  const float* ws = scales.spread();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i quarters = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const int8_t* xb[Rows];
  const float* sx[Rows];
  for (int r = 0; r < Rows; ++r) {
    xb[r] = reinterpret_cast<const int8_t*>(a.xh + (r0 + r) * a.xh_stride);
    sx[r] = a.chunk_scales + (r0 + r) * chunks;
  }
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const RowGroupParams g = row_group_params(a.w, n, scales.scratch());
    scales.spread_from(g.s, a.w.groups);
    __m512 total[Rows];
    for (auto& t : total) t = _mm512_setzero_ps();
    // Rows are padded to 64 bytes and activations to whole steps (zeros); the chunk scales are
    // not, so a partial last step loads them masked.
    for (int64_t c = 0; c < chunks; c += 4) {
      prefetch_ahead(row + c * 16);
      const __m512i b = _mm512_loadu_si512(row + c * 16);
      const __m512i lo = _mm512_and_si512(b, low4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
      const __m512 group_scale =
          _mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(_mm_loadu_ps(ws + c)));
      const auto in_row = static_cast<__mmask8>(c + 4 <= chunks ? 0xF : (1 << (chunks - c)) - 1);
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m512i d = split_dot_u4(lo, hi, xb[r] + c * 64);
        const __m512 chunk_scale = _mm512_permutexvar_ps(
            quarters, _mm512_castps128_ps512(_mm_maskz_loadu_ps(in_row, sx[r] + c)));
        total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(group_scale, chunk_scale),
                                   total[r]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const float bias = group_bias_term(g.s, g.off, a.w.code_bias,
                                         a.xh_group_sums + (r0 + r) * a.w.groups, a.w.groups);
      a.w.y[(r0 + r) * a.w.y_stride + n] = horizontal_sum(halves_added(total[r])) + bias;
    }
  }
}

#if defined(__AVX512VNNI__)
/// 4-bit codes in 16-channel tiles (gemv_int8_tiles.h) for Rows tokens on split-byte
/// activations (layout {4, 16, split}): per quad of a chunk (elements 4q..4q+3 in the low
/// nibbles, 16+4q.. in the high ones) and token, the high bytes meet both nibble sets in one
/// chain and the low bytes (the unsigned operand, codes as the signed one) in another; per chunk
/// the two chains combine as 256 high + low, and the float total takes them times the group's
/// 16 scales times the token's chunk scale. The bias (qmin and offsets) goes in per group
/// through the token's group sum of the rounded x. Against gemv_int16_u4_tokens_vnni512 (one
/// row at a time, a horizontal sum per row and token) the channels sit in the lanes.
template <int Rows>
void u4_tile_tokens_i16(const GemvInt16Args& a, const ChannelTile& t, int64_t r0, int64_t n0) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const uint8_t* xb[Rows];
  const float* sx[Rows];
  const float* xsums[Rows];
  for (int r = 0; r < Rows; ++r) {
    xb[r] = reinterpret_cast<const uint8_t*>(a.xh + (r0 + r) * a.xh_stride);
    sx[r] = a.chunk_scales + (r0 + r) * chunks;
    xsums[r] = a.xh_group_sums + (r0 + r) * a.w.groups;
  }
  // The tiles' dword broadcast (gemv_int8_tiles.h), on the activations' bytes.
  auto quad = [](const uint8_t* p) { return Lanes512::quad(reinterpret_cast<const int8_t*>(p)); };
  __m512 total[Rows];
  for (auto& v : total) v = _mm512_setzero_ps();
  for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
    const __m512 scale = _mm512_loadu_ps(t.scales.data() + g * 16);
    for (int64_t c = c0; c < std::min(chunks, c0 + chunks_per_group); ++c) {
      __m512i high[Rows], low[Rows];
      // Byte offset of chunk c's first run in a token's row: four chunks per 256 bytes.
      const int64_t at = (c / 4) * 256 + (c % 4) * 16;
      auto nibbles = [&](int q, __m512i* lo, __m512i* hi) {
        const __m512i codes = _mm512_loadu_si512(t.quads + (c * 4 + q) * 16);
        *lo = byte_field<0, 4>(codes);
        *hi = byte_field<4, 4>(codes);
      };
      if constexpr (Rows == 8) {
        // Named accumulators and the quads unrolled: as arrays (or with the quad loop rolled)
        // GCC 12 copied them between registers around every vpdpbusd and spilled some. W4A16
        // g32, 4096^2 in cache, 2 threads, M = 8 / 32 / 128 / 512: 480 / 510-560 / 600 / 590 ->
        // 540 / 605-660 / 710 / 690 GFLOPS.
        __m512i h0 = _mm512_setzero_si512(), h1 = h0, h2 = h0, h3 = h0, h4 = h0, h5 = h0, h6 = h0,
                h7 = h0, l0 = h0, l1 = h0, l2 = h0, l3 = h0, l4 = h0, l5 = h0, l6 = h0, l7 = h0;
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          __m512i lo, hi;
          nibbles(q, &lo, &hi);
#define QK_TOKEN(r)                                      \
  {                                                      \
    const uint8_t* x = xb[r] + at + 4 * q;               \
    h##r = _mm512_dpbusd_epi32(h##r, lo, quad(x));       \
    h##r = _mm512_dpbusd_epi32(h##r, hi, quad(x + 128)); \
    l##r = _mm512_dpbusd_epi32(l##r, quad(x + 64), lo);  \
    l##r = _mm512_dpbusd_epi32(l##r, quad(x + 192), hi); \
  }
          QK_TOKEN(0)
          QK_TOKEN(1) QK_TOKEN(2) QK_TOKEN(3) QK_TOKEN(4) QK_TOKEN(5) QK_TOKEN(6) QK_TOKEN(7)
#undef QK_TOKEN
        }
        const __m512i named_high[8] = {h0, h1, h2, h3, h4, h5, h6, h7};
        const __m512i named_low[8] = {l0, l1, l2, l3, l4, l5, l6, l7};
        for (int r = 0; r < 8; ++r) high[r] = named_high[r], low[r] = named_low[r];
      } else {
        for (int r = 0; r < Rows; ++r) high[r] = low[r] = _mm512_setzero_si512();
        for (int q = 0; q < 4; ++q) {
          __m512i lo, hi;
          nibbles(q, &lo, &hi);
#pragma GCC unroll 8
          for (int r = 0; r < Rows; ++r) {
            const uint8_t* x = xb[r] + at + 4 * q;
            high[r] = _mm512_dpbusd_epi32(high[r], lo, quad(x));
            high[r] = _mm512_dpbusd_epi32(high[r], hi, quad(x + 128));
            low[r] = _mm512_dpbusd_epi32(low[r], quad(x + 64), lo);
            low[r] = _mm512_dpbusd_epi32(low[r], quad(x + 192), hi);
          }
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m512i d = _mm512_add_epi32(_mm512_slli_epi32(high[r], 8), low[r]);
        total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                   _mm512_mul_ps(scale, _mm512_set1_ps(sx[r][c])), total[r]);
      }
    }
    const __m512 bias =  // qmin s + off, exact as the product is
        _mm512_fmadd_ps(_mm512_set1_ps(a.w.code_bias), scale,
                        _mm512_loadu_ps(t.offsets.data() + g * 16));
    for (int r = 0; r < Rows; ++r)
      total[r] = _mm512_fmadd_ps(bias, _mm512_set1_ps(xsums[r][g]), total[r]);
  }
  const auto valid = static_cast<__mmask16>((1u << std::min<int64_t>(16, a.w.n_end - n0)) - 1);
  for (int r = 0; r < Rows; ++r)
    _mm512_mask_storeu_ps(a.w.y + (r0 + r) * a.w.y_stride + n0, valid, total[r]);
}

/// The slice through 16-channel tiles of 4-bit codes, 8 tokens a pass. Zen 5, 4096^2 in cache,
/// 2 threads, against gemv_int16_u4_tokens_vnni512: W4A16 g32 M = 2 / 3 / 4 / 8 / 32 / 128
/// 170 / 155 / 290 / 253 / 258 / 276 -> 240 / 235 / 425 / 482 / 560 / 545 GFLOPS; per channel
/// M = 32 340 -> 670, g128 M = 32 280 -> 650. It also beats dequantized tiles + sgemm at any M
/// (g32 M = 256 / 512 / 1024: 168 / 195 / 215 against 530 / 560 / 550), so at the avx512 level
/// the int16 GEMV takes 4-bit weights at every M (gemm_min_rows).
inline void gemv_int16_u4_tiled_vnni512(const GemvInt16Args& a) {
  thread_local ChannelTile tile;
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += 16) {
    fill_channel_tile16<4>(a.w, n0, tile);
    int64_t r = 0;
    for (; r + 8 <= a.m; r += 8) u4_tile_tokens_i16<8>(a, tile, r, n0);
    for (; r + 4 <= a.m; r += 4) u4_tile_tokens_i16<4>(a, tile, r, n0);
    for (; r < a.m; ++r) u4_tile_tokens_i16<1>(a, tile, r, n0);
  }
}
#endif

/// One token with 2-bit codes and split-byte activations (layout {8, 8, split}), eight chunks
/// per 512-bit step: bit field i of byte 8q + j holds element 8i + j of chunk c + q, and meets
/// run i of the activations (their high bytes at 128 i, low bytes at 128 i + 64) as in
/// gemv_int16_u4_single_token_vnni512. Int32 lanes 2q, 2q + 1 belong to chunk c + q. Per eight
/// chunks 19 ops, 13 on port 0, where two steps of the int16 kernel on {4, 8} it replaced took
/// 30 (16): 1.16x in cache, 1.10-1.23x from DRAM on 1 thread (2 threads: within noise). The
/// bit fields come out of GFNI affine transforms (byte_field: 4 ops instead of 7) and the high
/// and low products run in two chains: 1 thread, 4096^2 g32 in L3, Zen 5: 28.5-29.0 -> 32.3-32.8
/// GB/s; 2 threads from DRAM 49-50 -> 51-56 (the probe: 86).
inline void gemv_int16_u2_single_token_vnni512(const GemvInt16Args& a, int64_t r0) {
  single_token_split_rows<2, 8>(a, r0, [](const uint8_t* codes, const int8_t* x, const float* s) {
    const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i b = _mm512_loadu_si512(codes);
    const __m512i f[4] = {byte_field<0, 2>(b), byte_field<2, 2>(b), byte_field<4, 2>(b),
                          byte_field<6, 2>(b)};
    auto high = [&](int i) { return _mm512_loadu_si512(x + 128 * i); };
    auto low = [&](int i) { return _mm512_loadu_si512(x + 128 * i + 64); };
    __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), f[0], high(0));
    __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), low(0), f[0]);
    hi = _mm512_dpbusd_epi32(hi, f[1], high(1));
    lo = _mm512_dpbusd_epi32(lo, low(1), f[1]);
    hi = _mm512_dpbusd_epi32(hi, f[2], high(2));
    lo = _mm512_dpbusd_epi32(lo, low(2), f[2]);
    hi = _mm512_dpbusd_epi32(hi, f[3], high(3));
    lo = _mm512_dpbusd_epi32(lo, low(3), f[3]);
    const __m512i d = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
    return ScaledDot{_mm512_cvtepi32_ps(d),
                     _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(s)))};
  });
}
#endif

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

/// One token with 2-bit codes on split-byte activations (layout {4, 8, split}), four chunks per
/// 256-bit step without VNNI: bit field i of byte 8q + j holds element 8i + j of chunk c + q
/// and meets run i of the activations, whose high bytes (signed) sit at 128 (i / 2) + 32 (i % 2)
/// and low bytes (unsigned) 64 further. vpmaddubsw takes 32 byte products an instruction where
/// vpmaddwd on widened codes took 16: fields times high bytes (|pair| <= 2 * 3 * 128) and low
/// bytes times fields (<= 2 * 255 * 3) summed over the four fields in int16 (<= 3072 and 6120),
/// then 256 high + low in int32 by one vpmaddwd each. Int32 lanes 2q, 2q + 1 belong to chunk
/// c + q. Per four chunks 27 ops where the int16 kernel on pairs of chunks ({2, 8}) took 34; in
/// L2 about level with it (both multiply on two pipes: 10 multiplies against 8, Zen 3), and
/// with InlineFold32 14.3 -> 12.3 cycles per 32 bytes of codes; from DRAM, 2 threads, 1 GiB,
/// interleaved: 1.22-1.27x at group size 32, 1.27x per channel.
/// Rows are padded to 64 bytes and activations to whole groups of 8 chunks (zeros): a partial
/// last step reads inside both; `scales` holds 4 folded scales (zeros past the last chunk).
inline ScaledDot8 u2_split_step_avx2(const uint8_t* codes, const uint8_t* x, const float* scales) {
  const __m256i three = _mm256_set1_epi8(3);
  const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
  const __m256i f[4] = {_mm256_and_si256(b, three),
                        _mm256_and_si256(_mm256_srli_epi16(b, 2), three),
                        _mm256_and_si256(_mm256_srli_epi16(b, 4), three),
                        _mm256_and_si256(_mm256_srli_epi16(b, 6), three)};
  auto bytes = [&](int i, int low) {
    return _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(x + 128 * (i / 2) + 32 * (i % 2) + 64 * low));
  };
  const __m256i high = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(f[0], bytes(0, 0)),
                                                         _mm256_maddubs_epi16(f[1], bytes(1, 0))),
                                        _mm256_add_epi16(_mm256_maddubs_epi16(f[2], bytes(2, 0)),
                                                         _mm256_maddubs_epi16(f[3], bytes(3, 0))));
  const __m256i low = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(bytes(0, 1), f[0]),
                                                        _mm256_maddubs_epi16(bytes(1, 1), f[1])),
                                       _mm256_add_epi16(_mm256_maddubs_epi16(bytes(2, 1), f[2]),
                                                        _mm256_maddubs_epi16(bytes(3, 1), f[3])));
  const __m256i d = _mm256_add_epi32(_mm256_madd_epi16(high, _mm256_set1_epi16(256)),
                                     _mm256_madd_epi16(low, _mm256_set1_epi16(1)));
  return ScaledDot8{_mm256_cvtepi32_ps(d),
                    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(scales)), pairs)};
}

inline void gemv_int16_u2_single_token_split_avx2(const GemvInt16Args& a, int64_t r0) {
  const auto* xb = reinterpret_cast<const uint8_t*>(a.xh + r0 * a.xh_stride);
  auto step = [xb](const uint8_t* row, int64_t c, const float* scales) {
    return u2_split_step_avx2(row + c * 8, xb + c * 64, scales);
  };
  if (single_token_rows_fold32_avx2<2, 4>(a, r0, step)) return;
  SingleTokenScales token(a, r0);
  single_token_rows_avx2<2, 4>(
      a, step,
      [&](int64_t n) {
        token.fold_row(n);
        return token.folded();
      },
      [&](int64_t n, float sum) { token.store_sum(n, sum); });
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

template <int Bits, bool PerChannel>
void gemv_int16_avx2(const GemvInt16Args& a) {
  int64_t m = 0;
  if constexpr (Bits == 2) {
    for (; m + 4 <= a.m; m += 4) gemv_int16_w2_rows_avx2<4, PerChannel>(a, m);
    if (a.m - m == 3) gemv_int16_w2_rows_avx2<3, PerChannel>(a, m);
    if (a.m - m == 2) gemv_int16_w2_rows_avx2<2, PerChannel>(a, m);
    if (a.m - m == 1) {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
      if (a.layout == Int16Layout{8, 8, true}) {
        gemv_int16_u2_single_token_vnni512(a, m);
        return;
      }
#endif
      if (a.layout == Int16Layout{4, 8, true}) {
        gemv_int16_u2_single_token_split_avx2(a, m);
      } else {
        gemv_int16_w2_rows_avx2<1, PerChannel>(a, m);
      }
    }
  } else {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
    if (Bits == 4 && a.layout == Int16Layout{4, 16, true} &&
        !(a.m == 1 && (a.w.groups == 1 || int16_single_token_shape(a.w.groups, a.w.group_size)))) {
#if defined(__AVX512VNNI__)
      if (a.m >= 2) {
        gemv_int16_u4_tiled_vnni512(a);
        return;
      }
#endif
      for (; m < a.m; ++m) gemv_int16_u4_tokens_vnni512<1>(a, m);
      return;
    }
#endif
    for (; m + 4 <= a.m; m += 4) gemv_int16_rows_avx2<Bits, 4, PerChannel>(a, m);
    if (a.m - m == 3) gemv_int16_rows_avx2<Bits, 3, PerChannel>(a, m);
    if (a.m - m == 2) gemv_int16_rows_avx2<Bits, 2, PerChannel>(a, m);
    if (a.m - m == 1) {
#if defined(__AVX512BW__) && defined(__AVX512DQ__)
      if (Bits == 4 && a.layout == Int16Layout{4, 16, true}) {
        gemv_int16_u4_single_token_vnni512(a, m);
        return;
      }
      if (Bits == 8 && decode_tuning.wide_8bit_single_token &&
          (a.w.groups == 1 || int16_single_token_shape(a.w.groups, a.w.group_size))) {
        gemv_int16_u8_single_token_vnni512(a, m);
        return;
      }
#endif
      // 4-bit single-token steps read layout {2, 8}, which only a one-token call has (the last
      // token of several comes in the plain layout). Per-channel 8-bit rows stay on the row
      // kernel: 2.8 against 3.8 cycles per 32 bytes of codes in L2, level from DRAM (Zen 3).
      const bool single_token =
          Bits == 8 ? int16_single_token_shape(a.w.groups, a.w.group_size)
                    : a.layout == Int16Layout{2, 8} &&
                          (a.w.groups == 1 || int16_single_token_shape(a.w.groups, a.w.group_size));
      if (single_token) {
        gemv_int16_single_token_avx2<Bits>(a, m);
      } else {
        gemv_int16_rows_avx2<Bits, 1, PerChannel>(a, m);
      }
    }
  }
}
#endif

/// W . x with x given as int16 chunks (GemvInt16Args): per group s_g * sum_c scale_c (xh . u)_c,
/// plus what qmin and the offsets add through the group sums of the rounded x.
template <int Bits>
void gemv_int16(const GemvInt16Args& a) {
#if defined(__AVX2__)
  a.w.groups == 1 ? gemv_int16_avx2<Bits, true>(a) : gemv_int16_avx2<Bits, false>(a);
  return;
#endif
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? a.chunks : a.w.group_size / kChunk;
  for (int64_t r = 0; r < a.m; ++r) {
    const int16_t* xh = a.xh + r * a.xh_stride;
    const float* sx = a.chunk_scales + r * a.chunks;
    const float* sums = a.xh_group_sums + r * a.w.groups;
    for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
      const uint8_t* row = a.w.codes + n * a.w.row_bytes;
      const float* s = float32_row_params(a.w, n).s;
      double out = 0.0;
      for (int64_t c0 = 0, g = 0; c0 < a.chunks; c0 += chunks_per_group, ++g) {
        double group = 0.0;
        for (int64_t c = c0; c < std::min(a.chunks, c0 + chunks_per_group); ++c)
          group += static_cast<double>(sx[c]) * dot_chunk_i16<Bits>(xh, a.layout, row, c);
        const double off = a.w.offsets != nullptr ? a.w.offsets[n * a.w.groups + g] : 0.0;
        out += s[g] * group + (a.w.code_bias * static_cast<double>(s[g]) + off) * sums[g];
      }
      a.w.y[r * a.w.y_stride + n] = static_cast<float>(out);
    }
  }
}

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

// The AVX2 single-token (decode) kernels on int16 activations: per row the chunk scales folded
// into the group scales (inline at group size 32), 4-bit codes two chunks a step on layout {2, 8},
// 2-bit codes four chunks a step through vpmaddubsw on split bytes (layout {4, 8, split}).
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int16_rows.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX2__)
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
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

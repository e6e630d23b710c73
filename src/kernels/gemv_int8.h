// Dynamic int8 activations (GemvInt8Args) along the packed rows: W8A8 / W4A8 for few tokens,
// and the dispatch to the channel tiles (gemv_int8_tiles.h) for more.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int8_tile_pairs.h"
#include "gemv_rows.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

/// Integer dot products of int8 activations with 8-bit (signed) or 4-bit codes over whole
/// 32-element chunks (activations are zero-padded). Portable form: the specification of the
/// AVX2 kernels gemv_int8_w8_rows_avx2 and gemv_int8_w4_avx2.
template <int Bits>
inline int32_t dot_chunk_int(const int8_t* xq, const uint8_t* row, int64_t c, int32_t code_bias) {
  int32_t sum = 0;
  if constexpr (Bits == 8) {
    for (int j = 0; j < 32; ++j) sum += static_cast<int32_t>(xq[j]) * (row[c * 32 + j] + code_bias);
  } else {
    for (int j = 0; j < 16; ++j) {
      const uint8_t b = row[c * 16 + j];
      sum += static_cast<int32_t>(xq[j]) * ((b & 0x0F) + code_bias) +
             static_cast<int32_t>(xq[j + 16]) * ((b >> 4) + code_bias);
    }
  }
  return sum;
}

#if defined(__AVX2__)
/// The 32 unsigned 4-bit codes of chunk c as bytes in element order (low nibbles are elements
/// 0..15, high nibbles 16..31), prefetching further along the row.
template <bool Prefetch>
inline __m256i nibbles_w4_chunk(const uint8_t* row, int64_t c) {
  if constexpr (Prefetch) prefetch_at_line_start(row, c * 16);
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c * 16));
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), low4), _mm_and_si128(b, low4));
}

/// acc + the int32 lanes of chunk c's dot with xq.
template <bool Prefetch>
inline __m256i dot_w4_chunk(__m256i acc, const uint8_t* row, const int8_t* xq, int64_t c) {
  const __m256i u = nibbles_w4_chunk<Prefetch>(row, c);
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + c * kChunk));
  return dot_u8_s8(acc, u, x);
}

/// W4A8 for one token on unsigned codes: per chunk, maddubs(u, xq) summed into int32 lanes; per
/// group the lanes become floats scaled by s_g into one of two running totals (alternating, so
/// the total's FMA latency does not serialise one-chunk groups). qmin and the offsets enter once
/// per row through the group sums of xq, as in the float kernel.
inline void gemv_int8_w4_row_avx2(const GemvInt8Args& a, int64_t r) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int8_t* xq = a.xq + r * a.xq_stride;
  const float* xsums = a.xq_group_sums + r * a.w.groups;
  thread_local std::vector<float> buffer;  // the row's float32 scales, from compact metadata
  buffer.resize(static_cast<size_t>(a.w.groups));
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = buffer.data();
    float bias = 0.0f;
    if (a.w.scales_f16 != nullptr) {
      bias = expand_scales_with_bias(
          a.w.scales_f16 + n * a.w.groups,
          a.w.zero_points != nullptr ? a.w.zero_points + n * a.w.groups : nullptr, a.w.groups,
          a.w.code_bias, xsums, nullptr, buffer.data());
    } else {
      const RowGroupParams row_params = float32_row_params(a.w, n);
      s = row_params.s;
      bias = group_bias_term(s, row_params.off, a.w.code_bias, xsums, a.w.groups);
    }
    __m256 total0 = _mm256_setzero_ps(), total1 = _mm256_setzero_ps();
    if (chunks_per_group == 1) {  // one chunk per group (group size 32): a line per step
      int64_t c = 0;
      auto chunk = [&](int64_t ci, __m256& total) {
        total = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot_w4_chunk<false>(_mm256_setzero_si256(), row, xq, ci)),
            _mm256_broadcast_ss(s + ci), total);
      };
      for (; c + 4 <= chunks; c += 4) {  // a 64-byte line: one prefetch (1.05-1.07x)
        prefetch_ahead(row + c * 16);
        chunk(c, total0);
        chunk(c + 1, total1);
        chunk(c + 2, total0);
        chunk(c + 3, total1);
      }
      for (; c < chunks; ++c) chunk(c, c % 2 == 0 ? total0 : total1);
    } else {
      for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
        const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
        int64_t c = c0;
        for (; c + 2 <= c1; c += 2) {
          acc0 = dot_w4_chunk<true>(acc0, row, xq, c);
          acc1 = dot_w4_chunk<true>(acc1, row, xq, c + 1);
        }
        if (c < c1) acc0 = dot_w4_chunk<true>(acc0, row, xq, c);
        total0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(acc0, acc1)),
                                 _mm256_broadcast_ss(s + g), total0);
        std::swap(total0, total1);
      }
    }
    const float out = horizontal_sum(_mm256_add_ps(total0, total1)) + bias;
    a.w.y[r * a.w.y_stride + n] = out * a.x_scale[r];
  }
}

#if defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VNNI__)

/// W4A8 for one token at the avx512 level, four chunks (64 bytes of codes) a step: the low
/// nibbles hold elements 0..15 of each chunk and the high ones 16..31, and two vshufi32x4
/// gather the matching activations from the token's natural order, so each vpdpbusd takes 64
/// codes. Int32 lanes 4q..4q+3 belong to chunk c + q, times that chunk's group scale (spread
/// per chunk once per row). Per step 10 ops on 512-bit lanes, where the avx2 row kernel took
/// about 9 per chunk on 256-bit ones.
inline void gemv_int8_w4_row_avx512(const GemvInt8Args& a, int64_t r) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int8_t* xq = a.xq + r * a.xq_stride;  // zero-padded to whole steps of 4 chunks
  const float* xsums = a.xq_group_sums + r * a.w.groups;
  ChunkScaleSpread scales(chunks, a.w.groups, chunks_per_group);
  const float* cs = scales.spread();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i quarters = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = nullptr;
    float bias = 0.0f;
    if (a.w.scales_f16 != nullptr) {
      float* dst = scales.expand_target();
      bias = expand_scales_with_bias(
          a.w.scales_f16 + n * a.w.groups,
          a.w.zero_points != nullptr ? a.w.zero_points + n * a.w.groups : nullptr, a.w.groups,
          a.w.code_bias, xsums, nullptr, dst);
      s = dst;
    } else {
      const RowGroupParams row_params = float32_row_params(a.w, n);
      s = row_params.s;
      bias = group_bias_term(s, row_params.off, a.w.code_bias, xsums, a.w.groups);
    }
    scales.spread_from(s, a.w.groups);
    __m512 total = _mm512_setzero_ps(), spare = _mm512_setzero_ps();
    // Rows are padded to 64 bytes, activations to whole steps (zeros): a partial last step
    // reads inside both, and its missing chunks have zero scales.
    for (int64_t c = 0; c < chunks; c += 4) {
      prefetch_ahead(row + c * 16);
      const __m512i b = _mm512_loadu_si512(row + c * 16);
      const __m512i x0 = _mm512_loadu_si512(xq + c * kChunk);       // chunks c, c + 1
      const __m512i x1 = _mm512_loadu_si512(xq + c * kChunk + 64);  // chunks c + 2, c + 3
      const __m512i x_low = _mm512_shuffle_i32x4(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));
      const __m512i x_high = _mm512_shuffle_i32x4(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
      __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(b, low4), x_low);
      d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(b, 4), low4), x_high);
      const __m512 scale =
          _mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(_mm_loadu_ps(cs + c)));
      total = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), scale, total);
      std::swap(total, spare);
    }
    const __m512 sum = _mm512_add_ps(total, spare);
    const float out =
        horizontal_sum(_mm256_add_ps(_mm512_castps512_ps256(sum), _mm512_extractf32x8_ps(sum, 1))) +
        bias;
    a.w.y[r * a.w.y_stride + n] = out * a.x_scale[r];
  }
}
#endif

/// W4A8: from kTileMinTokens[0] tokens on, channel tiles (gemv_int8_tiles.h: 1.3-1.8x the
/// per-row kernel with 4 tokens per decoded chunk that it replaced, 1 thread, M = 8..512);
/// below, one token at a time along the rows, which streams the weights once with no regrouping.
inline void gemv_int8_w4_avx2(const GemvInt8Args& a) {
  if (a.m >= kTileMinTokens[0]) {
    gemv_int8_tiled_avx2<4>(a);
    return;
  }
#if defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VNNI__)
  for (int64_t r = 0; r < a.m; ++r) gemv_int8_w4_row_avx512(a, r);
#else
  for (int64_t r = 0; r < a.m; ++r) gemv_int8_w4_row_avx2(a, r);
#endif
}
#endif

#if defined(__AVX2__)
/// W8A8 for Rows tokens at once: each weight chunk is loaded once and meets every token. With
/// VNNI through one vpdpbusd of the unsigned codes u, and q . x = u . x + qmin sum x per group
/// (in wrapping 32-bit arithmetic, which is exact: the true dot fits, whatever u . x does).
/// Without, the chunk is made signed and split into |q| once, then sign + maddubs + madd per
/// token: q = u + qmin may be -128, whose magnitude fits maddubs' unsigned operand, so
/// |q| * sign(x, q) is exact (activations stay within +-127) and below saturation
/// (2 * 128 * 127 < 32768). Per group the int32 dot is reduced and combined in double, as in
/// the portable specification (gemv_int8).
/// One token keeps one vpdpbusd chain on purpose: four independent chains ran 2.3x faster with
/// the weights in L2 (27 -> 64 GB/s, 1 thread) but 0.84x from DRAM (16.0 -> 13.5 GB/s 1 thread,
/// 29 -> 26 on 2; any prefetch distance). On Sapphire Rapids (with its L1 prefetch 1 KiB ahead)
/// a loop that outruns DRAM streams worse than one that just keeps up. Zen 5, without that
/// prefetch, streams best with the fastest loop: where DecodeTuning::wide_w8a8_single_token
/// holds, one token goes through gemv_int8_w8_token_vnni512.
template <int Rows>
void gemv_int8_w8_rows_avx2(const GemvInt8Args& a, int64_t r0) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const __m256i ones16 = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(-128);
  const int8_t* xq[Rows];
  for (int r = 0; r < Rows; ++r) xq[r] = a.xq + (r0 + r) * a.xq_stride;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const float* s = float32_row_params(a.w, n).s;
    double out[Rows] = {};
    for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
      const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
      __m256i acc[Rows];
      for (int r = 0; r < Rows; ++r) acc[r] = _mm256_setzero_si256();
      for (int64_t c = c0; c < c1; ++c) {
        prefetch_at_line_start(row, c * 32);
        const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c * 32));
        if constexpr (kHaveVnni) {
          for (int r = 0; r < Rows; ++r) {
            acc[r] =
                dot_u8_s8(acc[r], u,
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[r] + c * kChunk)));
          }
          continue;
        }
        const __m256i q = _mm256_add_epi8(u, flip);
        const __m256i q_abs = _mm256_abs_epi8(q);
        for (int r = 0; r < Rows; ++r) {
          const __m256i x =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[r] + c * kChunk));
          acc[r] = _mm256_add_epi32(
              acc[r],
              _mm256_madd_epi16(_mm256_maddubs_epi16(q_abs, _mm256_sign_epi8(x, q)), ones16));
        }
      }
      for (int r = 0; r < Rows; ++r) {
        int32_t dot = horizontal_sum_i32(acc[r]);
        if constexpr (kHaveVnni) {
          const auto qmin_sum = static_cast<int32_t>(a.w.code_bias) *
                                static_cast<int32_t>(a.xq_group_sums[(r0 + r) * a.w.groups + g]);
          dot = static_cast<int32_t>(static_cast<uint32_t>(dot) + static_cast<uint32_t>(qmin_sum));
        }
        out[r] += static_cast<double>(s[g]) * dot;
        if (a.w.offsets != nullptr) {
          out[r] += static_cast<double>(a.w.offsets[n * a.w.groups + g]) *
                    a.xq_group_sums[(r0 + r) * a.w.groups + g];
        }
      }
    }
    for (int r = 0; r < Rows; ++r)
      a.w.y[(r0 + r) * a.w.y_stride + n] = static_cast<float>(out[r] * a.x_scale[r0 + r]);
  }
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// A group's share of one output of the VNNI W8A8 kernels, from the dot of the unsigned codes:
/// s (u . xq + qmin sum xq) in wrapping int32 (exact: the true dot fits, whatever u . xq does),
/// plus the offset (if any) times sum xq, in double as the portable specification (gemv_int8).
inline double w8_group_term(int32_t unsigned_dot, float qmin, float xsum, float scale,
                            const float* offset) {
  const auto qmin_sum = static_cast<int32_t>(qmin) * static_cast<int32_t>(xsum);
  const auto dot =
      static_cast<int32_t>(static_cast<uint32_t>(unsigned_dot) + static_cast<uint32_t>(qmin_sum));
  double out = static_cast<double>(scale) * dot;
  if (offset != nullptr) out += static_cast<double>(*offset) * xsum;
  return out;
}

/// One token of W8A8 at 512 bits: two chunks a vpdpbusd (groups of an even number of chunks, or
/// one group), reduced per group as gemv_int8_w8_rows_avx2.
inline void gemv_int8_w8_token_vnni512(const GemvInt8Args& a, int64_t r) {
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int8_t* xq = a.xq + r * a.xq_stride;
  const float* xsums = a.xq_group_sums + r * a.w.groups;
  for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
    const uint8_t* row = a.w.codes + n * a.w.row_bytes;
    const auto [s, off] = float32_row_params(a.w, n);
    double out = 0.0;
    for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
      const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
      __m512i acc = _mm512_setzero_si512();
      // Rows are padded to 64 bytes and xq to 128 (zeros): an odd last chunk reads inside both.
      for (int64_t c = c0; c < c1; c += 2) {
        prefetch_ahead(row + c * kChunk);
        acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(row + c * kChunk),
                                  _mm512_loadu_si512(xq + c * kChunk));
      }
      out += w8_group_term(_mm512_reduce_add_epi32(acc), a.w.code_bias, xsums[g], s[g],
                           off != nullptr ? off + g : nullptr);
    }
    a.w.y[r * a.w.y_stride + n] = static_cast<float>(out * a.x_scale[r]);
  }
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// Per-channel W8A8 on the rows as packed: Rows weight rows x Tokens tokens of int32 lanes, one
/// 64-byte load of each row and each token per step and a vpdpbusd per pair, each pair's lanes
/// summed once at the end (one group) and finished as gemv_int8_w8_token_vnni512 does. No
/// regrouping of the codes, which in 16-channel tiles took as long as the products at 8 tokens.
template <int Rows, int Tokens>
void w8_rows_by_tokens_vnni512(const GemvInt8Args& a, int64_t n0, int64_t r0) {
  const int64_t steps = (a.w.k + 63) / 64;  // rows padded to 64 bytes, xq to 128 (zeros)
  const uint8_t* row[Rows];
  const int8_t* xq[Tokens];
  for (int i = 0; i < Rows; ++i) row[i] = a.w.codes + (n0 + i) * a.w.row_bytes;
  for (int t = 0; t < Tokens; ++t) xq[t] = a.xq + (r0 + t) * a.xq_stride;
  // Into L2, the same line of the next block's rows (Rows rows on): prefetch_ahead's 8 KiB
  // along a row fell among this block's own rows. Streamed, M = 8: 390 -> 700 GOPS (two blocks
  // ahead: 610-680).
  auto load_row = [&](int i, int64_t s) {
    prefetch_l2(row[i] + Rows * a.w.row_bytes + s * 64);
    return _mm512_loadu_si512(row[i] + s * 64);
  };
  __m512i acc[Rows][Tokens];
  if constexpr (Rows == 4 && Tokens == 4) {
    // Named accumulators: as an array GCC 12 copied each into a fresh register before every
    // vpdpbusd and back after (32 moves a step beside 16 products). Zen 5, 4096^2, 2 threads,
    // in cache M = 4 / 8 / 12: 800-990 / 975-1000 / 950-960 -> 1035-1070 / 1160-1190 /
    // 1080-1115 GOPS; streamed M = 8: 745 -> 700-725 (the faster loop waits on DRAM more: the
    // L2 prefetch spread over passes, or sequential, or an L1 one beside it, only lost more).
    __m512i d00 = _mm512_setzero_si512(), d01 = d00, d02 = d00, d03 = d00, d10 = d00, d11 = d00,
            d12 = d00, d13 = d00, d20 = d00, d21 = d00, d22 = d00, d23 = d00, d30 = d00, d31 = d00,
            d32 = d00, d33 = d00;
    for (int64_t s = 0; s < steps; ++s) {
      const __m512i w0 = load_row(0, s), w1 = load_row(1, s), w2 = load_row(2, s),
                    w3 = load_row(3, s);
#define QK_TOKEN(t)                                       \
  {                                                       \
    const __m512i x = _mm512_loadu_si512(xq[t] + s * 64); \
    d0##t = _mm512_dpbusd_epi32(d0##t, w0, x);            \
    d1##t = _mm512_dpbusd_epi32(d1##t, w1, x);            \
    d2##t = _mm512_dpbusd_epi32(d2##t, w2, x);            \
    d3##t = _mm512_dpbusd_epi32(d3##t, w3, x);            \
  }
      QK_TOKEN(0) QK_TOKEN(1) QK_TOKEN(2) QK_TOKEN(3)
#undef QK_TOKEN
    }
    const __m512i named[4][4] = {
        {d00, d01, d02, d03}, {d10, d11, d12, d13}, {d20, d21, d22, d23}, {d30, d31, d32, d33}};
    for (int i = 0; i < 4; ++i)
      for (int t = 0; t < 4; ++t) acc[i][t] = named[i][t];
  } else {
    for (auto& per_row : acc)
      for (auto& v : per_row) v = _mm512_setzero_si512();
    for (int64_t s = 0; s < steps; ++s) {
      __m512i w[Rows];
      for (int i = 0; i < Rows; ++i) w[i] = load_row(i, s);
#pragma GCC unroll 8
      for (int t = 0; t < Tokens; ++t) {
        const __m512i x = _mm512_loadu_si512(xq[t] + s * 64);
#pragma GCC unroll 4
        for (int i = 0; i < Rows; ++i) acc[i][t] = _mm512_dpbusd_epi32(acc[i][t], w[i], x);
      }
    }
  }
  for (int i = 0; i < Rows; ++i) {
    const int64_t n = n0 + i;
    for (int t = 0; t < Tokens; ++t) {
      const double out = w8_group_term(_mm512_reduce_add_epi32(acc[i][t]), a.w.code_bias,
                                       a.xq_group_sums[(r0 + t) * a.w.groups], a.w.scales[n],
                                       a.w.offsets != nullptr ? a.w.offsets + n : nullptr);
      a.w.y[(r0 + t) * a.w.y_stride + n] = static_cast<float>(out * a.x_scale[r0 + t]);
    }
  }
}

/// Rows rows from n0 for every token, 4 a pass. 4 rows x 4 tokens beat 2 x 8 and 3 x 6 (Zen 5,
/// 4096^2 in cache, 2 threads, M = 8 / 32: 820 / 870 GOPS against 590-620 / 570-590).
template <int Rows>
void w8_rows_all_tokens_vnni512(const GemvInt8Args& a, int64_t n0) {
  int64_t r = 0;
  for (; r + 4 <= a.m; r += 4) w8_rows_by_tokens_vnni512<Rows, 4>(a, n0, r);
  if (a.m - r == 3) w8_rows_by_tokens_vnni512<Rows, 3>(a, n0, r);
  if (a.m - r == 2) w8_rows_by_tokens_vnni512<Rows, 2>(a, n0, r);
  if (a.m - r == 1) w8_rows_by_tokens_vnni512<Rows, 1>(a, n0, r);
}

/// Per-channel W8A8 for a few tokens (kWideRowsMaxTokens8Bit): 4 rows at a time (the rows' codes
/// stay in L1 for every token pass).
inline void gemv_int8_w8_per_channel_vnni512(const GemvInt8Args& a) {
  int64_t n = a.w.n_begin;
  for (; n + 4 <= a.w.n_end; n += 4) w8_rows_all_tokens_vnni512<4>(a, n);
  for (; n < a.w.n_end; ++n) w8_rows_all_tokens_vnni512<1>(a, n);
}
#endif

template <int Bits>
void gemv_int8(const GemvInt8Args& a) {
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
  if (a.w.channel_tiles) {  // as stored: the tiles take every token count
    gemv_int8_tiled_avx2<Bits>(a);
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (Bits == 4) {
    gemv_int8_w4_avx2(a);
    return;
  } else {
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    constexpr int64_t tile_min_tokens = kWideTileMinTokens8Bit;  // 16-channel tiles
#else
    // The rows reduce every group's dot across the lanes (in double), the 8-channel tiles never:
    // grouped weights take the tiles from 2 tokens. Per channel the rows win longer without
    // VNNI (kTileMinTokens); with it the tiles' vpdpbusd chains win from 6 tokens. 4096^2 in
    // cache, 1 thread, Emerald Rapids, GOPS rows -> tiles: avx2 g32 M = 2 / 8 22 / 30 -> 39 /
    // 72, g128 43 / 66 -> 47 / 83; avx2_vnni g32 21 / 33 -> 45 / 99, per channel M = 5 / 6 /
    // 8 / 16 101 / 81 / 137 / 135 -> 102 / 120 / 148 / 153-181. At one token the rows stream
    // better from DRAM (g32, 2 threads: 37-38 against 31-33 GOPS).
    const int64_t tile_min_tokens = a.w.groups > 1 ? 2 : kHaveVnni ? 6 : kTileMinTokens[1];
#endif
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    if (a.w.groups == 1 && a.m >= 2 && a.m < kWideRowsMaxTokens8Bit) {
      gemv_int8_w8_per_channel_vnni512(a);
      return;
    }
#endif
    if (a.m >= tile_min_tokens) {
      gemv_int8_tiled_avx2<8>(a);
      return;
    }
    int64_t r = 0;
    for (; r + 4 <= a.m; r += 4) gemv_int8_w8_rows_avx2<4>(a, r);
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    const int64_t cpg = a.w.group_size >= a.w.k ? 1 : a.w.group_size / kChunk;
    if (decode_tuning.wide_w8a8_single_token && (a.w.groups == 1 || cpg % 2 == 0)) {
      for (; r < a.m; ++r) gemv_int8_w8_token_vnni512(a, r);
      return;
    }
#endif
    // The last 1-3 tokens in one pass over the weight, not one pass each.
    if (a.m - r == 3) gemv_int8_w8_rows_avx2<3>(a, r);
    if (a.m - r == 2) gemv_int8_w8_rows_avx2<2>(a, r);
    if (a.m - r == 1) gemv_int8_w8_rows_avx2<1>(a, r);
    return;
  }
#endif
  const int64_t chunks = (a.w.k + kChunk - 1) / kChunk;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  // 8-bit codes become signed inside the dot; 4-bit codes need qmin * sum(x) per group.
  const bool bias_per_group = Bits != 8;
  const auto qmin = static_cast<int32_t>(a.w.code_bias);
  for (int64_t r = 0; r < a.m; ++r) {
    const int8_t* xq = a.xq + r * a.xq_stride;
    const float* xsums = a.xq_group_sums + r * a.w.groups;
    for (int64_t n = a.w.n_begin; n < a.w.n_end; ++n) {
      const uint8_t* row = a.w.codes + n * a.w.row_bytes;
      const float* s = float32_row_params(a.w, n).s;
      double out = 0.0;
      for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
        const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
        int32_t dot = 0;
        for (int64_t c = c0; c < c1; ++c)
          dot += dot_chunk_int<Bits>(xq + c * kChunk, row, c, bias_per_group ? 0 : qmin);
        if (bias_per_group) dot += qmin * static_cast<int32_t>(xsums[g]);
        out += static_cast<double>(s[g]) * dot;
        if (a.w.offsets != nullptr)
          out += static_cast<double>(a.w.offsets[n * a.w.groups + g]) * xsums[g];
      }
      a.w.y[r * a.w.y_stride + n] = static_cast<float>(out * a.x_scale[r]);
    }
  }
}

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

// The channel-tile kernels that take two adjacent 16-channel tiles at once (avx512), the
// one-token 4-bit tile kernel, and the slice dispatch over the tiles (gemv_int8_tiles.h).
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int8_tiles.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX2__)
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// What one token pass over a pair of stored tiles prefetches, line by line as it reads them.
/// The first pass streams the pair from DRAM: its own lines, decode_tuning's L2 distance ahead.
/// Each later pass (pass j of L) fetches every L-th line of the pair that follows in memory,
/// from line j - 1 on, so that its first pass finds the lines in L2: without it the later
/// passes ran from cache while DRAM idled, and the first pass of the next pair waited on DRAM.
/// Weights over 1 GiB, 4096^2, 2 threads, Zen 5, GOPS: W8A8 per channel M = 16 / 32: 1070-1084
/// -> 1243-1457 / 1489-1555 -> 1756-1888; W4A8 g32 M = 8 / 32: 888-932 -> 1000-1148 /
/// 1375-1434 -> 1468-1523; in cache no change beyond the noise. (Next-pair lines fetched during
/// the first pass instead, competing with its own stream, ran 3-30 % slower.)
class PassPrefetch {
 public:
  /// Pass `pass` of `passes` over the pair (ta, next to it in memory the tile after it).
  PassPrefetch(const ChannelTile& ta, int64_t row_bytes, int64_t pass, int64_t passes) {
    if (!ta.stored) return;
    const char* first = reinterpret_cast<const char*>(ta.quads);
    tile_bytes_ = 16 * row_bytes;
    if (pass == 0) {  // every line of its own tiles
      lines_ = first + decode_tuning.l2_prefetch_bytes;
      period_ = countdown_ = 1;
    } else if (passes <= kMaxPasses) {
      lines_ = first + 2 * tile_bytes_;
      period_ = passes - 1;
      countdown_ = pass;
    }
  }
  /// Beyond this many passes the first one's wait on DRAM weighs little, and fetching the next
  /// pair early cost 5 % in cache (W8A8 M = 512, 64 passes: 2000-2060 -> 1860-1990 GOPS).
  static constexpr int64_t kMaxPasses = 8;
  /// Whether it fetches anything at all (else the kernels take NoPrefetch: the countdown alone
  /// cost 2-4 % at 64 passes).
  bool active() const { return lines_ != nullptr; }
  /// Line `line` of the pair is about to be read.
  void at(int64_t line) {
    if (--countdown_ != 0) return;
    countdown_ = period_;
    prefetch_l2(lines_ + line * 64);
    prefetch_l2(lines_ + tile_bytes_ + line * 64);
  }

 private:
  const char* lines_ = nullptr;  // line 0 of the first tile fetched
  int64_t tile_bytes_ = 0;
  int64_t period_ = 0, countdown_ = 0;
};

/// A pass that prefetches nothing: tiles regrouped per call, or passes past
/// PassPrefetch::kMaxPasses.
struct NoPrefetch {
  void at(int64_t) {}
};

/// One quad of two adjacent 16-channel tiles' codes (quads index `quad` of each), unpacked
/// (4-bit: low and high nibbles), and the step of a token against both: each broadcast of the
/// token's activation bytes feeds both tiles.
template <int Bits>
struct PairQuad {
  __m512i la, ha, lb, hb;  // 8-bit: la, lb the codes as stored
  template <class Prefetch>
  PairQuad(const uint32_t* qa, const uint32_t* qb, int64_t quad, Prefetch& prefetch) {
    prefetch.at(quad);
    la = _mm512_loadu_si512(qa + quad * 16);
    lb = _mm512_loadu_si512(qb + quad * 16);
    if constexpr (Bits == 4) {
      ha = Lanes512::high_nibbles(la), hb = Lanes512::high_nibbles(lb);
      la = Lanes512::low_nibbles(la), lb = Lanes512::low_nibbles(lb);
    }
  }
  /// a, b (tile a's and b's lanes) plus the token's products: its 4 bytes at x (4-bit: and the
  /// 4 at x + 16, which the high nibbles hold).
  void dot(__m512i& a, __m512i& b, const int8_t* x) const {
    const __m512i lo = _mm512_set1_epi32(load_quad(x));
    a = _mm512_dpbusd_epi32(a, la, lo);
    b = _mm512_dpbusd_epi32(b, lb, lo);
    if constexpr (Bits == 4) {
      const __m512i hi = _mm512_set1_epi32(load_quad(x + 16));
      a = _mm512_dpbusd_epi32(a, ha, hi);
      b = _mm512_dpbusd_epi32(b, hb, hi);
    }
  }
};

/// Int32 dots of 8 tokens with two 16-channel tiles (32 channels) over chunks [c0, c1):
/// out[r][0..15] tile a, out[r][16..31] tile b. Each broadcast of 4 activation bytes feeds
/// both tiles: 10 loads per 16 vpdpbusd where one tile takes 9 per 8. In L1/L2 on Zen 5 that
/// ran 2.0 vpdpbusd a cycle against 1.2; W8A8 per channel, 4096^2 in cache, 2 threads, M = 32 /
/// 128 / 512: 1250 / 1450 / 1470 -> 1550 / 1925 / 2085 GOPS (oneDNN u8s8: 1880 / 2160 / -).
/// The 16 accumulators are named variables: GCC 12 kept arrays of them (dot[8][2]) in memory,
/// or copied each into a new register before every vpdpbusd, at 1.1 a cycle.
template <int Bits, class Prefetch>
void dots_8_tokens_32_channels(const uint32_t* qa, const uint32_t* qb, const int8_t* const* xq,
                               int64_t c0, int64_t c1, Prefetch& prefetch, int32_t (*out)[32]) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
          a7 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
  const int8_t *x0 = xq[0], *x1 = xq[1], *x2 = xq[2], *x3 = xq[3], *x4 = xq[4], *x5 = xq[5],
               *x6 = xq[6], *x7 = xq[7];
  for (int64_t c = c0; c < c1; ++c) {
    for (int q = 0; q < Bits; ++q) {
      // 4-bit: dword q of a 16-byte chunk holds elements 4q.. (low nibbles), 16 + 4q.. (high).
      const PairQuad<Bits> w(qa, qb, c * Bits + q, prefetch);
      const int64_t at = c * 32 + 4 * q;
      w.dot(a0, b0, x0 + at), w.dot(a1, b1, x1 + at), w.dot(a2, b2, x2 + at);
      w.dot(a3, b3, x3 + at), w.dot(a4, b4, x4 + at), w.dot(a5, b5, x5 + at);
      w.dot(a6, b6, x6 + at), w.dot(a7, b7, x7 + at);
    }
  }
  const __m512i dots[16] = {a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7};
  for (int i = 0; i < 16; ++i) _mm512_storeu_si512(out[i / 2] + 16 * (i % 2), dots[i]);
}

/// The same for 2-7 tokens. Each token's dot per tile is one vpdpbusd chain (latency 5, two
/// ports), so with fewer than 4 tokens the quads alternate between two sets of chains to keep
/// 8-12 in flight. Against one tile at a time (a chain per token), stored tiles, 4096^2 in
/// cache, 2 threads, Zen 5, M = 2 / 3 / 4 / 7, GOPS: W8A8 per channel 512 / 741 / 935 / 1434 ->
/// 604 / 787 / 1122 / 1691; W4A8 per channel 535 / 804 / 1049 / 1558 -> 978 / 1321 / 1501 /
/// 1891. (At 8 tokens this form ran 1-3 % behind the named registers.)
template <int Bits, int Tokens, class Prefetch>
void dots_few_tokens_32_channels(const uint32_t* qa, const uint32_t* qb, const int8_t* const* xq,
                                 int64_t c0, int64_t c1, Prefetch& prefetch, int32_t (*out)[32]) {
  constexpr int kChainSets = Tokens < 4 ? 2 : 1;
  __m512i acc[kChainSets][Tokens][2];
  for (auto& set : acc)
    for (auto& token : set) token[0] = token[1] = _mm512_setzero_si512();
  for (int64_t c = c0; c < c1; ++c) {
#pragma GCC unroll 8
    for (int q = 0; q < Bits; ++q) {
      const PairQuad<Bits> w(qa, qb, c * Bits + q, prefetch);
      auto& set = acc[q % kChainSets];
      for (int r = 0; r < Tokens; ++r) w.dot(set[r][0], set[r][1], xq[r] + c * 32 + 4 * q);
    }
  }
  for (int r = 0; r < Tokens; ++r) {
    for (int half = 0; half < 2; ++half) {
      __m512i sum = acc[0][r][half];
      if constexpr (kChainSets == 2) sum = _mm512_add_epi32(sum, acc[1][r][half]);
      _mm512_storeu_si512(out[r] + 16 * half, sum);
    }
  }
}

/// y[r0..r0+Tokens, n0..n0+32) from two adjacent 16-channel tiles (tb: channels n0 + 16..): per
/// group the int32 dots above plus the code sums, then floats times the group scales plus the
/// offsets times the token's group sum, as channel_tile_tokens does for one tile. The totals live
/// in memory, a round trip per group: at group size 32 that cost more than the shared broadcasts
/// saved (W4A8 g32 M = 128: 0.93x), so one-chunk groups keep the one-tile kernel.
template <int Bits, int Tokens, class Prefetch>
void channel_tile_pair_tokens(const GemvInt8Args& a, const ChannelTile& ta, const ChannelTile& tb,
                              int64_t r0, int64_t n0, Prefetch prefetch) {
  constexpr int kTokens = Tokens;
  const int64_t chunks = (a.w.k + 31) / 32;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / 32;
  const TileTokens<kTokens> tokens(a, r0);
  alignas(64) int32_t dots[kTokens][32];
  alignas(64) float total[kTokens][32] = {};
  for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
    const int64_t c1 = std::min(chunks, c0 + chunks_per_group);
    if constexpr (Tokens == 8) {
      dots_8_tokens_32_channels<Bits>(ta.quads, tb.quads, tokens.xq, c0, c1, prefetch, dots);
    } else {
      dots_few_tokens_32_channels<Bits, Tokens>(ta.quads, tb.quads, tokens.xq, c0, c1, prefetch,
                                                dots);
    }
    for (int half = 0; half < 2; ++half) {
      const ChannelTile& t = half == 0 ? ta : tb;
      __m512 scale, off;
      tile_group_params(t, g, scale, off);
      for (int r = 0; r < kTokens; ++r) {
        float* out = total[r] + 16 * half;
        const __m512i signed_dot = _mm512_add_epi32(_mm512_load_si512(dots[r] + 16 * half),
                                                    _mm512_set1_epi32(tokens.code_sums[r][g]));
        __m512 v = _mm512_fmadd_ps(Lanes512::to_float(signed_dot), scale, _mm512_load_ps(out));
        if (t.has_offsets) v = _mm512_fmadd_ps(off, _mm512_set1_ps(tokens.xsums[r][g]), v);
        _mm512_store_ps(out, v);
      }
    }
  }
  TileTokens<kTokens>::store(a, r0, n0, total);
}
/// The last `left` (2..Tokens - 1) tokens from r on with two tiles, compiled for that many.
template <int Bits, int Tokens, class Prefetch>
void channel_tile_pair_remainder(const GemvInt8Args& a, const ChannelTile& ta,
                                 const ChannelTile& tb, int64_t r, int64_t n0, int64_t left,
                                 const Prefetch& prefetch) {
  if constexpr (Tokens > 2) {
    if (left == Tokens - 1) {
      channel_tile_pair_tokens<Bits, Tokens - 1>(a, ta, tb, r, n0, prefetch);
      return;
    }
    channel_tile_pair_remainder<Bits, Tokens - 1>(a, ta, tb, r, n0, left, prefetch);
  }
}

/// Group size 32 for 4 tokens with two adjacent 16-channel tiles: per chunk the int32 dots of
/// 4 tokens x 32 channels (each broadcast feeding both tiles), then straight into the float
/// totals, which stay in registers beside the dots (8 + 8 named, as in
/// dots_8_tokens_32_channels). Per vpdpbusd 0.6 loads where the one-tile kernel at 8 tokens
/// takes 1.1: W4A8 g32, 4096^2 in cache, 2 threads, Zen 5, M = 8 / 32 / 128 / 512: 780 / 1110 /
/// 1365 / 1210 -> 872 / 1350 / 1578 / 1530 GOPS.
template <int Bits, class Prefetch>
void channel_tile_pair_4_tokens_chunk_groups(const GemvInt8Args& a, const ChannelTile& ta,
                                             const ChannelTile& tb, int64_t r0, int64_t n0,
                                             Prefetch prefetch) {
  const int64_t chunks = (a.w.k + 31) / 32;
  const TileTokens<4> tokens(a, r0);
  const int8_t *x0 = tokens.xq[0], *x1 = tokens.xq[1], *x2 = tokens.xq[2], *x3 = tokens.xq[3];
  __m512 ya0 = _mm512_setzero_ps(), ya1 = ya0, ya2 = ya0, ya3 = ya0, yb0 = ya0, yb1 = ya0,
         yb2 = ya0, yb3 = ya0;
  const bool offsets = ta.has_offsets;
  for (int64_t c = 0; c < chunks; ++c) {
    __m512i a0 = _mm512_set1_epi32(tokens.code_sums[0][c]), b0 = a0,
            a1 = _mm512_set1_epi32(tokens.code_sums[1][c]), b1 = a1,
            a2 = _mm512_set1_epi32(tokens.code_sums[2][c]), b2 = a2,
            a3 = _mm512_set1_epi32(tokens.code_sums[3][c]), b3 = a3;
#pragma GCC unroll 8
    for (int q = 0; q < Bits; ++q) {
      const PairQuad<Bits> w(ta.quads, tb.quads, c * Bits + q, prefetch);
      const int64_t at = c * 32 + 4 * q;
      w.dot(a0, b0, x0 + at), w.dot(a1, b1, x1 + at), w.dot(a2, b2, x2 + at);
      w.dot(a3, b3, x3 + at);
    }
    __m512 sa, oa, sb, ob;
    tile_group_params(ta, c, sa, oa);
    tile_group_params(tb, c, sb, ob);
#define QK_TOTAL(r)                                               \
  {                                                               \
    ya##r = _mm512_fmadd_ps(Lanes512::to_float(a##r), sa, ya##r); \
    yb##r = _mm512_fmadd_ps(Lanes512::to_float(b##r), sb, yb##r); \
    if (offsets) {                                                \
      const __m512 xsum = _mm512_set1_ps(tokens.xsums[r][c]);     \
      ya##r = _mm512_fmadd_ps(oa, xsum, ya##r);                   \
      yb##r = _mm512_fmadd_ps(ob, xsum, yb##r);                   \
    }                                                             \
  }
    QK_TOTAL(0) QK_TOTAL(1) QK_TOTAL(2) QK_TOTAL(3)
#undef QK_TOTAL
  }
  alignas(64) float total[4][32];
  const __m512 named[4][2] = {{ya0, yb0}, {ya1, yb1}, {ya2, yb2}, {ya3, yb3}};
  for (int r = 0; r < 4; ++r)
    for (int half = 0; half < 2; ++half) _mm512_store_ps(total[r] + 16 * half, named[r][half]);
  TileTokens<4>::store(a, r0, n0, total);
}

/// The same for 2, 3, 5 and 6 tokens, the other pass sizes of channel_tile_pair_chunk_groups
/// (2-3 tokens, M = 3 / 6 / 7, W4A8 g32 as above, Zen 5: 731 / 1047 / 1121 -> 788 / 1127 / 1204
/// GOPS; at M = 2 no gain: the tiles' metadata regrouping dominates).
template <int Bits, int Tokens, class Prefetch>
void channel_tile_pair_few_tokens_chunk_groups(const GemvInt8Args& a, const ChannelTile& ta,
                                               const ChannelTile& tb, int64_t r0, int64_t n0,
                                               Prefetch prefetch) {
  const int64_t chunks = (a.w.k + 31) / 32;
  // Token r's rows at a fixed stride from token 0's: one pointer and a stride per array, where
  // a pointer per token (three arrays of six) was spilled and reloaded at every use.
  const int8_t* x = a.xq + r0 * a.xq_stride;
  const int32_t* code_sums = a.code_sums + r0 * a.w.groups;
  const float* xsums = a.xq_group_sums + r0 * a.w.groups;
  const int64_t x_stride = a.xq_stride, g_stride = a.w.groups;
  __m512 total[Tokens][2];
  for (auto& token : total) token[0] = token[1] = _mm512_setzero_ps();
  for (int64_t c = 0; c < chunks; ++c) {
    __m512i dot[Tokens][2];
    for (int r = 0; r < Tokens; ++r)
      dot[r][0] = dot[r][1] = _mm512_set1_epi32(code_sums[r * g_stride + c]);
#pragma GCC unroll 8
    for (int q = 0; q < Bits; ++q) {
      const PairQuad<Bits> w(ta.quads, tb.quads, c * Bits + q, prefetch);
      for (int r = 0; r < Tokens; ++r)
        w.dot(dot[r][0], dot[r][1], x + r * x_stride + c * 32 + 4 * q);
    }
    for (int half = 0; half < 2; ++half) {
      const ChannelTile& t = half == 0 ? ta : tb;
      __m512 scale, off;
      tile_group_params(t, c, scale, off);
      for (int r = 0; r < Tokens; ++r) {
        __m512 v = _mm512_fmadd_ps(Lanes512::to_float(dot[r][half]), scale, total[r][half]);
        if (t.has_offsets) v = _mm512_fmadd_ps(off, _mm512_set1_ps(xsums[r * g_stride + c]), v);
        total[r][half] = v;
      }
    }
  }
  alignas(64) float out[Tokens][32];
  for (int r = 0; r < Tokens; ++r)
    for (int half = 0; half < 2; ++half) _mm512_store_ps(out[r] + 16 * half, total[r][half]);
  TileTokens<Tokens>::store(a, r0, n0, out);
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// Most tokens per pass of the group-32 pair kernels: the slice's tokens go in even passes of
/// 2-6 (token_pass_start), where passes of 4 left 8 int32 and 8 float registers idle and passes
/// of 6 then the rest left passes of 1-2 (W4A8 g32, 4096^2 in cache, 1 thread, Emerald Rapids,
/// GOPS at M = 8 / 32 / 128 / 512, passes of 4 -> even passes of up to 6: 372 / 399 / 406 / 393
/// -> 376 / 401 / 443 / 418; 2 threads, M = 128 / 512: 763-776 / 765-775 -> 843-849 / 809-823,
/// M = 32 level in cache and from DRAM).
constexpr int64_t kChunkGroupPassTokens = 6;

/// One even pass of 2-6 tokens (kChunkGroupPassTokens) through the group-32 pair kernels.
template <int Bits, class Prefetch>
void channel_tile_pair_chunk_groups(const GemvInt8Args& a, const ChannelTile& ta,
                                    const ChannelTile& tb, int64_t r0, int64_t tokens, int64_t n0,
                                    Prefetch prefetch) {
  switch (tokens) {
    case 2:
      return channel_tile_pair_few_tokens_chunk_groups<Bits, 2>(a, ta, tb, r0, n0, prefetch);
    case 3:
      return channel_tile_pair_few_tokens_chunk_groups<Bits, 3>(a, ta, tb, r0, n0, prefetch);
    case 4:
      return channel_tile_pair_4_tokens_chunk_groups<Bits>(a, ta, tb, r0, n0, prefetch);
    case 5:
      return channel_tile_pair_few_tokens_chunk_groups<Bits, 5>(a, ta, tb, r0, n0, prefetch);
    default:
      return channel_tile_pair_few_tokens_chunk_groups<Bits, 6>(a, ta, tb, r0, n0, prefetch);
  }
}
/// One token (decode) of 4-bit codes against a 16-channel tile: four independent vpdpbusd
/// chains per group (low and high nibbles of two quads), summed once per group, where
/// channel_tile_tokens<1> ran one chain of 8 dependent vpdpbusd per chunk, which DRAM latency
/// stretched: W4A8 per channel M = 1 from stored tiles, 4096^2 over 1 GiB, 2 threads, Zen 5:
/// 64 -> 72 GB/s (the row kernel: 47). 8-bit codes keep the one chain: four ran 0.9x as fast
/// from DRAM (73 -> 66 GB/s), as the 8-bit row kernels found on Sapphire Rapids (gemv_impl.h).
/// `params`: StoredTileParams or TileArrayParams (through tile_group_params, which decides per
/// group, this ran at 0.63x: 130 -> 82 GB/s, W4A8 g32 in cache).
template <class Params>
void channel_tile_one_token_w4(const GemvInt8Args& a, const ChannelTile& t, const Params& params,
                               int64_t r, int64_t n0) {
  const int64_t chunks = (a.w.k + 31) / 32;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / 32;
  const int8_t* x = a.xq + r * a.xq_stride;
  const float* xsums = a.xq_group_sums + r * a.w.groups;
  const int32_t* code_sums = a.code_sums + r * a.w.groups;
  const bool offsets = params.has_offsets();
  __m512 total = _mm512_setzero_ps(), spare = total;
  for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
    __m512i d0 = _mm512_set1_epi32(code_sums[g]), d1 = _mm512_setzero_si512(), d2 = d1, d3 = d1;
    for (int64_t c = c0; c < std::min(chunks, c0 + chunks_per_group); ++c) {
      const uint32_t* quads = t.quads + c * 4 * 16;
      const int8_t* xc = x + c * 32;
      for (int line = 0; t.stored && line < 4; ++line) prefetch_tile_line(t.quads, c * 4 + line);
#pragma GCC unroll 2
      for (int q = 0; q < 4; q += 2) {
        const __m512i u0 = _mm512_loadu_si512(quads + q * 16);
        const __m512i u1 = _mm512_loadu_si512(quads + (q + 1) * 16);
        d0 = _mm512_dpbusd_epi32(d0, Lanes512::low_nibbles(u0), Lanes512::quad(xc + 4 * q));
        d1 = _mm512_dpbusd_epi32(d1, Lanes512::high_nibbles(u0), Lanes512::quad(xc + 16 + 4 * q));
        d2 = _mm512_dpbusd_epi32(d2, Lanes512::low_nibbles(u1), Lanes512::quad(xc + 4 * q + 4));
        d3 = _mm512_dpbusd_epi32(d3, Lanes512::high_nibbles(u1), Lanes512::quad(xc + 20 + 4 * q));
      }
    }
    const __m512i dot = _mm512_add_epi32(_mm512_add_epi32(d0, d1), _mm512_add_epi32(d2, d3));
    __m512 scale, off;
    params.group(g, scale, off);
    total = _mm512_fmadd_ps(Lanes512::to_float(dot), scale, total);
    if (offsets) total = _mm512_fmadd_ps(off, _mm512_set1_ps(xsums[g]), total);
    std::swap(total, spare);
  }
  alignas(64) float out[1][16];
  _mm512_store_ps(out[0], _mm512_add_ps(total, spare));
  TileTokens<1>::store(a, r, n0, out);
}
#endif

/// The slice through channel tiles: each L::kChannels rows regrouped once, then every token.
/// At 16 channels (avx512) two adjacent tiles take the tokens together, 8 at a time, then the
/// 2-7 left over, a single token left through each tile alone; at group size 32 in even passes
/// of 2-6 (channel_tile_pair_chunk_groups).
template <class L, int Bits>
void gemv_int8_tiled_lanes(const GemvInt8Args& a) {
  thread_local ChannelTile tile, next_tile;

  const bool chunk_groups = a.w.group_size == 32 && a.w.k > 32;
  auto each_token = [&](const ChannelTile& t, int64_t n0, int64_t r) {
    if (chunk_groups) {
      channel_tile_remainder<L, Bits, kTileTokens<L, Bits> + 1, true>(a, t, r, n0, a.m - r);
    } else {
      channel_tile_remainder<L, Bits, kTileTokens<L, Bits> + 1, false>(a, t, r, n0, a.m - r);
    }
  };
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += L::kChannels) {
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
    if constexpr (L::kChannels == 16) {
      channel_tile16<Bits>(a.w, n0, tile);
      if (Bits == 4 && a.m == 1) {
        if (tile.stored_params != nullptr) {
          channel_tile_one_token_w4(a, tile, StoredTileParams(a.w, n0), 0, n0);
        } else {
          channel_tile_one_token_w4(a, tile, TileArrayParams{tile}, 0, n0);
        }
        continue;
      }
      if (n0 + 16 < a.w.n_end && a.m >= 2 && chunk_groups) {
        channel_tile16<Bits>(a.w, n0 + 16, next_tile);
        const int64_t passes = (a.m + kChunkGroupPassTokens - 1) / kChunkGroupPassTokens;
        for (int64_t i = 0; i < passes; ++i) {
          const int64_t r = token_pass_start(a.m, kChunkGroupPassTokens, i);
          const int64_t tokens = token_pass_start(a.m, kChunkGroupPassTokens, i + 1) - r;
          const PassPrefetch prefetch(tile, a.w.row_bytes, i, passes);
          if (prefetch.active()) {
            channel_tile_pair_chunk_groups<Bits>(a, tile, next_tile, r, tokens, n0, prefetch);
          } else {
            channel_tile_pair_chunk_groups<Bits>(a, tile, next_tile, r, tokens, n0, NoPrefetch{});
          }
        }
        n0 += 16;
        continue;
      }
      const int64_t pair_tokens = 8;
      if (n0 + 16 < a.w.n_end && a.m >= 2) {
        channel_tile16<Bits>(a.w, n0 + 16, next_tile);
        const int64_t passes = a.m / pair_tokens + (a.m % pair_tokens >= 2 ? 1 : 0);
        // Each pass with its PassPrefetch, or with none when that fetches nothing.
        auto pass = [&](int64_t r, auto&& kernel) {
          const PassPrefetch prefetch(tile, a.w.row_bytes, r / pair_tokens, passes);
          prefetch.active() ? kernel(prefetch) : kernel(NoPrefetch{});
        };
        int64_t r = 0;
        for (; r + pair_tokens <= a.m; r += pair_tokens) {
          pass(r, [&](auto prefetch) {
            channel_tile_pair_tokens<Bits, 8>(a, tile, next_tile, r, n0, prefetch);
          });
        }
        if (a.m - r >= 2) {
          pass(r, [&](auto prefetch) {
            channel_tile_pair_remainder<Bits, 8>(a, tile, next_tile, r, n0, a.m - r, prefetch);
          });
          r = a.m;
        }
        if (r < a.m) {
          each_token(tile, n0, r);
          each_token(next_tile, n0 + 16, r);
        }
        n0 += 16;
        continue;
      }
    } else {
      fill_channel_tile8<Bits>(a.w, n0, tile);
    }
#else
    fill_channel_tile8<Bits>(a.w, n0, tile);
#endif
    (void)each_token;
    chunk_groups ? channel_tile<L, Bits, true>(a, tile, n0)
                 : channel_tile<L, Bits, false>(a, tile, n0);
  }
}

/// The widest lanes this ISA level has.
template <int Bits>
void gemv_int8_tiled_avx2(const GemvInt8Args& a) {
#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
  gemv_int8_tiled_lanes<Lanes512, Bits>(a);
#else
  gemv_int8_tiled_lanes<Lanes256, Bits>(a);
#endif
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

// 4-bit codes for many tokens at the AVX-512 level: 16-channel tiles widened to int16 pairs once
// per call and met by vpdpwssd on plain int16 activations (layout {1, 32}), regrouped so that a
// pass over a tile reads every token's pairs from one pointer.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include <array>
#include <utility>

#include "gemv_int8_tiles.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// Tokens per pass over a pair tile: 12 int32 chains keep both vpdpwssd ports busy (latency 5,
/// 2 a cycle), and 12 accumulators plus 12 float totals fit the 32 registers. A synthetic copy of
/// the loop (K = 4096 in L2, 1 thread, Emerald Rapids) ran 122 / 131 / 140 / 135 GMAC/s at
/// 8 / 10 / 12 / 14 tokens, against 121 for the split-byte tiles at 8 (their 16 vpdpbusd and 5
/// combining ops per chunk and token hold ports 0 and 5 longer than 16 vpdpwssd and 3).
constexpr int kPairTileTokens = 12;

/// Tokens from which the 4-bit int16 GEMV takes the pair tiles (GemvKernels::
/// u4_pair_tiles_min_tokens). Emerald Rapids, 4096^2 in cache, 1 thread, best of interleaved
/// runs, GFLOPS split-byte tiles -> pair tiles: g32 M = 12 / 16 / 20 / 24 143 / 157 / 159 / 169
/// -> 149 / 162 / 179 / 185, M = 32 / 128 176 / 186 -> 196 / 217; g128 M = 20 186 -> 192, M = 128
/// 202 -> 222; per channel M = 20 196 -> 194, M = 128 211 -> 223.
constexpr int64_t kU4PairTilesMinTokens = 20;

/// Chunks of K per block of a pair tile: 8 KiB of widened codes stay in L1 while every pass of
/// tokens meets them. Whole tiles (128 KiB at K = 4096) were written to L2 at about 7 cycles a
/// line, 10 % of the time at 128 tokens.
constexpr int64_t kPairBlockChunks = 16;

/// One block of a 16-channel tile of 4-bit codes widened to signed int16 codes (u + code_bias,
/// so that the dots need no qmin term): pairs[(c * 16 + p) * 16 + j] holds elements 2p (low half)
/// and 2p + 1 of channel n0 + j's chunk c0 + c; channels past the slice hold code_bias. The group
/// scales and offsets of the whole tile are ChannelTile's.
struct PairTile {
  alignas(64) uint32_t pairs[kPairBlockChunks * 256];
  ChannelTile params;
};

/// Widens chunks [c0, c0 + kPairBlockChunks) of the tile at n0 into t.pairs, 64 bytes of each
/// row (four chunks) at a time: their dwords transposed as fill_channel_tile16 does (quad q of a
/// chunk: elements 4q..4q+3 in the low nibbles, 16 + 4q.. in the high ones), then each quad's
/// byte pairs spread to int16 lanes and split by nibble. Reads at most the padded row.
inline void widen_pair_block(const GemvWeights& w, int64_t n0, int64_t rows, int64_t c0,
                             int64_t chunks, PairTile& t) {
  // Per dword: its bytes 0 and 1 (or 2 and 3) as the low bytes of two int16 lanes.
  const __m512i first_two = _mm512_set4_epi32(0x800D800C, 0x80098008, 0x80058004, 0x80018000);
  const __m512i last_two = _mm512_set4_epi32(0x800F800E, 0x800B800A, 0x80078006, 0x80038002);
  const __m512i low4 = _mm512_set1_epi16(0x0F);
  const __m512i code_bias = _mm512_set1_epi16(static_cast<int16_t>(w.code_bias));
  auto widen = [&](__m512i v) { return _mm512_add_epi16(_mm512_and_si512(v, low4), code_bias); };
  const int64_t c_end = std::min(chunks, c0 + kPairBlockChunks);
  for (int64_t c4 = c0; c4 < c_end; c4 += 4) {  // rows are padded to 64 bytes
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      const uint8_t* p = w.codes + (n0 + i) * w.row_bytes + c4 * 16;
      prefetch_l2(p + kPairBlockChunks * 16);  // the next block's, while the passes run
      r[i] = i < rows ? _mm512_loadu_si512(p) : _mm512_setzero_si512();
    }
    transpose_16x16_epi32(r);
    for (int j = 0; j < 16; ++j) {  // r[j]: quad j % 4 of chunk c4 + j / 4
      uint32_t* out = t.pairs + (c4 - c0 + j / 4) * 256;
      const int q = j % 4;
      const __m512i first = _mm512_shuffle_epi8(r[j], first_two);
      const __m512i last = _mm512_shuffle_epi8(r[j], last_two);
      _mm512_store_si512(out + (2 * q) * 16, widen(first));
      _mm512_store_si512(out + (2 * q + 1) * 16, widen(last));
      _mm512_store_si512(out + (8 + 2 * q) * 16, widen(_mm512_srli_epi16(first, 4)));
      _mm512_store_si512(out + (9 + 2 * q) * 16, widen(_mm512_srli_epi16(last, 4)));
    }
  }
}

/// One pass of Rows tokens over a block of a pair tile: per chunk, 16 pair vectors each meet
/// every token's broadcast pair in one vpdpwssd; the int32 chunk dots times the group's 16 scales
/// times the token's chunk scale go into the float totals (kept in `totals` between blocks), and
/// after a group's last chunk its offsets, if any, through the token's group sum of the rounded
/// x. Fewer than 9 tokens split each token's pairs over
/// several chains, so that at least 8 are in flight.
template <int Rows>
void u4_pair_tile_tokens(const GemvInt16Args& a, const PairTile& t, int64_t r0, int64_t c0,
                         float* totals) {
  constexpr int kSplit = Rows >= 9 ? 1 : Rows >= 5 ? 2 : Rows >= 3 ? 4 : Rows == 2 ? 8 : 16;
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int32_t* xp = a.passes.pairs + r0 * chunks * 16;
  const float* xs = a.passes.scales + r0 * chunks;
  const float* xsums = a.passes.sums + r0 * a.w.groups;
  __m512 total[Rows];
  for (int r = 0; r < Rows; ++r) total[r] = _mm512_loadu_ps(totals + r * 16);
  const int64_t c_end = std::min(chunks, c0 + kPairBlockChunks);
  // The group and its end tracked, not divided per chunk (a microcoded idiv, two a chunk).
  int64_t g = c0 / chunks_per_group, group_end = std::min(chunks, (g + 1) * chunks_per_group);
  for (int64_t c = c0; c < c_end; ++c) {
    const __m512 scale = _mm512_loadu_ps(t.params.scales.data() + g * 16);
    const uint32_t* wp = t.pairs + (c - c0) * 256;
    const int32_t* xc = xp + c * 16 * Rows;
    // Each chain starts with vpmaddwd rather than from a zeroed register: 12 register moves a
    // chunk less.
    __m512i acc[Rows * kSplit];
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      const __m512i wv = _mm512_load_si512(wp + p * 16);
#pragma GCC unroll 12
      for (int r = 0; r < Rows; ++r) {
        __m512i& chain = acc[r * kSplit + p % kSplit];
        const __m512i x = _mm512_set1_epi32(xc[p * Rows + r]);
        chain = p < kSplit ? _mm512_madd_epi16(wv, x) : _mm512_dpwssd_epi32(chain, wv, x);
      }
    }
#pragma GCC unroll 12
    for (int r = 0; r < Rows; ++r) {
      __m512i d = acc[r * kSplit];
      for (int s = 1; s < kSplit; ++s) d = _mm512_add_epi32(d, acc[r * kSplit + s]);
      total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                 _mm512_mul_ps(scale, _mm512_set1_ps(xs[c * Rows + r])), total[r]);
    }
    if (c + 1 == group_end) {
      if (t.params.has_offsets) {
        const __m512 off = _mm512_loadu_ps(t.params.offsets.data() + g * 16);
        for (int r = 0; r < Rows; ++r)
          total[r] = _mm512_fmadd_ps(off, _mm512_set1_ps(xsums[g * Rows + r]), total[r]);
      }
      ++g;
      group_end = std::min(chunks, group_end + chunks_per_group);
    }
  }
  for (int r = 0; r < Rows; ++r) _mm512_storeu_ps(totals + r * 16, total[r]);
}

template <int... Rows>
constexpr auto pair_tile_passes(std::integer_sequence<int, Rows...>) {
  return std::array{&u4_pair_tile_tokens<Rows + 1>...};
}

/// The slice through pair tiles, on activations regrouped by passes of kPairTileTokens tokens:
/// per tile of 16 channels, block by block of K, every pass of tokens.
inline void gemv_int16_u4_pair_tiled_vnni512(const GemvInt16Args& a) {
  static constexpr auto kPasses =
      pair_tile_passes(std::make_integer_sequence<int, kPairTileTokens>{});
  thread_local PairTile tile;
  thread_local std::vector<float> totals;  // [m][16]
  totals.resize(static_cast<size_t>(a.m * 16));
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += 16) {
    const int64_t rows = std::min<int64_t>(16, a.w.n_end - n0);
    fill_tile_params16(a.w, n0, rows, tile.params);
    std::fill(totals.begin(), totals.end(), 0.0f);
    for (int64_t c0 = 0; c0 < a.chunks; c0 += kPairBlockChunks) {
      widen_pair_block(a.w, n0, rows, c0, a.chunks, tile);
      for (int64_t r0 = 0; r0 < a.m; r0 += kPairTileTokens)
        kPasses[static_cast<size_t>(std::min<int64_t>(kPairTileTokens, a.m - r0) - 1)](
            a, tile, r0, c0, totals.data() + r0 * 16);
    }
    const auto valid = static_cast<__mmask16>((1u << rows) - 1);
    for (int64_t r = 0; r < a.m; ++r)
      _mm512_mask_storeu_ps(a.w.y + r * a.w.y_stride + n0, valid,
                            _mm512_loadu_ps(totals.data() + r * 16));
  }
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

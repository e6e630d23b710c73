// 4-bit codes for many tokens at the AVX-512 level: two 16-channel tiles at a time widened to
// int16 pairs, block by block of K, and met by vpdpwssd on plain int16 activations regrouped by
// passes of 4-8 tokens (Int16TokenPasses), so that a pass reads every token's pairs from one
// pointer.
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include "gemv_int8_tiles.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// Most tokens per pass over two pair tiles (32 channels): each broadcast pair meets both tiles'
/// codes, so that a vpdpwssd takes 0.6 loads rather than 1.1; 8 tokens x 2 tiles are 16 int32
/// chains (both vpdpwssd ports kept busy: latency 5, 2 a cycle), whose float totals stay in
/// memory (u4_pair_tile_tokens). A synthetic copy of the loop (K = 4096 in L2, 1 thread, Emerald
/// Rapids) ran 144 GMAC/s at 6 tokens against 115 for one tile and 12 tokens, and 128 for three
/// tiles and 4 tokens. Passes of up to 6 tokens with the totals in registers -> up to 8, 4096^2
/// g32 in cache, 1 thread, M = 32 / 64 / 128 / 512: 218 / 238-242 / 238-241 / 245-247 -> 229-231
/// / 255-260 / 254-257 / 256-258 GFLOPS; 10 or 12 tokens ran at half speed (spilled chains).
constexpr int kPairTileTokens = 8;

/// Tokens from which the 4-bit int16 GEMV takes the pair tiles (GemvKernels::
/// u4_pair_tiles_min_tokens). Emerald Rapids, 4096^2 in cache, 1 thread, best of interleaved
/// runs, GFLOPS split-byte tiles -> pair tiles (passes of up to 8) at M = 4 / 5 / 8 / 11 / 16:
/// g32 102 / 104 / 146 / 128 / 171 -> 98 / 115 / 155-162 / 169 / 201; g128 117-119 / 118-119 /
/// 161-168 / 149 / 190 -> 91-112 / 125-129 / 173 / 184 / 210; per channel 122 / 127 / 170 / 157 /
/// 197 -> 117 / 133 / 175 / 187 / 222. (With passes of up to 6 tokens, the totals in registers,
/// the pair tiles had won from 20 tokens on.)
constexpr int64_t kU4PairTilesMinTokens = 5;
// From 5 tokens on, token_pass_start splits them into passes of 4-8 (checked up to 200,000).
static_assert(kU4PairTilesMinTokens >= 5 && kPairTileTokens == 8);

/// Chunks of K per block of the pair tiles: their widened codes (1 KiB a chunk and tile) stay in
/// L1 while every pass of tokens meets them. Whole tiles (128 KiB at K = 4096) were written to L2
/// at about 7 cycles a line, 10 % of the time at 128 tokens.
constexpr int64_t kPairBlockChunks = 16;

/// One block of two 16-channel tiles of 4-bit codes widened to signed int16 codes (u +
/// code_bias, so that the dots need no qmin term): pairs[((c * 16 + p) * 2 + t) * 16 + j] holds
/// elements 2p (low half) and 2p + 1 of channel n0 + 16 t + j's chunk c0 + c. Channels past the
/// slice hold code_bias. The group scales and offsets of each whole tile are ChannelTile's.
struct PairTiles {
  alignas(64) uint32_t pairs[kPairBlockChunks * 512];
  ChannelTile params[2];
};

/// Widens chunks [c0, c0 + kPairBlockChunks) of tile t (channels n0 + 16 t..) into `out`, 64 bytes
/// of each row (four chunks) at a time: their dwords transposed as fill_channel_tile16 does (quad
/// q of a chunk: elements 4q..4q+3 in the low nibbles, 16 + 4q.. in the high ones), then each
/// quad's byte pairs spread to int16 lanes and split by nibble. Reads at most the padded rows.
inline void widen_pair_block(const GemvWeights& w, int64_t n0, int64_t rows, int64_t c0,
                             int64_t chunks, int t, PairTiles& out) {
  // Per dword: its bytes 0 and 1 (or 2 and 3) as the low bytes of two int16 lanes.
  const __m512i first_two = _mm512_set4_epi32(0x800D800C, 0x80098008, 0x80058004, 0x80018000);
  const __m512i last_two = _mm512_set4_epi32(0x800F800E, 0x800B800A, 0x80078006, 0x80038002);
  const __m512i low4 = _mm512_set1_epi16(0x0F);
  const __m512i code_bias = _mm512_set1_epi16(static_cast<int16_t>(w.code_bias));
  auto low = [&](__m512i v) { return _mm512_add_epi16(_mm512_and_si512(v, low4), code_bias); };
  // The spread bytes' high halves are zero, so a shift alone isolates the high nibble.
  auto high = [&](__m512i v) { return _mm512_add_epi16(_mm512_srli_epi16(v, 4), code_bias); };
  const int64_t c_end = std::min(chunks, c0 + kPairBlockChunks);
  for (int64_t c4 = c0; c4 < c_end; c4 += 4) {  // rows are padded to 64 bytes
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      const uint8_t* p = w.codes + (n0 + i) * w.row_bytes + c4 * 16;
      if (i < rows) prefetch_l2(p + kPairBlockChunks * 16);  // the next block's, while passes run
      r[i] = i < rows ? _mm512_loadu_si512(p) : _mm512_setzero_si512();
    }
    transpose_16x16_epi32(r);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {  // r[j]: quad j % 4 of chunk c4 + j / 4
      uint32_t* chunk = out.pairs + (c4 - c0 + j / 4) * 512 + t * 16;
      const int q = j % 4;
      const __m512i first = _mm512_shuffle_epi8(r[j], first_two);
      const __m512i last = _mm512_shuffle_epi8(r[j], last_two);
      _mm512_store_si512(chunk + (2 * q) * 32, low(first));
      _mm512_store_si512(chunk + (2 * q + 1) * 32, low(last));
      _mm512_store_si512(chunk + (8 + 2 * q) * 32, high(first));
      _mm512_store_si512(chunk + (9 + 2 * q) * 32, high(last));
    }
  }
}

/// One pass of Rows tokens over a block of two pair tiles: per chunk and pair, each token's
/// broadcast pair meets both tiles' codes in one vpdpwssd each; the int32 chunk dots times the
/// group's 16 scales times the token's chunk scale go into the float totals, and after a group's
/// last chunk its offsets, if any, through the token's group sum of the rounded x. The totals
/// stay in memory (`totals`, L1): 2 Rows of them in registers beside the 2 Rows chains would not
/// fit 32 at 8 tokens, and at 6 a load and a store per chunk cost nothing measurable.
template <int Rows>
void u4_pair_tile_tokens(const GemvInt16Args& a, const PairTiles& t, int64_t r0, int64_t c0,
                         float* totals) {
  const int64_t chunks = a.chunks;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / kChunk;
  const int32_t* xp = a.passes.pairs + r0 * chunks * 16;
  const float* xs = a.passes.scales + r0 * chunks;
  const float* xsums = a.passes.sums + r0 * a.w.groups;
  auto add = [&](int r, int j, __m512 u, __m512 v) {
    float* total = totals + (r * 2 + j) * 16;
    _mm512_storeu_ps(total, _mm512_fmadd_ps(u, v, _mm512_loadu_ps(total)));
  };
  const int64_t c_end = std::min(chunks, c0 + kPairBlockChunks);
  // The group and its end tracked, not divided per chunk (a microcoded idiv).
  int64_t g = c0 / chunks_per_group, group_end = std::min(chunks, (g + 1) * chunks_per_group);
  for (int64_t c = c0; c < c_end; ++c) {
    const uint32_t* wp = t.pairs + (c - c0) * 512;
    const int32_t* xc = xp + c * 16 * Rows;
    // Each chain starts with vpmaddwd rather than from a zeroed register.
    __m512i acc[Rows][2];
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      const __m512i w0 = _mm512_load_si512(wp + p * 32), w1 = _mm512_load_si512(wp + p * 32 + 16);
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r) {
        const __m512i x = _mm512_set1_epi32(xc[p * Rows + r]);
        acc[r][0] = p == 0 ? _mm512_madd_epi16(w0, x) : _mm512_dpwssd_epi32(acc[r][0], w0, x);
        acc[r][1] = p == 0 ? _mm512_madd_epi16(w1, x) : _mm512_dpwssd_epi32(acc[r][1], w1, x);
      }
    }
    const __m512 scale[2] = {_mm512_loadu_ps(t.params[0].scales.data() + g * 16),
                             _mm512_loadu_ps(t.params[1].scales.data() + g * 16)};
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const __m512 sx = _mm512_set1_ps(xs[c * Rows + r]);
      for (int j = 0; j < 2; ++j)
        add(r, j, _mm512_cvtepi32_ps(acc[r][j]), _mm512_mul_ps(scale[j], sx));
    }
    if (c + 1 == group_end) {
      if (t.params[0].has_offsets) {
        const __m512 off[2] = {_mm512_loadu_ps(t.params[0].offsets.data() + g * 16),
                               _mm512_loadu_ps(t.params[1].offsets.data() + g * 16)};
        for (int r = 0; r < Rows; ++r) {
          const __m512 sum = _mm512_set1_ps(xsums[g * Rows + r]);
          for (int j = 0; j < 2; ++j) add(r, j, off[j], sum);
        }
      }
      ++g;
      group_end = std::min(chunks, group_end + chunks_per_group);
    }
  }
}

/// u4_pair_tile_tokens for each pass size, 4 to 8 tokens: all that token_pass_start makes from
/// kU4PairTilesMinTokens = 5 tokens on.
inline constexpr void (*kPassKernels[])(const GemvInt16Args&, const PairTiles&, int64_t, int64_t,
                                        float*) = {u4_pair_tile_tokens<4>, u4_pair_tile_tokens<5>,
                                                   u4_pair_tile_tokens<6>, u4_pair_tile_tokens<7>,
                                                   u4_pair_tile_tokens<8>};

/// The slice (up to kTokenPassSliceRows = 32 rows) through two pair tiles at a time, on
/// activations regrouped by passes of 4-8 tokens: block by block of K, every pass.
inline void gemv_int16_u4_pair_tiled_vnni512(const GemvInt16Args& a) {
  thread_local PairTiles tiles;
  thread_local std::vector<float> totals;  // [m][32]
  totals.resize(static_cast<size_t>(a.m * 32));
  for (int64_t n0 = a.w.n_begin; n0 < a.w.n_end; n0 += 32) {
    const int64_t rows[2] = {std::min<int64_t>(16, a.w.n_end - n0),
                             std::clamp<int64_t>(a.w.n_end - n0 - 16, 0, 16)};
    for (int t = 0; t < 2; ++t) fill_tile_params16(a.w, n0 + 16 * t, rows[t], tiles.params[t]);
    std::fill(totals.begin(), totals.end(), 0.0f);
    for (int64_t c0 = 0; c0 < a.chunks; c0 += kPairBlockChunks) {
      for (int t = 0; t < 2; ++t)
        widen_pair_block(a.w, n0 + 16 * t, rows[t], c0, a.chunks, t, tiles);
      for (int64_t i = 0, r0 = 0; r0 < a.m; ++i) {
        const int64_t r1 = token_pass_start(a.m, kPairTileTokens, i + 1);
        kPassKernels[r1 - r0 - 4](a, tiles, r0, c0, totals.data() + r0 * 32);
        r0 = r1;
      }
    }
    for (int t = 0; t < 2 && rows[t] > 0; ++t) {
      const auto valid = static_cast<__mmask16>((1u << rows[t]) - 1);
      for (int64_t r = 0; r < a.m; ++r)
        _mm512_mask_storeu_ps(a.w.y + r * a.w.y_stride + n0 + 16 * t, valid,
                              _mm512_loadu_ps(totals.data() + (r * 2 + t) * 16));
    }
  }
}
#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

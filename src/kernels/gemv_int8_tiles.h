// W4A8 / W8A8 for many tokens: output channels in the vector lanes, 8 of them (256-bit lanes,
// the avx2 level) or 16 (512-bit, the avx512 level).
// Part of gemv_impl.h's per-ISA instantiation (QK_ISA_NAMESPACE names it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "gemv_rows.h"  // first: its pragmas cover the AVX-512 shuffles here too

namespace quantkit::kernels::QK_ISA_NAMESPACE {

#if defined(__AVX2__)
/// Channels (8 or 16) rows of codes regrouped so that one vector load feeds that many output
/// channels: quads[c][q][ch] is dword q of chunk c of row ch.
/// - 4-bit: a packed chunk is 16 bytes (byte j: element j in the low nibble, element 16 + j in
///   the high one), so dword q (of 4) carries elements 4q..4q+3 and 16+4q..16+4q+3: masking
///   the low nibbles gives the codes of 4 consecutive elements for all 8 channels, the shifted
///   high nibbles the 4 elements 16 further on.
/// - 8-bit: dword q (of 8) is elements 4q..4q+3: with VNNI the unsigned codes as packed (vpdpbusd
///   takes them as they are), else stored signed (u + qmin = u ^ 0x80) for the sign trick.
/// Group scales and offsets are stored per group as Channels lanes (qmin enters the int32 dots:
/// kTileCodesUnsigned). Rows past N are zero-scaled and never stored. Codes and metadata are
/// either regrouped into the vectors per call (weights in rows) or read where the weight stores
/// them (CodeLayout::kChannelTiles, 16 channels: the same arrangement; stored_params).
struct ChannelTile {
  std::vector<uint32_t> filled;
  const uint32_t* quads = nullptr;  // [chunks][Bits][Channels]
  bool stored = false;              // quads point into the weight (streamed on first use)
  std::vector<float> scales;        // [groups][Channels]
  std::vector<float> offsets;       // [groups][Channels], zeros when !has_offsets
  bool has_offsets = false;
  /// Leading entries of `offsets` known to be zero: a symmetric weight's tiles skip rewriting
  /// them (16 KiB per pair of 16-channel tiles at K = 4096, group 32: 4 % of W4A16 at 32 tokens).
  size_t zeroed_offsets = 0;
  /// Stored tiles: the weight whose tile-major metadata (from tile n0) replaces the arrays.
  const GemvWeights* stored_params = nullptr;
  int64_t n0 = 0;
};

/// Software prefetch of the 64-byte line `line` of a stored tile's quads, decode_tuning's L2
/// distance ahead: the first token pass streams the weight as the row kernels do.
inline void prefetch_tile_line(const uint32_t* quads, int64_t line) {
  prefetch_l2(reinterpret_cast<const char*>(quads) + line * 64 + decode_tuning.l2_prefetch_bytes);
}

inline void transpose_4x4_epi32(const __m128i* r, __m128i* out) {
  const __m128i a = _mm_unpacklo_epi32(r[0], r[1]), b = _mm_unpackhi_epi32(r[0], r[1]);
  const __m128i c = _mm_unpacklo_epi32(r[2], r[3]), d = _mm_unpackhi_epi32(r[2], r[3]);
  out[0] = _mm_unpacklo_epi64(a, c);
  out[1] = _mm_unpackhi_epi64(a, c);
  out[2] = _mm_unpacklo_epi64(b, d);
  out[3] = _mm_unpackhi_epi64(b, d);
}

/// The tile's group scales and offsets for rows n0..n0 + rows (zeros past them).
template <int Channels>
void fill_tile_params(const GemvWeights& w, int64_t n0, int64_t rows, ChannelTile& t) {
  t.stored_params = nullptr;
  t.has_offsets = w.offsets != nullptr;
  t.scales.assign(static_cast<size_t>(w.groups * Channels), 0.0f);
  t.offsets.assign(static_cast<size_t>(w.groups * Channels), 0.0f);
  t.zeroed_offsets = t.has_offsets ? 0 : t.offsets.size();
  for (int64_t ch = 0; ch < rows; ++ch) {
    for (int64_t g = 0; g < w.groups; ++g) {
      t.scales[static_cast<size_t>(g * Channels + ch)] = w.scales[(n0 + ch) * w.groups + g];
      if (t.has_offsets)
        t.offsets[static_cast<size_t>(g * Channels + ch)] = w.offsets[(n0 + ch) * w.groups + g];
    }
  }
}

/// An 8-channel tile: per 16 bytes of a chunk, 4x4 dword transposes of rows 0-3 and 4-7, halves
/// joined.
template <int Bits>
void fill_channel_tile8(const GemvWeights& w, int64_t n0, ChannelTile& t) {
  constexpr int kChunkBytes = 4 * Bits, kQuads = Bits;
  const int64_t chunks = (w.k + 31) / 32;
  const int64_t rows = std::min<int64_t>(8, w.n_end - n0);
  t.filled.resize(static_cast<size_t>(chunks * kQuads * 8));
  t.quads = t.filled.data();
  t.stored = false;
  fill_tile_params<8>(w, n0, rows, t);
  static const uint8_t kZeroChunk[32] = {};
  const __m256i sign_flip = _mm256_set1_epi8(Bits == 4 || kHaveVnni ? 0 : -128);
  for (int64_t c = 0; c < chunks; ++c) {
    for (int part = 0; part < kChunkBytes / 16; ++part) {
      __m128i v[8], q[2][4];
      for (int ch = 0; ch < 8; ++ch) {
        const uint8_t* p = ch < rows
                               ? w.codes + (n0 + ch) * w.row_bytes + c * kChunkBytes + part * 16
                               : kZeroChunk;
        v[ch] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      }
      transpose_4x4_epi32(v, q[0]);
      transpose_4x4_epi32(v + 4, q[1]);
      for (int i = 0; i < 4; ++i) {
        const __m256i joined = _mm256_xor_si256(_mm256_set_m128i(q[1][i], q[0][i]), sign_flip);
        _mm256_storeu_si256(
            reinterpret_cast<__m256i*>(t.filled.data() + (c * kQuads + part * 4 + i) * 8), joined);
      }
    }
  }
}

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// r[i] = dword i of every row, for 16 rows of 16 dwords: unpacks of dword and qword pairs
/// within 128-bit lanes, then a 4x4 transpose of the lanes. Always inlined: GCC 12 called it
/// from widen_pair_block, passing the 16 rows through memory (W4A16 pair tiles, 4096^2 g32 in
/// cache, 1 thread, 32 tokens: 199 -> 211 GFLOPS with the loop after it unrolled).
[[gnu::always_inline]] inline void transpose_16x16_epi32(__m512i* r) {
  __m512i t[16], v[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // v[4m + j]: lane l holds dword 4l + j of rows 4m..4m+3.
  for (int m = 0; m < 4; ++m) {
    v[4 * m] = _mm512_unpacklo_epi64(t[4 * m], t[4 * m + 2]);
    v[4 * m + 1] = _mm512_unpackhi_epi64(t[4 * m], t[4 * m + 2]);
    v[4 * m + 2] = _mm512_unpacklo_epi64(t[4 * m + 1], t[4 * m + 3]);
    v[4 * m + 3] = _mm512_unpackhi_epi64(t[4 * m + 1], t[4 * m + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i w0 = _mm512_shuffle_i32x4(v[j], v[4 + j], 0x44);
    const __m512i w1 = _mm512_shuffle_i32x4(v[j], v[4 + j], 0xEE);
    const __m512i w2 = _mm512_shuffle_i32x4(v[8 + j], v[12 + j], 0x44);
    const __m512i w3 = _mm512_shuffle_i32x4(v[8 + j], v[12 + j], 0xEE);
    r[j] = _mm512_shuffle_i32x4(w0, w2, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(w0, w2, 0xDD);
    r[8 + j] = _mm512_shuffle_i32x4(w1, w3, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(w1, w3, 0xDD);
  }
}

/// fill_tile_params for 16 channels (unsigned codes: VNNI), 16 groups at a time through the
/// same transpose: at group size 32 the scalar loop took about a third of the time of 4-bit
/// tiles at 8 tokens.
inline void fill_tile_params16(const GemvWeights& w, int64_t n0, int64_t rows, ChannelTile& t) {
  const int64_t groups = w.groups;
  t.stored_params = nullptr;
  t.has_offsets = w.offsets != nullptr;
  t.scales.resize(static_cast<size_t>(groups * 16));
  t.offsets.resize(static_cast<size_t>(groups * 16));
  auto transposed = [&](const float* m, int64_t g0, __m512i* r) {
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_castps_si512(_mm512_loadu_ps(m + (n0 + i) * groups + g0))
                      : _mm512_setzero_si512();
    transpose_16x16_epi32(r);
  };
  // Locals, not t's members: the vector stores may alias anything, so members were reloaded
  // after each of them, and those loads waited on the stores (a third of the W4A16 pair tiles'
  // parameter time at 32 tokens).
  const bool has_offsets = t.has_offsets;
  const bool write_offsets = has_offsets || t.zeroed_offsets < t.offsets.size();
  float* const scales = t.scales.data();
  float* const offsets = t.offsets.data();
  int64_t g0 = 0;
  for (; g0 + 16 <= groups; g0 += 16) {
    __m512i s[16], off[16];
    transposed(w.scales, g0, s);
    if (has_offsets) transposed(w.offsets, g0, off);
    for (int j = 0; j < 16; ++j) {
      _mm512_storeu_si512(scales + (g0 + j) * 16, s[j]);
      if (write_offsets)
        _mm512_storeu_si512(offsets + (g0 + j) * 16, has_offsets ? off[j] : _mm512_setzero_si512());
    }
  }
  for (; g0 < groups; ++g0) {
    for (int64_t ch = 0; ch < 16; ++ch) {
      const bool live = ch < rows;
      scales[g0 * 16 + ch] = live ? w.scales[(n0 + ch) * groups + g0] : 0;
      offsets[g0 * 16 + ch] = live && has_offsets ? w.offsets[(n0 + ch) * groups + g0] : 0.0f;
    }
  }
  t.zeroed_offsets = has_offsets ? 0 : t.offsets.size();
}

/// A 16-channel tile: the quads of 16 rows are their dwords transposed, 64 bytes of every row
/// (16 dwords) at a time. Against 4x4 transposes of 16-byte pieces (as fill_channel_tile8 does)
/// this takes a quarter of the loads and half the shuffles: the fill was over half the time of
/// W8A8 at 8 tokens (Zen 5, 4096^2 in cache: 660 GOPS with it, 1510 without).
template <int Bits>
void fill_channel_tile16(const GemvWeights& w, int64_t n0, ChannelTile& t) {
  const int64_t chunks = (w.k + 31) / 32;
  const int64_t rows = std::min<int64_t>(16, w.n_end - n0);
  const int64_t blocks = (chunks * Bits + 15) / 16;  // rows are padded to 64 bytes
  t.filled.resize(static_cast<size_t>(blocks * 256));
  t.quads = t.filled.data();
  t.stored = false;
  fill_tile_params16(w, n0, rows, t);
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      const uint8_t* p = w.codes + (n0 + i) * w.row_bytes + b * 64;
      prefetch_l2(p + 16 * w.row_bytes);
      r[i] = i < rows ? _mm512_loadu_si512(p) : _mm512_setzero_si512();
    }
    transpose_16x16_epi32(r);
    for (int j = 0; j < 16; ++j) _mm512_storeu_si512(t.filled.data() + (b * 16 + j) * 16, r[j]);
  }
}

/// The group scales and offsets of a 16-channel tile as stored tile-major
/// (CodeLayout::kChannelTiles): compact (float16 scales, int8 zero points) or float32, read in
/// place by the kernels, group by group (a conversion per group and pass of up to 8 tokens).
/// Row-major metadata took an expansion per slice and a 16 x 16 transpose per tile into arrays:
/// stored tiles, 4096^2 in cache, 2 threads, Zen 5, GOPS at M = 2 / 4 / 8 / 32, row-major ->
/// tile-major in place: W4A8 g32 611 / 1027 / 1214 / 1473 -> 910 / 1360 / 1453 / 1574; g128
/// 725 / 1211 / 1569 / 1718 -> 982 / 1329 / 1750 / 1894; W8A8 per channel 600 / 1061 / 1676 /
/// 1971 -> 708 / 1164 / 1843 / 2057.
struct StoredTileParams {
  const GemvWeights& w;
  int64_t first;  // tile n0's first element: n0 * groups
  StoredTileParams(const GemvWeights& weights, int64_t n0)
      : w(weights), first(n0 * weights.groups) {}
  bool has_offsets() const { return w.zero_points != nullptr || w.offsets != nullptr; }
  /// Group g's scales s and offsets off (exact as the float32 expansion makes them; zero when
  /// there are none). Always inlined, as tile_group_params.
  [[gnu::always_inline]] void group(int64_t g, __m512& s, __m512& off) const {
    const int64_t at = first + g * 16;
    off = _mm512_setzero_ps();
    if (w.scales_f16 != nullptr) {
      s = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.scales_f16 + at)));
      if (w.zero_points != nullptr) {
        const __m512 z = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zero_points + at))));
        off = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), s), z);  // exact
      }
    } else {
      s = _mm512_loadu_ps(w.scales + at);
      if (w.offsets != nullptr) off = _mm512_loadu_ps(w.offsets + at);
    }
  }
  /// Software prefetch of the next tile's metadata, while this tile's codes stream.
  void prefetch_next_tile() const {
    auto lines = [&](const void* base, int64_t element_bytes) {
      const char* next = static_cast<const char*>(base) + (first + 16 * w.groups) * element_bytes;
      for (int64_t b = 0; b < 16 * w.groups * element_bytes; b += 64) prefetch_l2(next + b);
    };
    if (w.scales_f16 != nullptr) {
      lines(w.scales_f16, 2);
      if (w.zero_points != nullptr) lines(w.zero_points, 1);
    } else {
      lines(w.scales, 4);
      if (w.offsets != nullptr) lines(w.offsets, 4);
    }
  }
};

/// The group scales and offsets a ChannelTile holds (filled with the tile from rows).
struct TileArrayParams {
  const ChannelTile& t;
  bool has_offsets() const { return t.has_offsets; }
  void group(int64_t g, __m512& s, __m512& off) const {
    s = _mm512_loadu_ps(t.scales.data() + g * 16);
    off = _mm512_loadu_ps(t.offsets.data() + g * 16);
  }
};

/// Group g's scales and offsets of tile t: from the weight's tile-major metadata for stored
/// tiles, else from the arrays filled with the tile. Always inlined (with StoredTileParams::group):
/// GCC 12 stopped inlining them into the group-32 pair kernel when that grew by a prefetch, and
/// the calls per group (their vzeroupper and the spills around them) ran W4A8 g32 at 0.6x.
[[gnu::always_inline]] inline void tile_group_params(const ChannelTile& t, int64_t g, __m512& s,
                                                     __m512& off) {
  if (t.stored_params != nullptr) {
    StoredTileParams(*t.stored_params, t.n0).group(g, s, off);
  } else {
    TileArrayParams{t}.group(g, s, off);
  }
}

/// The 16-channel tile from n0 as the weight stores it (CodeLayout::kChannelTiles), codes and
/// group parameters, read in place. Filling the tile's arrays from the stored metadata first
/// (16 KiB at group 32, K = 4096) kept the stream from overlapping the work: W4A8 g32 M = 1,
/// 4096^2, 2 threads, Zen 5, in cache 92 -> 133 GB/s, over 1 GiB 46 -> 69 GB/s.
inline void stored_channel_tile16(const GemvWeights& w, int64_t n0, ChannelTile& t) {
  t.quads = reinterpret_cast<const uint32_t*>(w.codes + n0 * w.row_bytes);
  t.stored = true;
  t.stored_params = &w;
  t.n0 = n0;
  const StoredTileParams params(w, n0);
  t.has_offsets = params.has_offsets();
  params.prefetch_next_tile();
}

/// Tile n0 (16 channels) as stored or regrouped, whichever the weight's layout asks.
template <int Bits>
void channel_tile16(const GemvWeights& w, int64_t n0, ChannelTile& t) {
  if (w.channel_tiles) {
    stored_channel_tile16(w, n0, t);
  } else {
    fill_channel_tile16<Bits>(w, n0, t);
  }
}
#endif

inline int32_t load_quad(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// The vector operations of the channel-tile kernels at 8 channels (256-bit lanes).
struct Lanes256 {
  using I = __m256i;
  using F = __m256;
  static constexpr int kChannels = 8;
  static I load(const uint32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const I*>(p)); }
  static I zero() { return _mm256_setzero_si256(); }
  static I low_nibbles(I v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
  static I high_nibbles(I v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
  }
  static I quad(const int8_t* p) { return _mm256_set1_epi32(load_quad(p)); }
  static I dot(I acc, I u, I s) { return dot_u8_s8(acc, u, s); }
  static F to_float(I v) { return _mm256_cvtepi32_ps(v); }
  static F load_f(const float* p) { return _mm256_loadu_ps(p); }
  static void group_params(const ChannelTile& t, int64_t g, F& s, F& off) {
    s = load_f(t.scales.data() + g * kChannels);
    off = load_f(t.offsets.data() + g * kChannels);
  }
  static I broadcast_i(const int32_t* p) { return _mm256_set1_epi32(*p); }
  static F broadcast_f(const float* p) { return _mm256_broadcast_ss(p); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F zero_f() { return _mm256_setzero_ps(); }
  static void store_f(float* p, F v) { _mm256_storeu_ps(p, v); }
};

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
/// The same at 16 channels (512-bit lanes, VNNI).
struct Lanes512 {
  using I = __m512i;
  using F = __m512;
  static constexpr int kChannels = 16;
  static I load(const uint32_t* p) { return _mm512_loadu_si512(p); }
  static I zero() { return _mm512_setzero_si512(); }
  static I low_nibbles(I v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0F)); }
  // One GF(2) affine transform instead of a shift and a mask: W4A8 4096^2 in cache, 1 thread,
  // M = 32 / 128 / 512, GOPS: group 32 389-395 / 438-444 / 438-442 -> 412-415 / 447-460 /
  // 453-456, per channel 595-597 / 565-576 / 558-564 -> 626-633 / 610-626 / 596.
  static I high_nibbles(I v) { return byte_field<4, 4>(v); }
  static I quad(const int8_t* p) { return _mm512_set1_epi32(load_quad(p)); }
  static I dot(I acc, I u, I s) { return _mm512_dpbusd_epi32(acc, u, s); }
  // maskz: GCC 12 warns that the unmasked form reads an undefined register.
  static F to_float(I v) { return _mm512_maskz_cvtepi32_ps(0xFFFF, v); }
  static F load_f(const float* p) { return _mm512_loadu_ps(p); }
  static void group_params(const ChannelTile& t, int64_t g, F& s, F& off) {
    tile_group_params(t, g, s, off);
  }
  static I broadcast_i(const int32_t* p) { return _mm512_set1_epi32(*p); }
  static F broadcast_f(const float* p) { return _mm512_set1_ps(*p); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F zero_f() { return _mm512_setzero_ps(); }
  static void store_f(float* p, F v) { _mm512_storeu_ps(p, v); }
};
#endif

/// Whether the lanes multiply bytes in one instruction (vpdpbusd), so that no int16 partial
/// sums are needed.
template <class L>
constexpr bool kLanesHaveVnni = kHaveVnni || L::kChannels == 16;

/// 4-bit: the dots of one chunk for Rows tokens. With VNNI a vpdpbusd per 4 elements x all
/// channels; else (256-bit lanes) int16 sums of 8 maddubs (every lane <= 2 * 15 * 127, eight
/// of them below 32768), then one madd to int32 added to dot.
template <class L, int Rows>
inline void w4_chunk_dots(const uint32_t* quads, const int8_t* const* xq, int64_t c,
                          typename L::I* dot) {
  constexpr int kCh = L::kChannels;
  if constexpr (kLanesHaveVnni<L>) {
    for (int q = 0; q < 4; ++q) {
      const typename L::I codes = L::load(quads + q * kCh);
      const typename L::I lo = L::low_nibbles(codes), hi = L::high_nibbles(codes);
      for (int r = 0; r < Rows; ++r) {
        const int8_t* x = xq[r] + c * 32 + 4 * q;
        dot[r] = L::dot(dot[r], lo, L::quad(x));
        dot[r] = L::dot(dot[r], hi, L::quad(x + 16));
      }
    }
  } else {
    __m256i sum16[Rows];
    for (int r = 0; r < Rows; ++r) sum16[r] = _mm256_setzero_si256();
    for (int q = 0; q < 4; ++q) {
      const __m256i codes = L::load(quads + q * kCh);
      const __m256i lo = L::low_nibbles(codes), hi = L::high_nibbles(codes);
      for (int r = 0; r < Rows; ++r) {
        const int8_t* x = xq[r] + c * 32 + 4 * q;
        sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(lo, L::quad(x)));
        sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(hi, L::quad(x + 16)));
        // Keeps GCC from reassociating the sums into a tree of 8 live products per token,
        // which spilled them all.
        asm("" : "+x"(sum16[r]));
      }
    }
    for (int r = 0; r < Rows; ++r)
      dot[r] = _mm256_add_epi32(dot[r], _mm256_madd_epi16(sum16[r], _mm256_set1_epi16(1)));
  }
}

/// 8-bit: per 4 elements x all channels, with VNNI one vpdpbusd of the unsigned codes; else
/// (256-bit lanes) |q| * sign(x, q) through maddubs (exact: |q| <= 128, |x| <= 127, pairs below
/// 32768) and madd to int32, added to dot.
template <class L, int Rows>
inline void w8_chunk_dots(const uint32_t* quads, const int8_t* const* xq, int64_t c,
                          typename L::I* dot) {
  constexpr int kCh = L::kChannels;
  if constexpr (kLanesHaveVnni<L>) {
    for (int q = 0; q < 8; ++q) {
      const typename L::I codes = L::load(quads + q * kCh);
      for (int r = 0; r < Rows; ++r)
        dot[r] = L::dot(dot[r], codes, L::quad(xq[r] + c * 32 + 4 * q));
    }
  } else {
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int q = 0; q < 8; ++q) {
      const __m256i codes = L::load(quads + q * kCh);
      const __m256i magnitude = _mm256_abs_epi8(codes);
      for (int r = 0; r < Rows; ++r) {
        const __m256i x = _mm256_sign_epi8(L::quad(xq[r] + c * 32 + 4 * q), codes);
        dot[r] =
            _mm256_add_epi32(dot[r], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, x), ones16));
      }
    }
  }
}

/// Whether the tiles hold unsigned codes u = q - qmin (4-bit, and 8-bit wherever the lanes have
/// VNNI); 8-bit codes without VNNI are stored signed (fill_channel_tile8).
/// Those dots start from the token's code sums (GemvInt8Args::code_sums), which makes them the
/// dots of the signed codes: per group and token the float work is one FMA (the scale; one more
/// for offsets, when there are any), where adding qmin s times the group sum of x took a
/// second. W4A8 g32, stored tiles, 4096^2 in cache, 2 threads, Zen 5, M = 8 / 32 / 128 / 512:
/// 1470 / 1580 / 1600 / 1500 -> 1570 / 1710 / 1740 / 1620 GOPS.
template <class L, int Bits>
constexpr bool kTileCodesUnsigned = Bits == 4 || kLanesHaveVnni<L>;

/// Tokens r0..r0+Rows of a tile pass: their int8 rows and group sums, and the store of their
/// float totals (columns n0.., as many as the slice has) times each token's scale.
template <int Rows>
struct TileTokens {
  const int8_t* xq[Rows];
  const float* xsums[Rows];
  const int32_t* code_sums[Rows];  // GemvInt8Args::code_sums
  TileTokens(const GemvInt8Args& a, int64_t r0) {
    for (int r = 0; r < Rows; ++r) {
      xq[r] = a.xq + (r0 + r) * a.xq_stride;
      xsums[r] = a.xq_group_sums + (r0 + r) * a.w.groups;
      code_sums[r] = a.code_sums + (r0 + r) * a.w.groups;
    }
  }
  template <int Columns>
  static void store(const GemvInt8Args& a, int64_t r0, int64_t n0, const float (*total)[Columns]) {
    const int64_t valid = std::min<int64_t>(Columns, a.w.n_end - n0);
    for (int r = 0; r < Rows; ++r) {
      const float sx = a.x_scale[r0 + r];
      float* y = a.w.y + (r0 + r) * a.w.y_stride + n0;
      for (int64_t i = 0; i < valid; ++i) y[i] = total[r][i] * sx;
    }
  }
};

/// y[r0..r0+Rows, n0..n0+Channels) from a tile: per chunk, int32 dots of the channels per token
/// (above, from the token's code sum); per group, floats times the group scales, plus the
/// offsets times the token's group sum of xq. Against per-row dot products this needs no horizontal
/// reduction, and for 4-bit codes no float conversion per chunk: 9 multiply-port ops per 256 MACs
/// instead of 16 plus 16 (256-bit lanes). With one chunk per group (ChunkGroups) the float totals
/// stay in registers; with longer groups the int32 dots take those registers and the totals,
/// touched once per group, live in memory.
template <class L, int Bits, int Rows, bool ChunkGroups>
void channel_tile_tokens(const GemvInt8Args& a, const ChannelTile& t, int64_t r0, int64_t n0) {
  using I = typename L::I;
  using F = typename L::F;
  constexpr int kCh = L::kChannels;
  const int64_t chunks = (a.w.k + 31) / 32;
  const int64_t chunks_per_group = a.w.group_size >= a.w.k ? chunks : a.w.group_size / 32;
  const TileTokens<Rows> tokens(a, r0);
  const int8_t* const* xq = tokens.xq;
  const float* const* xsums = tokens.xsums;
  const bool prefetch = t.stored && r0 == 0;
  auto chunk_dots = [&](int64_t c, I* dot) {
    const uint32_t* quads = t.quads + c * Bits * kCh;
    for (int line = 0; prefetch && line < Bits; ++line)
      prefetch_tile_line(t.quads, c * Bits + line);
    Bits == 4 ? w4_chunk_dots<L, Rows>(quads, xq, c, dot)
              : w8_chunk_dots<L, Rows>(quads, xq, c, dot);
  };
  alignas(64) float out[Rows][kCh] = {};
  auto start_dots = [&](int64_t g, I* dot) {  // signed codes need no code sums
    for (int r = 0; r < Rows; ++r)
      dot[r] = kTileCodesUnsigned<L, Bits> ? L::broadcast_i(tokens.code_sums[r] + g) : L::zero();
  };
  auto add_group = [&](int64_t g, const I* dot, auto&& update) {
    F scale, off;
    L::group_params(t, g, scale, off);
    for (int r = 0; r < Rows; ++r) {
      update(r, [&](F v) {
        v = L::fmadd(L::to_float(dot[r]), scale, v);
        return t.has_offsets ? L::fmadd(off, L::broadcast_f(xsums[r] + g), v) : v;
      });
    }
  };
  if constexpr (ChunkGroups) {
    F total[Rows];
    for (auto& v : total) v = L::zero_f();
    for (int64_t c = 0; c < chunks; ++c) {
      I dot[Rows];
      start_dots(c, dot);
      chunk_dots(c, dot);
      add_group(c, dot, [&](int r, auto&& f) { total[r] = f(total[r]); });
    }
    for (int r = 0; r < Rows; ++r) L::store_f(out[r], total[r]);
  } else {
    for (int64_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
      I dot[Rows];
      start_dots(g, dot);
      for (int64_t c = c0; c < std::min(chunks, c0 + chunks_per_group); ++c) chunk_dots(c, dot);
      add_group(g, dot, [&](int r, auto&& f) { L::store_f(out[r], f(L::load_f(out[r]))); });
    }
  }
  TileTokens<Rows>::store(a, r0, n0, out);
}

/// The last `left` (< Tokens) tokens from r on, through the pass compiled for exactly that many.
template <class L, int Bits, int Tokens, bool ChunkGroups>
void channel_tile_remainder(const GemvInt8Args& a, const ChannelTile& t, int64_t r, int64_t n0,
                            int64_t left) {
  if constexpr (Tokens > 1) {
    if (left == Tokens - 1) {
      channel_tile_tokens<L, Bits, Tokens - 1, ChunkGroups>(a, t, r, n0);
      return;
    }
    channel_tile_remainder<L, Bits, Tokens - 1, ChunkGroups>(a, t, r, n0, left);
  }
}

/// Tokens that share each load of the codes. Without VNNI 8-bit tokens hold one int32 dot
/// register each, so 6 share each load + abs (against the row kernel at K = 2048, M = 128-512:
/// 1.00-1.03x with 4 tokens, 1.07-1.09x with 6); 4-bit tokens need int16 sums too, and 4 fill
/// the registers. With VNNI there are no int16 sums, AVX-512VL gives 32 registers, and every
/// token is one vpdpbusd chain (latency 5): 8 tokens keep the two dot ports busy. At 16
/// channels 8 tokens beat 12 and 16 too (Zen 5, 4096^2, M = 32 / 128: 12 tokens 0.9-1.0x, 16
/// tokens, which spill, 0.55-0.6x).
template <class L, int Bits>
constexpr int kTileTokens = kLanesHaveVnni<L> ? 8 : (Bits == 8 ? 6 : 4);

template <class L, int Bits, bool ChunkGroups>
void channel_tile(const GemvInt8Args& a, const ChannelTile& t, int64_t n0) {
  constexpr int kTokens = kTileTokens<L, Bits>;
  int64_t r = 0;
  for (; r + kTokens <= a.m; r += kTokens)
    channel_tile_tokens<L, Bits, kTokens, ChunkGroups>(a, t, r, n0);
  channel_tile_remainder<L, Bits, kTokens, ChunkGroups>(a, t, r, n0, a.m - r);
}

#endif

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

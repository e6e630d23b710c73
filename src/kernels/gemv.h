// Per-ISA row kernels of the weight-only linear layer. Private to the library.
#pragma once

#include <cstdint>
#include <limits>

#include "quantkit/kernels/isa.h"
#include "quantkit/kernels/linear.h"

namespace quantkit::kernels {

/// How the decode (few-token) loops stream weights from DRAM on this CPU: chosen once at start-up
/// from the CPU vendor and ISA level (decode_tuning_for_this_cpu), because the hosts measured
/// disagree.
/// - Intel Sapphire Rapids: an L1 prefetch 1 KiB ahead beside the L2 one 8 KiB ahead made W4A16
///   M=1 1.10-1.20x faster from DRAM on 1 thread (its requests no longer held the few L1 fill
///   buffers for a whole DRAM latency, as one L1 prefetch 4 KiB ahead had); and the one-token
///   W8A8 loop stays at 256 bits: a loop that ran 2.3x faster in L2 streamed 0.84x as fast from
///   DRAM.
/// - Intel Emerald Rapids: the 256-bit W8A16 per-channel row loop is compute-bound, the 512-bit
///   one streams at the DRAM rate: 4096^2 over 1 GiB, 1 thread 8.6 -> 14.3 GB/s, 2 threads
///   16.2 -> 27.4 (probe 15-16 / 24-29); the one-token W8A8 loops read 28.5 GB/s at either width.
/// - AMD Zen 5: the L1 prefetch costs (one-token 8-bit at 512 bits, 2 threads: 64 -> 77 GB/s
///   without it; neutral at 4-bit group 32), and the 512-bit one-token 8-bit loops reach the
///   DRAM rate where the 256-bit ones are compute-bound: W8A16 / W8A8 per channel M=1, 4096^2
///   over 1 GiB, 1 thread 33 -> 40 / 33 -> 39 GB/s, 2 threads 60-64 -> 75-77 / 60-64 -> 72-77
///   (DRAM read probe 78).
/// - AMD Zen 3 (AVX2 only): the L1 prefetch 1 KiB ahead helps, as on Intel: 2 threads, 1 GiB,
///   interleaved runs, W8A16 per channel 1.06-1.10x, W4A16 per channel 1.03-1.07x, W4A16 g32
///   and W2A16 g32 1.00-1.07x, W4A8 g32 0.96-0.98x.
struct DecodeTuning {
  int l2_prefetch_bytes;
  int l1_prefetch_bytes;         // 0: no L1 prefetch
  bool wide_w8a16_single_token;  // W8A16 one-token kernels at 512 bits (avx512 level)
  bool wide_w8a8_single_token;   // W8A8 one-token kernel at 512 bits (avx512 + VNNI)
};
DecodeTuning decode_tuning_for_this_cpu();
/// The tuning in force. Tests and benchmarks may set it between calls, never during one.
extern DecodeTuning decode_tuning;

/// The packed weight (layout in linear.h) and the slice of it one kernel call computes: rows
/// [n_begin, n_end) of W, written to columns n_begin..n_end of y [m, y_stride].
struct GemvWeights {
  int64_t k;
  const uint8_t* codes;
  int64_t row_bytes;
  // [N, groups] each (channel_tiles: tile-major, as linear.h's CodeLayout stores them)
  const float* scales;
  const float* offsets;  // nullptr when every offset is zero
  float code_bias;       // qmin: the signed code is u + code_bias, exact in float
  int64_t groups;
  int64_t group_size;  // a multiple of 32 (the chunk), or >= K
  float* y;
  int64_t y_stride;
  int64_t n_begin, n_end;
  /// Compact group metadata (PackedLinearWeight::compact), only for kernels that read it
  /// themselves (run_row_slices' reads_compact); others get float32 scales and offsets.
  const uint16_t* scales_f16;  // [N, groups] float16, or nullptr
  const int8_t* zero_points;   // [N, groups]: offset = -scale * z, or nullptr
  /// CodeLayout::kChannelTiles (linear.h), codes and group metadata: only for kernels that read
  /// it (GemvKernels::i8_reads_channel_tiles); n_begin is then a multiple of 16.
  bool channel_tiles = false;
};

/// Float32 activations.
struct GemvArgs {
  const float* x;  // [m, x_stride], K valid elements per row
  int64_t x_stride;
  int64_t m;
  const float* x_group_sums;  // [m, groups]: sum of x over each group
  GemvWeights w;
};

/// Dynamic int8 activations: x ~ x_scale[r] * xq[r, :], xq zero-padded to a multiple of 128 (the
/// avx512 W4A8 row kernel reads four chunks a step).
struct GemvInt8Args {
  const int8_t* xq;  // [m, xq_stride]
  int64_t xq_stride;
  const float* x_scale;  // [m]
  // [m, groups]: sums of xq over each group, held as floats (exact: |sum| <= 127 K < 2^24 for
  // any K below 132,000)
  const float* xq_group_sums;
  int64_t m;
  GemvWeights w;
  /// [m, groups]: code_bias times xq_group_sums, in int32 (exact). The channel-tile kernels
  /// start each group's dots of unsigned codes from it, so that they come out as the dots of
  /// the signed codes.
  const int32_t* code_sums;
};

/// Int16 activations for the weight-only GEMV: x ~ chunk_scale[r, c] * xh[r, 32 c + j], each
/// 32-element chunk rounded to nearest on its own scale (max |x| / 32767), zero-padded to whole
/// chunks. The kernels compute (dequantized W) . (that rounded x) up to float32 rounding.
/// How a row of int16 activations is stored: chunks in groups of `group` (1, 2, 4 or 8) whose
/// elements are interleaved by runs of `run` (int16_activation_slot). {1, 32} is plain order;
/// 2-bit codes take {2, 8}, the order in which one 16-byte load of two chunks of 2-bit codes
/// widens into int16 lanes (and one token of 4-bit codes at the avx2 level: a 32-byte load of
/// two chunks unpacked inside its 128-bit lanes), the AVX-512 single-token kernels {8, 8, split}
/// (2-bit: 64 bytes, eight chunks, bit field i meets run i) and {4, 16, split} (4-bit: 64 bytes,
/// four chunks, low nibbles then high), the AVX2 2-bit one {4, 8, split} (32 bytes, four
/// chunks).
/// `split_bytes`: each run of 64 slots is stored as 64 high bytes (x >> 8, signed) followed by
/// 64 low bytes (x & 0xFF, unsigned), x = 256 high + low, so that VNNI's byte dot products
/// (vpdpbusd: 64 products an instruction against vpdpwssd's 32) take int16 activations exactly:
/// codes times high bytes, shifted left 8, plus low bytes times codes.
struct Int16Layout {
  int group = 1;
  int run = 32;
  bool split_bytes = false;
  bool operator==(const Int16Layout&) const = default;
};

/// Rewrites `slots` int16 activations (a multiple of 64) in place as split bytes (Int16Layout).
inline void split_int16_activations(int16_t* x, int64_t slots) {
  for (int64_t s = 0; s < slots; s += 64) {
    int16_t run[64];
    for (int i = 0; i < 64; ++i) run[i] = x[s + i];
    auto* bytes = reinterpret_cast<uint8_t*>(x + s);
    for (int i = 0; i < 64; ++i) {
      bytes[i] = static_cast<uint8_t>(static_cast<uint16_t>(run[i]) >> 8);
      bytes[64 + i] = static_cast<uint8_t>(static_cast<uint16_t>(run[i]) & 0xFF);
    }
  }
}

/// Where element j of chunk c sits in a row of int16 activations stored as `layout`.
inline int64_t int16_activation_slot(Int16Layout layout, int64_t c, int64_t j) {
  const int64_t g = layout.group, run = layout.run;
  return (c / g) * 32 * g + (j / run) * run * g + (c % g) * run + j % run;
}

/// Token r0 of pass i of the ceil(m / tokens) passes of up to `tokens` tokens that split m tokens
/// evenly (sizes differ by at most one: 128 tokens in passes of up to 6 are 18 of 6 and 4 of 5,
/// not 21 of 6 and one of 2). i = the pass count gives m.
inline int64_t token_pass_start(int64_t m, int64_t tokens, int64_t i) {
  return i * m / ((m + tokens - 1) / tokens);
}

/// Rows of W per kernel call on regrouped activations (the avx512 pair tiles take two 16-channel
/// tiles at once).
constexpr int64_t kTokenPassSliceRows = 32;

/// Int16 activations of layout {1, 32} regrouped by passes of up to `tokens` tokens
/// (token_pass_start), for the kernels that meet many tokens per vector of weights: the pass from
/// token r0 with `rows` tokens keeps the int16 pair p (elements 2p, 2p + 1) of chunk c of its token
/// r at pairs[r0 * chunks * 16 + (c * 16 + p) * rows + r], the chunk scales at scales[r0 * chunks +
/// c * rows + r] and the group sums at sums[r0 * groups + g * rows + r]: one pointer per array
/// addresses a whole pass (a pointer per token would not fit the integer registers).
struct Int16TokenPasses {
  int64_t tokens = 0;  // 0: not regrouped
  const int32_t* pairs = nullptr;
  const float* scales = nullptr;
  const float* sums = nullptr;
};

struct GemvInt16Args {
  const int16_t* xh;  // [m, xh_stride], xh_stride >= 32 * chunks rounded up to a multiple of 8
  int64_t xh_stride;
  const float* chunk_scales;  // [m, chunks]
  int64_t chunks;
  const float* xh_group_sums;  // [m, groups]: sum of the rounded x over each group
  int64_t m;
  GemvWeights w;
  Int16Layout layout;            // of xh
  Int16TokenPasses passes = {};  // the same activations regrouped, where the kernel wants them
};

/// How the codes of a packed row read: unsigned integers u (8, 4 or 2 bits; W = s (u + qmin) +
/// off), or float8 bit patterns in bytes (W = s value(code), no offsets).
enum class Codes { kUnsigned, kE4M3, kE5M2 };

struct GemvKernels {
  void (*u8)(const GemvArgs&);
  void (*u4)(const GemvArgs&);
  void (*u2)(const GemvArgs&);
  /// Float8 weights (e4m3fn, e5m2) on float32 activations.
  void (*e4m3)(const GemvArgs&);
  void (*e5m2)(const GemvArgs&);
  /// out[k] = s[k / group] * (u[k] + code_bias) + off[k / group] for one packed row of 8, 4 or 2
  /// bits; float8 rows: s[k / group] * value(code k) (code_bias and off zero).
  using DequantizeRow = void (*)(const uint8_t* row, int64_t k, float code_bias, const float* s,
                                 const float* off, int64_t group_size, float* out);
  DequantizeRow dequantize_u8, dequantize_u4, dequantize_u2, dequantize_e4m3, dequantize_e5m2;
  /// Integer-dot kernels for int8 activations (signed int8 weights; 4-bit weights of any sign).
  void (*i8_w8)(const GemvInt8Args&);
  void (*i8_w4)(const GemvInt8Args&);
  /// Whether i8_w8 and i8_w4 take weights in CodeLayout::kChannelTiles (for every m).
  bool i8_reads_channel_tiles;
  /// Int16-activation kernels of the weight-only GEMV.
  void (*i16_u8)(const GemvInt16Args&);
  void (*i16_u4)(const GemvInt16Args&);
  void (*i16_u2)(const GemvInt16Args&);
  /// Compact group metadata to float32: s[i] = float(h[i]), off[i] = -s[i] * z[i] (exact; z
  /// nullptr: no offsets, off untouched).
  void (*expand_group_params)(const uint16_t* h, const int8_t* z, int64_t count, float* s,
                              float* off);
  /// The layouts i16_u4 and i16_u2 want for one token of a single-token shape
  /// (int16_single_token_shape, or one group): the AVX-512 kernels' {4, 16, split} (64 bytes of
  /// 4-bit codes a step; for any number of tokens) and {8, 8, split} (64 bytes of 2-bit codes),
  /// the AVX2 ones' {2, 8} (two chunks of 4-bit codes a 32-byte load) and {4, 8, split}
  /// (vpmaddubsw on split bytes), the reference's {1, 32} and {2, 8}.
  Int16Layout u4_single_token_layout, u2_single_token_layout;
  /// The layout i16_u4 wants for the other calls from u4_tokens_min tokens on (fewer: {1, 32},
  /// the row kernels'): {4, 16, split} at the avx512 level from 1 token and at the avx2 level
  /// from 8 (channel tiles, 16 or 8 output channels in the vector lanes), the reference's {1, 32}.
  Int16Layout u4_tokens_layout;
  int64_t u4_tokens_min = 1;
  /// Tokens from which the weight-only linear takes 4-bit weights to dequantized tiles + sgemm
  /// rather than i16_u4, where u4_tokens_layout is split (elsewhere linear.cpp's own threshold).
  int64_t u4_gemm_min_tokens = std::numeric_limits<int64_t>::max();
  /// Tokens from which i16_u4 takes plain activations ({1, 32}) regrouped by passes of
  /// u4_pass_tokens (Int16TokenPasses) to 16-channel tiles widened to int16 pairs (the avx512
  /// level); never elsewhere.
  int64_t u4_pair_tiles_min_tokens = std::numeric_limits<int64_t>::max();
  int64_t u4_pass_tokens = 0;
};

const GemvKernels& gemv_kernels_for(Isa isa);

/// Token counts from which linear_dynamic_int8 uses the tiles (1 thread, interleaved A/B).
/// - 4-bit: at 4 tokens they already match the per-row kernel (group 32) or beat it by 1.2-1.3x
///   (group 128); 1.3-1.8x at 8..512.
/// - 8-bit: against the per-row kernel (4 tokens per chunk) they save the per-row horizontal sums
///   but not a multiply: K = 2048: 0.64x at 4 tokens, 1.01x at 32, 1.07-1.09x at 128-512;
///   K = 384 (MiniLM): 1.24x at 32, 1.31-1.36x at 128-512.
/// - 8-bit in 16-channel tiles (512-bit lanes, the avx512 level), Zen 5, K = N = 4096, 2
///   threads: 0.77x at 4 tokens, 1.18x at 6, 1.28x at 8, 1.85x at 16 (kWideTileMinTokens8Bit).
constexpr int64_t kTileMinTokens[2] = {4, 32};
constexpr int64_t kWideTileMinTokens8Bit = 6;
/// Below this many tokens per-channel 8-bit weights skip the tiles at the avx512 level: 4 rows x 4
/// tokens of 512-bit dots on the rows as packed, lanes summed once per row and token (Zen 5,
/// 4096^2 in cache, 2 threads, against the tiles: M = 2 / 4 / 8 320 / 490 / 650-720 -> 600 /
/// 900 / 820 GOPS; M = 32 / 128 1170 / 1360 -> 870 / 870, so the tiles keep 16 on).
constexpr int64_t kWideRowsMaxTokens8Bit = 16;

/// Whether the dynamic int8 kernels read compact group metadata themselves: the per-row W4A8
/// kernel below the tiles' token count does, and so do stored channel tiles (tile-major).
inline bool int8_kernel_reads_compact(int64_t m, int bits, CodeLayout layout) {
  return layout == CodeLayout::kChannelTiles || (bits == 4 && m < kTileMinTokens[0]);
}

/// Rows of W per kernel call of the dynamic int8 GEMM: 32 from 2 tokens on, where the avx512
/// tiles take two 16-channel tiles at once (gemv_int8_tiles.h); 16 for one token.
inline int64_t int8_kernel_slice_rows(int64_t m) {
  return m >= 2 ? 32 : 16;
}

/// Whether the int16 kernels take a single token through the kernel that folds each chunk's
/// activation scale into its group scale once per row (one multiply per 8 chunks instead of one
/// per chunk) and reads compact group metadata itself: groups of 1, 2, 4 or a multiple of 8
/// chunks.
inline bool int16_single_token_shape(int64_t groups, int64_t group_size) {
  const int64_t chunks_per_group = group_size / 32;
  return groups > 1 && group_size % 32 == 0 &&
         (chunks_per_group <= 2 || chunks_per_group == 4 || chunks_per_group % 8 == 0);
}

/// The activation layout the int16 kernels of `table` expect for m tokens.
inline Int16Layout int16_layout(const GemvKernels& table, int bits, int64_t m, int64_t groups,
                                int64_t group_size) {
  // The avx512 single-token kernels also take per-channel weights (one group).
  const bool single = m == 1 && (groups == 1 || int16_single_token_shape(groups, group_size));
  if (bits == 2) return single ? table.u2_single_token_layout : Int16Layout{2, 8};
  if (bits == 4 && single) return table.u4_single_token_layout;
  if (bits == 4 && m >= table.u4_pair_tiles_min_tokens) return {};
  if (bits == 4 && m >= table.u4_tokens_min) return table.u4_tokens_layout;
  return {};
}

}  // namespace quantkit::kernels

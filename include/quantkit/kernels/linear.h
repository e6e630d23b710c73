// Weight-only quantized linear layers: y = x W^T + b with W [N, K] held as a QTensor.
//
// pack_linear_weight() converts a QTensor (int8/uint8/int4/uint4/int2/uint2 or float8; per output
// channel or per group along K, the last group may be partial; symmetric, integer or float zero
// point) once into the kernels' layout:
//   * every scheme becomes W[n, k] = scale[n, g] * u[n, k] + offset[n, g], g = k / group, with
//     unsigned codes u = q - qmin(dtype) (float8 keeps its raw codes and no offset);
//   * each row of codes is padded to a multiple of 64 bytes; K is split in chunks of 32
//     elements; 8-bit codes are stored in order, a 4-bit chunk is 16 bytes whose low nibbles hold
//     elements 0..15 and high nibbles 16..31, a 2-bit chunk is 8 bytes whose bits 2i..2i+1 of byte
//     j hold element j + 8i, so one load feeds consecutive vector lanes;
//   * scales and offsets are float32 [N, groups], or compact when that is exact: float16 scales
//     and int8 zero points z (offset = -scale * z), 3 bytes a group instead of 8 (2 when
//     symmetric): what AffineSpec::scale_dtype float16 with integer or no zero points gives.
//   * optionally (CodeLayout::kChannelTiles) the rows are stored in tiles of 16 for the
//     dynamic int8 kernels: see CodeLayout.
// unpack() rebuilds the codes and qparams exactly (tested), so the layout loses nothing.
#pragma once

#include <cstdint>

#include <vector>

#include "quantkit/quant/qtensor.h"

namespace quantkit {

/// How PackedLinearWeight::codes are arranged.
/// - kRows: each output channel's codes are one contiguous row of row_bytes bytes.
/// - kChannelTiles: rows 16t..16t+15 form tile t, stored where those rows would be (16 row_bytes
///   bytes from codes + 16t row_bytes); inside it each 64-byte block b of the 16 rows is a 16 x 16
///   transpose of their dwords: byte 1024 b + 64 j + 4 r + i of the tile is byte 64 b + 4 j + i
///   of row 16t + r (rows past N are zero). One 64-byte load then holds 4 consecutive codes
///   (8-bit) or 4 + 4 (4-bit) of 16 output channels: the operand of a VNNI dot product against
///   4 broadcast activations, so the AVX-512 W8A8 / W4A8 kernels read the weights as stored.
///   In rows, they regroup every 16 rows per call, which took 30 % of W8A8 at 32 tokens.
///   The group metadata (scales/offsets, or scales_f16/zero_points) is tile-major too, [N
///   rounded up to 16, groups] with group g of row n at ((n / 16) groups + g) 16 + n % 16 (rows
///   past N zero): one load holds a group's parameters for the 16 channels.
///   Other kernels read rows: they get the codes converted back per call (correct, but a copy
///   of the weight), so this layout is for weights used through linear_dynamic_int8 on the
///   avx512 level (dynamic_int8_code_layout()).
enum class CodeLayout { kRows, kChannelTiles };

struct PackedLinearWeight {
  int64_t out_features = 0;  // N
  int64_t in_features = 0;   // K
  int64_t group_size = 0;    // K for per-channel
  int64_t groups = 0;        // ceil(K / group_size)
  DType dtype = DType::kInt8;
  /// Bytes from one packed row to the next: a multiple of 64, with one spare cache line where
  /// 8-bit rows would be a multiple of 512 bytes (>= 1 KiB) apart, so that the rows an AMX tile
  /// reads in place do not all map to the same few L1 sets.
  int64_t row_bytes = 0;
  Tensor codes;  // uint8 [N, row_bytes]; kChannelTiles: [N rounded up to 16, row_bytes]
  CodeLayout layout = CodeLayout::kRows;
  // Group metadata, [N, groups] (kChannelTiles: tile-major, [N rounded up to 16, groups]).
  Tensor scales;             // float32; undefined when compact()
  Tensor offsets;            // float32; undefined for float8 and when compact()
  bool has_offsets = false;  // false when every offset is 0 (symmetric): kernels skip the term
  QScheme scheme;            // of the source QTensor, for unpack()
  /// Compact group metadata, 3 bytes a group instead of 8: chosen by the packers when every
  /// scale is exactly a float16 and every offset is -scale * z for an integer z in [-128, 127]
  /// (scales chosen in float16 with integer zero points, AffineSpec::scale_dtype). At group size
  /// 32 that is 19 instead of 24 bytes per 32 int4 weights: what a memory-bound decode streams.
  Tensor scales_f16;   // float16
  Tensor zero_points;  // int8: offset = -scale * z; undefined when !has_offsets

  bool compact() const { return scales_f16.defined(); }
  /// Scales and offsets of rows [n0, n0 + rows) as float32, [rows, groups] each, whichever way
  /// and in whichever layout they are stored (offsets all zero when there are none; nullptr
  /// `off` skips them).
  void group_params(int64_t n0, int64_t rows, float* s, float* off) const;
  /// Bytes the kernels stream per call (codes + group metadata).
  int64_t nbytes() const;
  /// A deep copy (copies share no storage).
  PackedLinearWeight clone() const;
  /// The QTensor this was packed from (codes and scheme exact; scales/offsets as float32).
  QTensor unpack() const;
  /// The same weight with its codes and group metadata in `target` layout (exact; shares
  /// everything when the layout is already `target`).
  PackedLinearWeight with_layout(CodeLayout target) const;
};

/// The code layout the dynamic int8 kernels of the active ISA level read as stored:
/// kChannelTiles at the avx512 level for int8 and int4 weights with an integer kernel
/// (linear_dynamic_int8), else kRows.
CodeLayout dynamic_int8_code_layout(DType dtype, int64_t group_size, int64_t in_features);

/// Packs a [N, K] weight QTensor. Throws DTypeError/ShapeError for tensors the kernels do not
/// take (rank != 2, blocks spanning several rows, int32 codes).
PackedLinearWeight pack_linear_weight(const QTensor& weight, CodeLayout layout = CodeLayout::kRows);

/// Packs integer codes `q` (int8 tensor [N, K] holding values of `dtype`'s range) with
/// W[n, k] = scales[n, g] * q[n, k] + offsets[n, g], g = k / group_size (scales/offsets float32
/// [N, ceil(K / group_size)]; offsets undefined = 0). torch_xla's layout maps onto this directly.
PackedLinearWeight pack_linear_weight_affine(const Tensor& q, DType dtype, int64_t group_size,
                                             const Tensor& scales, const Tensor& offsets);

/// y [..., N] = x [..., K] W^T (+ bias [N]); x float32. Uses the active ISA and
/// num_threads() threads; the reference ISA level runs the scalar specification.
Tensor linear_weight_only(const Tensor& x, const PackedLinearWeight& weight,
                          const Tensor* bias = nullptr);

/// Dynamic W8A8 / W4A8: every row (token) of x is quantized to symmetric int8 on the fly,
/// q = clamp(round_half_even(x * (127 / max|x|)), -127, 127) with scale max|x| / 127 (1 for an
/// all-zero row), and multiplied with integer dot products (int8 or 4-bit weights, groups that
/// are multiples of 32 or per channel). Other weights take the same numerics through the float
/// kernels. The result equals linear_weight_only(dequantized activations) up to float rounding.
Tensor linear_dynamic_int8(const Tensor& x, const PackedLinearWeight& weight,
                           const Tensor* bias = nullptr);

/// linear_dynamic_int8 of several weights on the same x (a layer's q/k/v or gate/up
/// projections): ys[i] bit-identical to linear_dynamic_int8(x, *weights[i], biases[i]) (biases
/// empty, or one per weight, null for none). Where every weight has an integer kernel and all
/// share the group size, x is quantized to int8 once for all of them: TinyLlama's q/k/v
/// (2048 -> 2048, 256, 256; int8, 2 threads) 1.08-1.23x faster together at M = 16-256.
std::vector<Tensor> linear_dynamic_int8_shared_input(
    const Tensor& x, const std::vector<const PackedLinearWeight*>& weights,
    const std::vector<const Tensor*>& biases = {});

/// The per-row int8 quantization of linear_dynamic_int8, returned dequantized (float32).
Tensor fake_quantize_per_token_int8(const Tensor& x);

/// How the weight-only GEMV (decode and small batches: fewer than 160 rows of x, 64 with float32
/// activations, every M for 4-bit weights at the avx512 level; more rows go to dequantized tiles
/// + sgemm on float32) multiplies the activations.
///   kInt16 (default): each 32-element chunk of x is rounded to int16 on its own scale
///     (max |chunk| / 32767), and integer dot products (vpmaddwd) run against the codes. The
///     result is dequant(W) . x' up to float32 rounding, where |x' - x| <= max |chunk| / 65534
///     elementwise: finer than bf16 for every element within 2^7 of its chunk's maximum. It takes
///     8-10 vector operations per 32 weights against 14-17 on float x (6-7 for 4-bit weights at
///     the avx512 level, three of them bound to one port), which is what lets 4- and 2-bit weights
///     stream at the DRAM rate. x holding NaN or Inf takes the float32 path (NaN
///     propagates). Float8 weights always use float32 activations.
///   kFloat32: the activations stay float32 (the decoded weights are converted to float).
/// Default from QUANTKIT_GEMV_ACTIVATIONS=int16|float32.
enum class GemvActivations { kInt16, kFloat32 };
GemvActivations gemv_activations();
void set_gemv_activations(GemvActivations mode);

/// linear_weight_only of several weights on the same x (a layer's q/k/v or gate/up
/// projections): ys[i] = x W_i^T (+ biases[i]; biases empty, or one per weight, null for none),
/// each bit-identical to linear_weight_only(x, *weights[i], biases[i]). When the GEMV's int16
/// path serves them all (fewer than 160 rows of x; equal K, code width and group size), x is
/// rounded once and one pass of the threads covers the rows of every weight: one fork and join
/// per call instead of one per weight, which is what a decoded token pays for. When the AMX
/// tiles serve them all (the amx level, 5 rows of x or more; equal K and group size), x is
/// rounded and regrouped for the tiles once.
std::vector<Tensor> linear_weight_only_shared_input(
    const Tensor& x, const std::vector<const PackedLinearWeight*>& weights,
    const std::vector<const Tensor*>& biases = {});

/// linear_weight_only with the GEMV's activation mode given instead of the global setting
/// (kFloat32 where x already holds values that must stay exact, e.g. fake-quantized int8).
Tensor linear_weight_only(const Tensor& x, const PackedLinearWeight& weight, const Tensor* bias,
                          GemvActivations activations);

/// Threads used by kernels (default: QUANTKIT_NUM_THREADS, else the hardware's count).
int num_threads();
void set_num_threads(int threads);

}  // namespace quantkit

// One affine quantization primitive for every granularity (after torchao's quant_primitives):
// a spec names the target dtype, its integer range, how elements are grouped into blocks that
// share one scale (and zero point), and how scale/zero point are derived. Per-tensor,
// per-channel, per-group and per-token quantization are all the same code with a different
// block shape.
//
// Numerics (bit-exact with PyTorch's CPU kernels where PyTorch defines them):
//   integer zero point:  q = clamp(zp + round_half_even(x * (1.0f / s)), qmin, qmax)
//                        x' = s * (float)(q - zp)            (float32 scale)
//                        x' = (float)((double)(q - zp) * s)  (float64 scale, as per-channel torch)
//   float zero point:    q = clamp(round_half_even(fmaf(x, 1.0f / s, zp)), qmin, qmax)
//                        x' = (float)(((double)q - zp) * s)  i.e. x ~ (q - zp) * s, as PyTorch's
//                        per_channel_affine_float_qparams. torch_xla's "zero point" is zp * s.
//   no zero point:       as integer with zp = 0; float8 targets: q = fp8(clamp(x / s, +-max)).
// NaN quantizes to qmin (what PyTorch does on x86), +-inf and out-of-range values saturate.
// choose_qparams rejects NaN and +-inf in its input with a ValueError naming the block: a scale
// derived from a non-finite range would silently zero every other element of the block.
#pragma once

#include <cfloat>
#include <cstdint>
#include <string>

#include "quantkit/core/tensor.h"

namespace quantkit {

class QTensor;

enum class MappingType {
  kSymmetric,                 // scale = amax / ((qmax - qmin) / 2), zero point at the centre
  kSymmetricNoClippingError,  // scale = max(min / qmin, max / qmax): neither end is clipped
  kAsymmetric,                // scale = (max - min) / (qmax - qmin), integer or float zero point
};

enum class ZeroPointDomain {
  kInt,    // integer zero point stored as int32 (PyTorch's quint8/qint8 affine)
  kFloat,  // float zero point, x ~ (q - zp) * s (embeddings, tinygemm/torch_xla after conversion)
  kNone,   // no zero point (symmetric integers, float8)
};

/// Names used in printed specs and saved metadata: "symmetric", "symmetric_no_clipping_err",
/// "asymmetric"; "int", "float", "none". The parse functions throw ValueError on other names.
const char* mapping_type_name(MappingType mapping);
MappingType parse_mapping_type(const std::string& name);
const char* zero_point_domain_name(ZeroPointDomain domain);
ZeroPointDomain parse_zero_point_domain(const std::string& name);

/// Which elements share a scale. Resolved against a concrete shape into a block shape with one
/// extent per dimension; a block extent need not divide its dimension (the last block along that
/// dimension is then partial).
class Granularity {
 public:
  /// One scale for the whole tensor.
  static Granularity per_tensor();
  /// One scale per index along `axis` (PyTorch per-channel; axis 0 = output channels).
  static Granularity per_axis(int64_t axis);
  /// Groups of `group_size` consecutive elements along `axis` (default: the last), one scale per
  /// group and per index of every other dimension (blockwise weight quantization).
  static Granularity per_group(int64_t group_size, int64_t axis = -1);
  /// One scale per row of the last dimension (per-token activations).
  static Granularity per_token();
  /// An explicit block shape (one extent per dimension; -1 = the whole dimension).
  static Granularity blocks(Shape block_size);

  /// The block shape for a tensor of `shape`. Throws ShapeError/ValueError when the granularity
  /// does not fit the shape (axis out of range, non-positive group size...).
  Shape block_size_for(const Shape& shape) const;
  std::string to_string() const;

 private:
  enum class Kind { kPerTensor, kPerAxis, kPerGroup, kPerToken, kBlocks };
  Kind kind_ = Kind::kPerTensor;
  int64_t axis_ = 0;
  int64_t group_size_ = 0;
  Shape blocks_;
};

/// Everything needed to quantize a tensor except the data-dependent scale and zero point.
struct AffineSpec {
  DType dtype = DType::kInt8;  // int32/int8/uint8/int4/uint4/int2/uint2/float8_e4m3fn/float8_e5m2
  int64_t quant_min = -128;    // inclusive integer range (ignored for float8)
  int64_t quant_max = 127;
  Granularity granularity = Granularity::per_tensor();
  MappingType mapping = MappingType::kAsymmetric;
  ZeroPointDomain zero_point_domain = ZeroPointDomain::kInt;
  /// float32 or float64 (PyTorch keeps per-channel scales in double); float16 rounds each
  /// chosen scale to the nearest float16 before the zero point and the codes are derived from it
  /// (held in a float32 tensor), as quanto and llama.cpp keep scales: 2-byte scales in the
  /// packed kernels' layout (PackedLinearWeight::compact).
  DType scale_dtype = DType::kFloat32;
  float eps = FLT_EPSILON;    // lower bound of a chosen scale
  bool reduce_range = false;  // halve the range (floor division), as PyTorch's x86 backend

  /// The defaults for `dtype`: full range, float8 symmetric without zero point, sub-byte signed
  /// types symmetric, everything else asymmetric with an integer zero point.
  static AffineSpec for_dtype(DType dtype, Granularity granularity = Granularity::per_tensor());

  /// quant_min/quant_max after reduce_range.
  int64_t effective_min() const;
  int64_t effective_max() const;
  /// Throws ValueError/DTypeError when the fields do not make a valid spec.
  void validate() const;
  std::string to_string() const;
};

/// Scale and zero point, one entry per block: shape = ceil(shape / block_size) per dimension.
/// zero_point is int32 (kInt), float32 (kFloat) or undefined (kNone).
struct QParams {
  Tensor scale;
  Tensor zero_point;
};

/// Scale/zero point for every block of `x` (float32), from its per-block min and max.
QParams choose_qparams(const Tensor& x, const AffineSpec& spec);
/// Scale/zero point from given per-block min and max (float32, shape = number of blocks per
/// dimension, or a single element for per-tensor). Observers use this.
QParams choose_qparams_from_minmax(const Tensor& min_val, const Tensor& max_val,
                                   const AffineSpec& spec);
/// choose_qparams with a clipping search that minimises each block's quantize-dequantize squared
/// error: the block's min and max are scaled by r in {1, 1 - 0.5/steps, ..., 0.5}; for integer
/// codes with an asymmetric mapping each end is then searched on its own, and for integer codes
/// the scale (and the zero point, when asymmetric) is refitted by least squares to the chosen
/// codes while that lowers the error. Never worse than min/max on any block (steps = 0: plain
/// min/max). Costs about 3 (steps + 1) + 8 passes over each block; blocks run in parallel.
QParams choose_qparams_mse(const Tensor& x, const AffineSpec& spec, int steps = 20);
/// Per-block minimum and maximum of `x` for the block shape `block_size`.
std::pair<Tensor, Tensor> block_minmax(const Tensor& x, const Shape& block_size);

/// Quantizes float32 `x` with the given qparams; sub-byte results are packed.
QTensor quantize(const Tensor& x, const AffineSpec& spec, const QParams& qparams);
/// choose_qparams followed by quantize.
QTensor quantize(const Tensor& x, const AffineSpec& spec);
/// quantize() writing the codes into `codes` (dtype spec.dtype, shape of x), which the result
/// shares: lets a caller reuse one buffer instead of faulting in fresh pages on every call.
QTensor quantize_into(const Tensor& x, const AffineSpec& spec, const QParams& qparams,
                      Tensor codes);
/// float32 reconstruction of a quantized tensor.
Tensor dequantize(const QTensor& q);
/// dequantize() into `out` (float32, q's number of elements), e.g. a reused scratch buffer.
void dequantize_into(const QTensor& q, Tensor& out);

/// Quantize-dequantize in one pass, and the straight-through-estimator mask of the backward
/// pass (1 where the unclamped quantized value lies inside [qmin, qmax], else 0).
struct FakeQuantized {
  Tensor output;  // float32, shape of x
  Tensor mask;    // bool, shape of x
};
FakeQuantized fake_quantize(const Tensor& x, const AffineSpec& spec, const QParams& qparams);
/// Gradient of fake_quantize w.r.t. its input: grad_output where mask, else 0.
Tensor fake_quantize_backward(const Tensor& grad_output, const Tensor& mask);

/// Signal-to-quantization-noise ratio 10*log10(sum x^2 / sum (x - y)^2) in dB (inf if exact).
double sqnr_db(const Tensor& reference, const Tensor& approximation);

}  // namespace quantkit

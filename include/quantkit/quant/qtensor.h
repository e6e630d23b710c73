// QTensor: quantized codes plus what is needed to reconstruct floats from them.
#pragma once

#include <string>

#include "quantkit/quant/affine.h"

namespace quantkit {

/// The layout of a quantized tensor: target dtype, integer range, block shape (resolved against
/// the logical shape) and zero-point convention. Stored with the tensor and in saved files.
struct QScheme {
  DType dtype = DType::kInt8;
  int64_t quant_min = -128;
  int64_t quant_max = 127;
  Shape block_size;
  ZeroPointDomain zero_point_domain = ZeroPointDomain::kInt;
  MappingType mapping = MappingType::kAsymmetric;  // how the scale was chosen (informative)

  /// "int4 sym g32" / "int8 asym per-channel(axis 0)" / "fp8_e4m3 per-tensor"
  std::string describe(const Shape& shape) const;
};

class QTensor {
 public:
  QTensor() = default;
  /// Assembles a QTensor; checks that `data` has `scheme.dtype` and that scale/zero point have
  /// one entry per block of `data`'s shape. `data` of a sub-byte dtype is packed.
  QTensor(Tensor data, Tensor scale, Tensor zero_point, QScheme scheme);

  const Shape& shape() const { return data_.shape(); }
  DType dtype() const { return scheme_.dtype; }
  const QScheme& scheme() const { return scheme_; }
  /// The (packed) codes; shape() is the logical shape.
  const Tensor& data() const { return data_; }
  const Tensor& scale() const { return scale_; }
  /// int32 (integer zero points), float32 (float zero points) or undefined (none).
  const Tensor& zero_point() const { return zero_point_; }
  bool defined() const { return data_.defined(); }

  /// Unpacked integer codes: int8/uint8 for 8-bit and smaller types, int32 for int32; float8
  /// codes come back as their raw uint8 bit patterns.
  Tensor int_repr() const;
  /// float32 reconstruction (same as quantkit::dequantize(*this)).
  Tensor dequantize() const;
  /// Bytes of codes + scales + zero points.
  int64_t nbytes() const;
  /// "QTensor(int4[384, 1536] sym g32, 0.28 MiB)"
  std::string summary() const;

 private:
  Tensor data_;
  Tensor scale_;
  Tensor zero_point_;
  QScheme scheme_;
};

/// Number of blocks along each dimension: ceil(shape[d] / block_size[d]).
Shape blocks_shape(const Shape& shape, const Shape& block_size);

}  // namespace quantkit

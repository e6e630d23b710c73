#include "quantkit/quant/qtensor.h"

#include <algorithm>
#include <vector>

#include "quantkit/core/packing.h"

namespace quantkit {

Shape blocks_shape(const Shape& shape, const Shape& block_size) {
  QK_CHECK(shape.size() == block_size.size(), ShapeError, "block shape ",
           shape_to_string(block_size), " does not have the rank of tensor shape ",
           shape_to_string(shape));
  Shape grid(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    QK_CHECK(block_size[d] > 0, ValueError, "block extents must be positive, got ",
             shape_to_string(block_size));
    grid[d] = (shape[d] + block_size[d] - 1) / block_size[d];
  }
  return grid;
}

std::string QScheme::describe(const Shape& shape) const {
  std::string name = is_float8(dtype) ? (dtype == DType::kFloat8E4M3 ? "fp8_e4m3" : "fp8_e5m2")
                                      : std::string(dtype_name(dtype));
  if (!is_float8(dtype)) name += zero_point_domain == ZeroPointDomain::kNone ? " sym" : " asym";
  if (zero_point_domain == ZeroPointDomain::kFloat) name += "(float zp)";
  // Recognise the common granularities; anything else prints its block shape.
  int64_t full_dims = 0, unit_dims = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    full_dims += block_size[d] >= shape[d];
    unit_dims += block_size[d] == 1;
  }
  const auto rank = static_cast<int64_t>(shape.size());
  if (full_dims == rank) return name + " per-tensor";
  if (rank >= 2 && unit_dims == rank - 1 && block_size.back() < shape.back()) {
    const bool partial = shape.back() % block_size.back() != 0;
    return name + " g" + std::to_string(block_size.back()) +
           (partial ? " (partial last group)" : "");
  }
  if (unit_dims == 1 && full_dims == rank - 1) {
    for (size_t d = 0; d < shape.size(); ++d) {
      if (block_size[d] == 1 && shape[d] != 1)
        return name + " per-channel(axis " + std::to_string(d) + ")";
    }
  }
  return name + " blocks" + shape_to_string(block_size);
}

QTensor::QTensor(Tensor data, Tensor scale, Tensor zero_point, QScheme scheme)
    : data_(std::move(data)),
      scale_(std::move(scale)),
      zero_point_(std::move(zero_point)),
      scheme_(std::move(scheme)) {
  QK_CHECK(data_.defined(), ValueError, "QTensor: data is undefined");
  QK_CHECK(data_.dtype() == scheme_.dtype, DTypeError, "QTensor: data has dtype ",
           dtype_name(data_.dtype()), " but the scheme says ", dtype_name(scheme_.dtype));
  QK_CHECK(is_quantized_int(scheme_.dtype) || is_float8(scheme_.dtype), DTypeError,
           "QTensor: ", dtype_name(scheme_.dtype), " is not a quantized dtype");
  const Shape grid = blocks_shape(data_.shape(), scheme_.block_size);
  QK_CHECK(
      scale_.defined() && (scale_.dtype() == DType::kFloat32 || scale_.dtype() == DType::kFloat64),
      DTypeError, "QTensor: scale must be a float32 or float64 tensor");
  QK_CHECK(data_.numel() == 0 || scale_.numel() == shape_numel(grid), ShapeError,
           "QTensor: scale has shape ", shape_to_string(scale_.shape()), " but the block grid is ",
           shape_to_string(grid));
  switch (scheme_.zero_point_domain) {
    case ZeroPointDomain::kNone:
      QK_CHECK(!zero_point_.defined(), ValueError,
               "QTensor: a zero point was given for a scheme without one");
      break;
    case ZeroPointDomain::kInt:
    case ZeroPointDomain::kFloat: {
      const DType want =
          scheme_.zero_point_domain == ZeroPointDomain::kInt ? DType::kInt32 : DType::kFloat32;
      QK_CHECK(zero_point_.defined() && zero_point_.dtype() == want, DTypeError,
               "QTensor: zero_point must be ", dtype_name(want));
      QK_CHECK(zero_point_.numel() == scale_.numel(), ShapeError, "QTensor: zero_point has shape ",
               shape_to_string(zero_point_.shape()), ", scale has ",
               shape_to_string(scale_.shape()));
    }
  }
}

Tensor QTensor::int_repr() const {
  if (is_float8(scheme_.dtype)) {
    Tensor codes = Tensor::empty(shape(), DType::kUInt8);
    if (data_.nbytes() > 0) std::copy_n(data_.bytes(), data_.nbytes(), codes.bytes());
    return codes;
  }
  const DTypeInfo& info = dtype_info(scheme_.dtype);
  if (info.bits >= 8) return data_.clone();
  const DType out_dtype = info.is_signed ? DType::kInt8 : DType::kUInt8;
  std::vector<int32_t> values(static_cast<size_t>(data_.numel()));
  unpack_integers(data_.bytes(), scheme_.dtype, values);
  Tensor out = Tensor::empty(shape(), out_dtype);
  pack_integers(values, out_dtype, out.bytes());
  return out;
}

Tensor QTensor::dequantize() const {
  return quantkit::dequantize(*this);
}

int64_t QTensor::nbytes() const {
  return data_.nbytes() + scale_.nbytes() + (zero_point_.defined() ? zero_point_.nbytes() : 0);
}

std::string QTensor::summary() const {
  return detail::concat("QTensor(", dtype_name(scheme_.dtype), shape_to_string(shape()), " ",
                        scheme_.describe(shape()), ", ", format_bytes(nbytes()), ")");
}

}  // namespace quantkit

#include "quantkit/core/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "quantkit/core/float_convert.h"
#include "quantkit/core/packing.h"
#include "storage.h"

namespace quantkit {

namespace detail {
template <>
bool storage_type_matches<float>(DType d) {
  return d == DType::kFloat32;
}
template <>
bool storage_type_matches<double>(DType d) {
  return d == DType::kFloat64;
}
template <>
bool storage_type_matches<int64_t>(DType d) {
  return d == DType::kInt64;
}
template <>
bool storage_type_matches<int32_t>(DType d) {
  return d == DType::kInt32;
}
template <>
bool storage_type_matches<int8_t>(DType d) {
  return d == DType::kInt8;
}
template <>
bool storage_type_matches<uint8_t>(DType d) {
  return d == DType::kUInt8 || d == DType::kBool || is_float8(d) || is_sub_byte(d);
}
template <>
bool storage_type_matches<uint16_t>(DType d) {
  return d == DType::kFloat16 || d == DType::kBFloat16;
}
}  // namespace detail

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t extent : shape) {
    QK_CHECK(extent >= 0, ShapeError, "negative extent ", extent, " in shape ",
             shape_to_string(shape));
    QK_CHECK(extent == 0 || n <= std::numeric_limits<int64_t>::max() / extent, ShapeError, "shape ",
             shape_to_string(shape), " has more elements than int64 can count");
    n *= extent;
  }
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor Tensor::empty(Shape shape, DType dtype) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.dtype_set_ = true;
  t.data_ = detail::allocate_storage(static_cast<size_t>(storage_bytes(dtype, t.numel_)));
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  std::memset(t.data_.get(), 0, static_cast<size_t>(t.nbytes()));
  return t;
}

template <typename T>
Tensor Tensor::from_values(std::span<const T> values, Shape shape, DType dtype) {
  QK_CHECK(detail::storage_type_matches<T>(dtype), DTypeError,
           "from_values: element type does not match dtype ", dtype_name(dtype));
  Tensor t = empty(std::move(shape), dtype);
  QK_CHECK(static_cast<int64_t>(values.size_bytes()) == t.nbytes(), ShapeError,
           "from_values: ", values.size(), " values given for shape ", shape_to_string(t.shape()));
  if (!values.empty()) std::memcpy(t.data_.get(), values.data(), values.size_bytes());
  return t;
}

template Tensor Tensor::from_values<float>(std::span<const float>, Shape, DType);
template Tensor Tensor::from_values<double>(std::span<const double>, Shape, DType);
template Tensor Tensor::from_values<int64_t>(std::span<const int64_t>, Shape, DType);
template Tensor Tensor::from_values<int32_t>(std::span<const int32_t>, Shape, DType);
template Tensor Tensor::from_values<int8_t>(std::span<const int8_t>, Shape, DType);
template Tensor Tensor::from_values<uint8_t>(std::span<const uint8_t>, Shape, DType);
template Tensor Tensor::from_values<uint16_t>(std::span<const uint16_t>, Shape, DType);

Tensor Tensor::from_floats(std::vector<float> values, Shape shape) {
  return from_values<float>(values, std::move(shape), DType::kFloat32);
}

Tensor Tensor::view(std::shared_ptr<const void> owner, std::span<const uint8_t> bytes, Shape shape,
                    DType dtype) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.dtype_set_ = true;
  t.is_view_ = true;
  QK_CHECK(static_cast<int64_t>(bytes.size()) == t.nbytes(), ShapeError, "view: ", bytes.size(),
           " bytes cannot hold ", dtype_name(dtype), shape_to_string(t.shape_), " (needs ",
           t.nbytes(), " bytes)");
  // Aliasing constructor: shares ownership with `owner`, points at the view's first byte. The
  // mapping is private copy-on-write, so writes through a view never reach the file.
  t.data_ = std::shared_ptr<uint8_t>(std::const_pointer_cast<void>(owner),
                                     const_cast<uint8_t*>(bytes.data()));
  return t;
}

int64_t Tensor::size(int64_t d) const {
  const int64_t rank = dim();
  const int64_t index = d < 0 ? d + rank : d;
  QK_CHECK(index >= 0 && index < rank, ShapeError, "dimension ", d,
           " out of range for a tensor of rank ", rank);
  return shape_[static_cast<size_t>(index)];
}

Tensor Tensor::reshape(Shape shape) const {
  int64_t known = 1;
  int inferred = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      QK_CHECK(inferred < 0, ShapeError, "reshape: more than one -1 in ", shape_to_string(shape));
      inferred = static_cast<int>(i);
    } else {
      QK_CHECK(shape[i] >= 0, ShapeError, "reshape: negative extent in ", shape_to_string(shape));
      known *= shape[i];
    }
  }
  if (inferred >= 0) {
    QK_CHECK(known > 0 && numel_ % known == 0, ShapeError, "reshape: cannot infer -1 in ",
             shape_to_string(shape), " for ", numel_, " elements");
    shape[static_cast<size_t>(inferred)] = numel_ / known;
  }
  QK_CHECK(shape_numel(shape) == numel_, ShapeError, "reshape: ", shape_to_string(shape_), " (",
           numel_, " elements) cannot become ", shape_to_string(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_);
  if (nbytes() > 0) std::memcpy(t.data_.get(), data_.get(), static_cast<size_t>(nbytes()));
  return t;
}

float Tensor::value_as_float(int64_t i) const {
  QK_CHECK(i >= 0 && i < numel_, ShapeError, "index ", i, " out of range for ", numel_,
           " elements");
  const uint8_t* p = data_.get();
  switch (dtype_) {
    case DType::kFloat32:
      return reinterpret_cast<const float*>(p)[i];
    case DType::kFloat64:
      return static_cast<float>(reinterpret_cast<const double*>(p)[i]);
    case DType::kFloat16:
      return f16_bits_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::kBFloat16:
      return bf16_bits_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::kFloat8E4M3:
      return e4m3_bits_to_float(p[i]);
    case DType::kFloat8E5M2:
      return e5m2_bits_to_float(p[i]);
    case DType::kInt64:
      return static_cast<float>(reinterpret_cast<const int64_t*>(p)[i]);
    case DType::kInt32:
      return static_cast<float>(reinterpret_cast<const int32_t*>(p)[i]);
    case DType::kInt8:
      return reinterpret_cast<const int8_t*>(p)[i];
    case DType::kUInt8:
    case DType::kBool:
      return p[i];
    case DType::kInt4:
    case DType::kUInt4:
    case DType::kInt2:
    case DType::kUInt2: {
      const DTypeInfo& info = dtype_info(dtype_);
      return static_cast<float>(packed_get(p, i, info.bits, info.is_signed));
    }
  }
  throw DTypeError("value_as_float: invalid dtype");
}

namespace {

void float_to_dtype(const float* in, int64_t n, DType dtype, uint8_t* out) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(out, in, static_cast<size_t>(n) * 4);
      return;
    case DType::kFloat64:
      for (int64_t i = 0; i < n; ++i) reinterpret_cast<double*>(out)[i] = in[i];
      return;
    case DType::kFloat16:
      for (int64_t i = 0; i < n; ++i)
        reinterpret_cast<uint16_t*>(out)[i] = float_to_f16_bits(in[i]);
      return;
    case DType::kBFloat16:
      for (int64_t i = 0; i < n; ++i)
        reinterpret_cast<uint16_t*>(out)[i] = float_to_bf16_bits(in[i]);
      return;
    case DType::kFloat8E4M3:
      for (int64_t i = 0; i < n; ++i) out[i] = float_to_e4m3_bits(in[i]);
      return;
    case DType::kFloat8E5M2:
      for (int64_t i = 0; i < n; ++i) out[i] = float_to_e5m2_bits(in[i]);
      return;
    default:
      throw DTypeError(
          detail::concat("Tensor::to: converting floats to ", dtype_name(dtype),
                         " is quantization; use quantkit::quantize with an AffineSpec"));
  }
}

}  // namespace

Tensor Tensor::to(DType dtype) const {
  QK_CHECK(defined(), Error, "Tensor::to on an undefined tensor");
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype);
  if (dtype_ == DType::kFloat64 && dtype == DType::kFloat32) {
    for (int64_t i = 0; i < numel_; ++i)
      out.data<float>()[i] = static_cast<float>(data<double>()[i]);
    return out;
  }
  if (dtype_ == DType::kFloat32) {
    float_to_dtype(data<float>(), numel_, dtype, out.bytes());
    return out;
  }
  QK_CHECK(!is_sub_byte(dtype_), DTypeError, "Tensor::to: packed ", dtype_name(dtype_),
           " holds quantized codes; dequantize the QTensor instead");
  if (dtype == DType::kFloat64 && (dtype_ == DType::kInt64 || dtype_ == DType::kInt32)) {
    // Wide integers convert directly: exact up to 2^53, where float32 staging would round.
    for (int64_t i = 0; i < numel_; ++i) {
      out.data<double>()[i] = dtype_ == DType::kInt64 ? static_cast<double>(data<int64_t>()[i])
                                                      : static_cast<double>(data<int32_t>()[i]);
    }
    return out;
  }
  // Every other source goes through float32, which is exact for f16/bf16/fp8 and for integers
  // up to 2^24; larger integers round as a float32 cast does.
  std::vector<float> staged(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) staged[static_cast<size_t>(i)] = value_as_float(i);
  float_to_dtype(staged.data(), numel_, dtype, out.bytes());
  return out;
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f %s", value, units[unit]);
  }
  return buf;
}

std::string Tensor::summary() const {
  if (!defined()) return "Tensor(undefined)";
  return detail::concat(dtype_name(dtype_), shape_to_string(shape_), " (", format_bytes(nbytes()),
                        is_view_ ? ", mapped)" : ")");
}

}  // namespace quantkit

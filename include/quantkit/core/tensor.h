// Tensor: a shape, a dtype and contiguous row-major bytes. Storage is either owned (64-byte
// aligned, so SIMD kernels can use aligned loads on row starts that are multiples of 64 bytes) or
// a view on bytes owned by someone else, typically a memory-mapped checkpoint, so loading a model
// does not copy it. Copies of a Tensor share the bytes; use clone() for a deep copy.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "quantkit/core/dtype.h"
#include "quantkit/core/error.h"

namespace quantkit {

using Shape = std::vector<int64_t>;

/// Number of elements of `shape` (1 for a 0-d shape). Throws ShapeError on negative extents or
/// on overflow of int64.
int64_t shape_numel(const Shape& shape);
/// "[2, 3, 4]"
std::string shape_to_string(const Shape& shape);

namespace detail {
template <typename T>
bool storage_type_matches(DType dtype);
}

class Tensor {
 public:
  /// An undefined tensor (no shape, no bytes); defined() is false.
  Tensor() = default;

  /// Uninitialised owned tensor.
  static Tensor empty(Shape shape, DType dtype);
  /// Owned tensor filled with zero bytes.
  static Tensor zeros(Shape shape, DType dtype);
  /// Owned copy of `values` with the given shape; T must match dtype's storage type.
  template <typename T>
  static Tensor from_values(std::span<const T> values, Shape shape, DType dtype);
  /// Owned float32 tensor from a list of values.
  static Tensor from_floats(std::vector<float> values, Shape shape);
  /// A view on `bytes` that keeps `owner` alive; no copy. `bytes` must hold
  /// storage_bytes(dtype, numel(shape)) bytes (checked).
  static Tensor view(std::shared_ptr<const void> owner, std::span<const uint8_t> bytes, Shape shape,
                     DType dtype);

  bool defined() const { return data_ != nullptr || dtype_set_; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  /// Extent of dimension `d`; negative `d` counts from the end.
  int64_t size(int64_t d) const;
  DType dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  int64_t nbytes() const { return storage_bytes(dtype_, numel_); }
  /// True when the bytes belong to another owner (e.g. a memory-mapped file).
  bool is_view() const { return is_view_; }

  /// Typed access. T is the storage type: float (float32), double, int64_t, int32_t, int8_t,
  /// uint8_t (uint8, bool, float8 and packed sub-byte types), uint16_t (float16, bfloat16).
  template <typename T>
  T* data() {
    check_access<T>();
    return reinterpret_cast<T*>(data_.get());
  }
  template <typename T>
  const T* data() const {
    check_access<T>();
    return reinterpret_cast<const T*>(data_.get());
  }
  uint8_t* bytes() { return data_.get(); }
  const uint8_t* bytes() const { return data_.get(); }

  /// Same bytes, new shape with the same number of elements; one extent may be -1.
  Tensor reshape(Shape shape) const;
  /// Deep, owned copy.
  Tensor clone() const;
  /// Converts between float32, float64, float16, bfloat16, float8 (round-to-nearest-even, c10
  /// rules) and from byte-sized or larger integers to floats. Sub-byte and float->int conversions
  /// are quantization and live in quant/; they throw DTypeError here.
  Tensor to(DType dtype) const;
  /// Element `i` (flat index) converted to float; for tests, printing and slow paths.
  float value_as_float(int64_t i) const;

  /// "float32[384, 1536] (2.25 MiB, mapped)"
  std::string summary() const;

 private:
  template <typename T>
  void check_access() const {
    QK_CHECK(defined(), Error, "access to the data of an undefined tensor");
    QK_CHECK(detail::storage_type_matches<T>(dtype_), DTypeError, "tensor of dtype ",
             dtype_name(dtype_), " accessed with a storage type that does not match it");
  }

  std::shared_ptr<uint8_t> data_;
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::kFloat32;
  bool dtype_set_ = false;
  bool is_view_ = false;
};

/// Human-readable byte count: "512 B", "3.00 KiB", "1.25 GiB".
std::string format_bytes(int64_t bytes);

}  // namespace quantkit

// Value: what flows between modules. Either a float32 tensor or a per-tensor quantized
// activation (PyTorch's quantized tensor: quint8/qint8 codes with one scale and zero point,
// x ~ (q - zero_point) * scale). Copies share the bytes.
#pragma once

#include <cstdint>
#include <string>

#include "quantkit/core/tensor.h"

namespace quantkit {

class Value {
 public:
  Value() = default;
  /// A float32 value.
  Value(Tensor t);  // NOLINT(google-explicit-constructor): modules take floats implicitly
  /// A quantized value: `codes` uint8 or int8.
  static Value quantized(Tensor codes, double scale, int64_t zero_point);

  bool is_quantized() const { return quantized_; }
  const Shape& shape() const { return data_.shape(); }
  /// The float32 tensor; throws DTypeError naming `who` when the value is quantized, with the
  /// hint to put a DeQuantStub in front of `who`.
  const Tensor& as_float(const std::string& who) const;
  /// The codes; throws DTypeError naming `who` when the value is float (hint: QuantStub).
  const Tensor& codes(const std::string& who) const;
  double scale() const { return scale_; }
  int64_t zero_point() const { return zero_point_; }
  /// float32: the value itself, or the dequantized codes.
  Tensor to_float() const;
  /// The same value with another shape (same number of elements), e.g. flatten.
  Value reshape(Shape shape) const;
  /// The raw tensor (float data or codes).
  const Tensor& data() const { return data_; }

 private:
  Tensor data_;
  bool quantized_ = false;
  double scale_ = 1.0;
  int64_t zero_point_ = 0;
};

}  // namespace quantkit

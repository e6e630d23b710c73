// Element types. Sub-byte integer types (int4, uint4, int2, uint2) are stored packed: element i of
// the flattened tensor lives in byte i / (8 / bits) at bit offset (i % (8 / bits)) * bits, i.e.
// the first element sits in the least-significant bits ("little-endian nibbles", as ggml and
// MLX do). Signed sub-byte values are two's complement within their bit field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace quantkit {

enum class DType : uint8_t {
  kFloat32,
  kFloat64,
  kFloat16,
  kBFloat16,
  kFloat8E4M3,  // float8_e4m3fn: no infinities, max finite 448
  kFloat8E5M2,  // keeps infinities, max finite 57344
  kInt64,
  kInt32,
  kInt8,
  kUInt8,
  kInt4,
  kUInt4,
  kInt2,
  kUInt2,
  kBool,
};

/// Static facts about a dtype.
struct DTypeInfo {
  std::string_view name;  // quantkit's name: "float32", "int4", ...
  int bits;               // storage bits per element
  bool is_floating;
  bool is_signed;
  int64_t int_min;  // integer range (0 for floating types)
  int64_t int_max;
};

/// Facts about `dtype`.
const DTypeInfo& dtype_info(DType dtype);
inline std::string_view dtype_name(DType dtype) {
  return dtype_info(dtype).name;
}
inline int dtype_bits(DType dtype) {
  return dtype_info(dtype).bits;
}
inline bool is_floating(DType dtype) {
  return dtype_info(dtype).is_floating;
}
inline bool is_sub_byte(DType dtype) {
  return dtype_info(dtype).bits < 8;
}
/// True for the integer types a quantized tensor may hold (int2..int32).
bool is_quantized_int(DType dtype);
/// True for float8_e4m3fn and float8_e5m2.
inline bool is_float8(DType dtype) {
  return dtype == DType::kFloat8E4M3 || dtype == DType::kFloat8E5M2;
}

/// Parses a quantkit dtype name ("int4", "float8_e4m3fn", "fp8_e4m3", "bf16", ...).
/// Throws DTypeError listing the accepted names when `name` is unknown.
DType parse_dtype(std::string_view name);

/// Bytes needed to store `numel` elements of `dtype` (sub-byte types round up to whole bytes).
int64_t storage_bytes(DType dtype, int64_t numel);

}  // namespace quantkit

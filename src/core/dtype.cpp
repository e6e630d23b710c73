#include "quantkit/core/dtype.h"

#include <array>
#include <limits>

#include "quantkit/core/error.h"

namespace quantkit {
namespace {

constexpr int64_t kI32Min = std::numeric_limits<int32_t>::min();
constexpr int64_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

// Indexed by DType's underlying value; the order must follow the enum.
constexpr std::array<DTypeInfo, 15> kInfos = {{
    {"float32", 32, true, true, 0, 0},
    {"float64", 64, true, true, 0, 0},
    {"float16", 16, true, true, 0, 0},
    {"bfloat16", 16, true, true, 0, 0},
    {"float8_e4m3fn", 8, true, true, 0, 0},
    {"float8_e5m2", 8, true, true, 0, 0},
    {"int64", 64, false, true, kI64Min, kI64Max},
    {"int32", 32, false, true, kI32Min, kI32Max},
    {"int8", 8, false, true, -128, 127},
    {"uint8", 8, false, false, 0, 255},
    {"int4", 4, false, true, -8, 7},
    {"uint4", 4, false, false, 0, 15},
    {"int2", 2, false, true, -2, 1},
    {"uint2", 2, false, false, 0, 3},
    {"bool", 8, false, false, 0, 1},
}};

struct Alias {
  std::string_view name;
  DType dtype;
};

constexpr std::array<Alias, 15> kAliases = {{
    {"f32", DType::kFloat32},
    {"fp32", DType::kFloat32},
    {"f64", DType::kFloat64},
    {"f16", DType::kFloat16},
    {"fp16", DType::kFloat16},
    {"half", DType::kFloat16},
    {"bf16", DType::kBFloat16},
    {"fp8_e4m3", DType::kFloat8E4M3},
    {"float8_e4m3", DType::kFloat8E4M3},
    {"e4m3", DType::kFloat8E4M3},
    {"fp8_e5m2", DType::kFloat8E5M2},
    {"e5m2", DType::kFloat8E5M2},
    {"qint8", DType::kInt8},
    {"quint8", DType::kUInt8},
    {"qint32", DType::kInt32},
}};

}  // namespace

const DTypeInfo& dtype_info(DType dtype) {
  const auto index = static_cast<size_t>(dtype);
  QK_CHECK(index < kInfos.size(), DTypeError, "invalid dtype value ", index);
  return kInfos[index];
}

bool is_quantized_int(DType dtype) {
  switch (dtype) {
    case DType::kInt32:
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kInt4:
    case DType::kUInt4:
    case DType::kInt2:
    case DType::kUInt2:
      return true;
    default:
      return false;
  }
}

DType parse_dtype(std::string_view name) {
  for (size_t i = 0; i < kInfos.size(); ++i) {
    if (kInfos[i].name == name) return static_cast<DType>(i);
  }
  for (const Alias& alias : kAliases) {
    if (alias.name == name) return alias.dtype;
  }
  std::string known;
  for (const auto& info : kInfos)
    known += std::string(known.empty() ? "" : ", ") + std::string(info.name);
  throw DTypeError(
      detail::concat("unknown dtype '", name, "'; expected one of: ", known,
                     " (aliases: fp32, fp16, bf16, fp8_e4m3, fp8_e5m2, qint8, quint8, qint32)"));
}

int64_t storage_bytes(DType dtype, int64_t numel) {
  const int bits = dtype_bits(dtype);
  if (bits >= 8) return numel * (bits / 8);
  const int64_t per_byte = 8 / bits;
  return (numel + per_byte - 1) / per_byte;
}

}  // namespace quantkit

#include "quantkit/core/packing.h"

#include <cstring>

#include "quantkit/core/error.h"

namespace quantkit {

void pack_integers(std::span<const int32_t> values, DType dtype, uint8_t* out) {
  const auto n = static_cast<int64_t>(values.size());
  switch (dtype) {
    case DType::kInt32:
      std::memcpy(out, values.data(), values.size_bytes());
      return;
    case DType::kInt8:
      for (int64_t i = 0; i < n; ++i)
        reinterpret_cast<int8_t*>(out)[i] = static_cast<int8_t>(values[i]);
      return;
    case DType::kUInt8:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(values[i]);
      return;
    case DType::kInt4:
    case DType::kUInt4:
    case DType::kInt2:
    case DType::kUInt2: {
      const int bits = dtype_bits(dtype);
      std::memset(out, 0, static_cast<size_t>(storage_bytes(dtype, n)));
      for (int64_t i = 0; i < n; ++i) packed_set(out, i, bits, values[i]);
      return;
    }
    default:
      throw DTypeError(detail::concat("pack_integers: dtype ", dtype_name(dtype),
                                      " is not an integer quantization type"));
  }
}

void unpack_integers(const uint8_t* packed, DType dtype, std::span<int32_t> out) {
  const auto n = static_cast<int64_t>(out.size());
  switch (dtype) {
    case DType::kInt32:
      std::memcpy(out.data(), packed, out.size_bytes());
      return;
    case DType::kInt8:
      for (int64_t i = 0; i < n; ++i) out[i] = reinterpret_cast<const int8_t*>(packed)[i];
      return;
    case DType::kUInt8:
      for (int64_t i = 0; i < n; ++i) out[i] = packed[i];
      return;
    case DType::kInt4:
    case DType::kUInt4:
    case DType::kInt2:
    case DType::kUInt2: {
      const DTypeInfo& info = dtype_info(dtype);
      for (int64_t i = 0; i < n; ++i) out[i] = packed_get(packed, i, info.bits, info.is_signed);
      return;
    }
    default:
      throw DTypeError(detail::concat("unpack_integers: dtype ", dtype_name(dtype),
                                      " is not an integer quantization type"));
  }
}

}  // namespace quantkit

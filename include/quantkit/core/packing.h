// Packing of sub-byte integers (int4, uint4, int2, uint2) in the order documented in dtype.h:
// element i lives in byte i / per_byte at bit offset (i % per_byte) * bits, least significant
// first. Byte-sized and wider integer dtypes "pack" as plain copies so callers need no branch.
#pragma once

#include <cstdint>
#include <span>

#include "quantkit/core/dtype.h"

namespace quantkit {

/// Reads element `index` of packed storage as an integer (sign-extended for signed types).
inline int32_t packed_get(const uint8_t* packed, int64_t index, int bits, bool is_signed) {
  const int per_byte = 8 / bits;
  const int shift = static_cast<int>(index % per_byte) * bits;
  const uint32_t mask = (1u << bits) - 1u;
  const uint32_t field = (static_cast<uint32_t>(packed[index / per_byte]) >> shift) & mask;
  if (is_signed && (field >> (bits - 1))) return static_cast<int32_t>(field) - (1 << bits);
  return static_cast<int32_t>(field);
}

/// Writes `value` (already inside the type's range) as element `index`.
inline void packed_set(uint8_t* packed, int64_t index, int bits, int32_t value) {
  const int per_byte = 8 / bits;
  const int shift = static_cast<int>(index % per_byte) * bits;
  const uint32_t mask = ((1u << bits) - 1u) << shift;
  uint8_t& byte = packed[index / per_byte];
  byte = static_cast<uint8_t>((byte & ~mask) | ((static_cast<uint32_t>(value) << shift) & mask));
}

/// Packs `values` (each inside `dtype`'s integer range) into `out`, which must hold
/// storage_bytes(dtype, values.size()) bytes. Works for every integer dtype.
void pack_integers(std::span<const int32_t> values, DType dtype, uint8_t* out);
/// Inverse of pack_integers: reads `out.size()` elements of `dtype` from `packed`.
void unpack_integers(const uint8_t* packed, DType dtype, std::span<int32_t> out);

}  // namespace quantkit

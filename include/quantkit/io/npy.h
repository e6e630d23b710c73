// NumPy .npy files (format 1.0/2.0/3.0), the format reference outputs are shipped in: little-endian
// float32, float64, int32, int64, int8 or uint8 data in C order.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

#include "quantkit/core/tensor.h"

namespace quantkit {

/// Parses .npy bytes. Throws FormatError for a bad magic, a header that is not the documented
/// dict, Fortran order, a dtype other than <f4 <f8 <i4 <i8 |i1 |u1, or a data size that does
/// not match the shape.
Tensor parse_npy(std::span<const uint8_t> bytes);

/// Reads a .npy file of at most `max_bytes` bytes (default 4 GiB).
Tensor read_npy(const std::filesystem::path& path, int64_t max_bytes = int64_t{1} << 32);

}  // namespace quantkit

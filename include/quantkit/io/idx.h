// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed: a big-endian header
// (0x00 0x00 type ndim, then ndim uint32 extents) followed by the data. quantkit reads the
// unsigned-byte type (0x08), which is what image and label files use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

#include "quantkit/core/tensor.h"

namespace quantkit {

/// Parses an uncompressed IDX byte buffer into a uint8 tensor of the stored shape. Throws
/// FormatError for a bad magic, an element type other than uint8, more than 4 dimensions, a
/// zero-size header or a byte count that does not match the extents.
Tensor parse_idx(std::span<const uint8_t> bytes);

/// Reads an IDX file; a name ending in ".gz" is decompressed first (at most `max_bytes` of
/// output, default 1 GiB, so a corrupt or hostile archive cannot exhaust memory).
Tensor read_idx(const std::filesystem::path& path, int64_t max_bytes = int64_t{1} << 30);

}  // namespace quantkit

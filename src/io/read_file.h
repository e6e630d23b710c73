// Whole-file reads for the small array formats, bounded before allocating. Private to io/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "quantkit/core/error.h"

namespace quantkit::detail {

/// The bytes of `path`; FormatError when it holds more than `max_bytes`, IoError when it cannot
/// be read.
inline std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path, int64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  QK_CHECK(in.good(), IoError, "cannot open ", path.string());
  in.seekg(0, std::ios::end);
  const auto size = static_cast<int64_t>(in.tellg());
  QK_CHECK(size >= 0 && size <= max_bytes, FormatError, path.string(), " is larger than ",
           max_bytes, " bytes");
  in.seekg(0);
  std::vector<uint8_t> out(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(out.data()), size);
  QK_CHECK(in.good() || size == 0, IoError, "short read from ", path.string());
  return out;
}

}  // namespace quantkit::detail

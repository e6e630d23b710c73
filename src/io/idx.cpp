#include "quantkit/io/idx.h"

#include "read_file.h"

#include <zlib.h>

#include <cstring>
#include <memory>
#include <vector>

namespace quantkit {
namespace {

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

std::vector<uint8_t> gunzip(const std::filesystem::path& path, int64_t max_bytes) {
  gzFile f = gzopen(path.c_str(), "rb");
  QK_CHECK(f != nullptr, IoError, "cannot open ", path.string());
  std::unique_ptr<gzFile_s, int (*)(gzFile)> guard(f, gzclose);
  std::vector<uint8_t> out;
  std::vector<uint8_t> chunk(1 << 20);
  for (;;) {
    const int n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) {
      int code = 0;
      throw FormatError(path.string() + ": corrupt gzip data (" + gzerror(f, &code) + ")");
    }
    if (n == 0) break;
    QK_CHECK(static_cast<int64_t>(out.size()) + n <= max_bytes, FormatError, path.string(),
             " decompresses to more than ", max_bytes, " bytes");
    out.insert(out.end(), chunk.begin(), chunk.begin() + n);
  }
  return out;
}

}  // namespace

Tensor parse_idx(std::span<const uint8_t> bytes) {
  QK_CHECK(bytes.size() >= 4, FormatError, "IDX data too short for a header (", bytes.size(),
           " bytes)");
  QK_CHECK(bytes[0] == 0 && bytes[1] == 0, FormatError,
           "not an IDX file: the first two bytes must be zero");
  QK_CHECK(bytes[2] == 0x08, FormatError, "IDX element type 0x", std::hex, int{bytes[2]},
           " is not supported: only unsigned bytes (0x08)");
  const int ndim = bytes[3];
  QK_CHECK(ndim >= 1 && ndim <= 4, FormatError, "IDX with ", ndim,
           " dimensions is not supported (1 to 4)");
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  QK_CHECK(bytes.size() >= header, FormatError, "IDX header truncated");
  Shape shape;
  int64_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    const int64_t extent = read_be32(bytes.data() + 4 + 4 * d);
    shape.push_back(extent);
    QK_CHECK(extent == 0 || count <= (int64_t{1} << 40) / extent, FormatError,
             "IDX extents overflow");
    count *= extent;
  }
  QK_CHECK(static_cast<int64_t>(bytes.size() - header) == count, FormatError, "IDX shape ",
           shape_to_string(shape), " needs ", count, " data bytes, the file has ",
           bytes.size() - header);
  Tensor t = Tensor::empty(shape, DType::kUInt8);
  if (count > 0) std::memcpy(t.bytes(), bytes.data() + header, static_cast<size_t>(count));
  return t;
}

Tensor read_idx(const std::filesystem::path& path, int64_t max_bytes) {
  const bool gz = path.extension() == ".gz";
  const std::vector<uint8_t> bytes =
      gz ? gunzip(path, max_bytes) : detail::read_file_bytes(path, max_bytes);
  try {
    return parse_idx(bytes);
  } catch (const FormatError& e) {
    throw FormatError(path.string() + ": " + e.what());
  }
}

}  // namespace quantkit

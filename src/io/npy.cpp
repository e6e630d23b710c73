#include "quantkit/io/npy.h"

#include "read_file.h"

#include <cstring>
#include <string>
#include <vector>

namespace quantkit {
namespace {

// The value of `key` in the header dict: the text after "'key':" up to the next top-level ','
// or '}' (a shape tuple keeps its commas).
std::string dict_value(const std::string& header, const std::string& key) {
  const size_t k = header.find("'" + key + "'");
  QK_CHECK(k != std::string::npos, FormatError, "npy header has no '", key, "': ", header);
  size_t p = header.find(':', k);
  QK_CHECK(p != std::string::npos, FormatError, "npy header is malformed: ", header);
  ++p;
  int depth = 0;
  size_t e = p;
  for (; e < header.size(); ++e) {
    const char c = header[e];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  std::string v = header.substr(p, e - p);
  const size_t first = v.find_first_not_of(" ");
  const size_t last = v.find_last_not_of(" ");
  return first == std::string::npos ? "" : v.substr(first, last - first + 1);
}

}  // namespace

Tensor parse_npy(std::span<const uint8_t> bytes) {
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  QK_CHECK(bytes.size() >= 10 && std::memcmp(bytes.data(), kMagic, 6) == 0, FormatError,
           "not a .npy file (bad magic)");
  const int major = bytes[6];
  QK_CHECK(major >= 1 && major <= 3, FormatError, "unsupported .npy version ", major);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = bytes[8] | (size_t{bytes[9]} << 8);
    offset = 10;
  } else {
    QK_CHECK(bytes.size() >= 12, FormatError, ".npy header truncated");
    header_len =
        bytes[8] | (size_t{bytes[9]} << 8) | (size_t{bytes[10]} << 16) | (size_t{bytes[11]} << 24);
    offset = 12;
  }
  QK_CHECK(header_len <= 65536 && offset + header_len <= bytes.size(), FormatError,
           ".npy header length ", header_len, " is out of range");
  const std::string header(reinterpret_cast<const char*>(bytes.data() + offset), header_len);
  const std::string descr = dict_value(header, "descr");
  const std::string order = dict_value(header, "fortran_order");
  QK_CHECK(order == "False", FormatError, ".npy in Fortran order is not supported");
  DType dtype;
  if (descr == "'<f4'") {
    dtype = DType::kFloat32;
  } else if (descr == "'<f8'") {
    dtype = DType::kFloat64;
  } else if (descr == "'<i4'") {
    dtype = DType::kInt32;
  } else if (descr == "'<i8'") {
    dtype = DType::kInt64;
  } else if (descr == "'|i1'") {
    dtype = DType::kInt8;
  } else if (descr == "'|u1'") {
    dtype = DType::kUInt8;
  } else {
    throw FormatError(".npy dtype " + descr + " is not supported (<f4 <f8 <i4 <i8 |i1 |u1)");
  }
  const std::string shape_text = dict_value(header, "shape");
  QK_CHECK(shape_text.size() >= 2 && shape_text.front() == '(' && shape_text.back() == ')',
           FormatError, ".npy shape is not a tuple: ", shape_text);
  Shape shape;
  size_t i = 1;
  while (i < shape_text.size() - 1) {
    while (i < shape_text.size() - 1 && (shape_text[i] == ' ' || shape_text[i] == ',')) ++i;
    if (i >= shape_text.size() - 1) break;
    int64_t v = 0;
    int digits = 0;
    while (i < shape_text.size() - 1 && shape_text[i] >= '0' && shape_text[i] <= '9') {
      QK_CHECK(++digits <= 15, FormatError, ".npy extent too large in ", shape_text);
      v = v * 10 + (shape_text[i++] - '0');
    }
    QK_CHECK(digits > 0, FormatError, ".npy shape is malformed: ", shape_text);
    shape.push_back(v);
    QK_CHECK(shape.size() <= 16, FormatError, ".npy has too many dimensions");
  }
  const int64_t numel = shape_numel(shape);
  const size_t data_offset = offset + header_len;
  const int64_t need = storage_bytes(dtype, numel);
  QK_CHECK(static_cast<int64_t>(bytes.size() - data_offset) == need, FormatError, ".npy shape ",
           shape_to_string(shape), " needs ", need, " data bytes, the file has ",
           bytes.size() - data_offset);
  Tensor t = Tensor::empty(shape, dtype);
  if (need > 0) std::memcpy(t.bytes(), bytes.data() + data_offset, static_cast<size_t>(need));
  return t;
}

Tensor read_npy(const std::filesystem::path& path, int64_t max_bytes) {
  const std::vector<uint8_t> bytes = detail::read_file_bytes(path, max_bytes);
  try {
    return parse_npy(bytes);
  } catch (const FormatError& e) {
    throw FormatError(path.string() + ": " + e.what());
  }
}

}  // namespace quantkit

#include "quantkit/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "mapped_file.h"

namespace quantkit {
namespace {

using nlohmann::json;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {
    {DType::kFloat64, "F64"},   {DType::kFloat32, "F32"},        {DType::kFloat16, "F16"},
    {DType::kBFloat16, "BF16"}, {DType::kFloat8E4M3, "F8_E4M3"}, {DType::kFloat8E5M2, "F8_E5M2"},
    {DType::kInt64, "I64"},     {DType::kInt32, "I32"},          {DType::kInt8, "I8"},
    {DType::kUInt8, "U8"},      {DType::kBool, "BOOL"},
};

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw FormatError(origin + ": " + what);
}

/// Rejects JSON nested deeper than `limit` before handing it to the parser, so a hostile header
/// cannot exhaust the stack.
void check_nesting(std::string_view text, const std::string& origin) {
  constexpr int kLimit = 16;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kLimit)
        fail(origin, "header JSON is nested deeper than " + std::to_string(kLimit) + " levels");
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

int64_t json_int(const json& v, const std::string& origin, const std::string& what) {
  if (!v.is_number_integer() && !v.is_number_unsigned()) fail(origin, what + " must be an integer");
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    fail(origin, what + " is too large");
  }
  const int64_t value = v.get<int64_t>();
  if (value < 0) fail(origin, what + " must not be negative, got " + std::to_string(value));
  return value;
}

TensorEntry parse_entry(const std::string& name, const json& spec, int64_t data_size,
                        const std::string& origin) {
  const std::string where = "tensor '" + name + "'";
  if (!spec.is_object()) fail(origin, where + ": entry must be a JSON object");
  if (!spec.contains("dtype") || !spec["dtype"].is_string())
    fail(origin, where + ": missing string field 'dtype'");
  if (!spec.contains("shape") || !spec["shape"].is_array())
    fail(origin, where + ": missing array field 'shape'");
  if (!spec.contains("data_offsets") || !spec["data_offsets"].is_array() ||
      spec["data_offsets"].size() != 2) {
    fail(origin, where + ": 'data_offsets' must be an array [begin, end]");
  }
  TensorEntry e;
  e.name = name;
  try {
    e.dtype = parse_safetensors_dtype(spec["dtype"].get<std::string>());
  } catch (const FormatError& err) {
    fail(origin, where + ": " + err.what());
  }
  if (spec["shape"].size() > 32)
    fail(origin, where + ": rank " + std::to_string(spec["shape"].size()) + " exceeds 32");
  for (const json& extent : spec["shape"])
    e.shape.push_back(json_int(extent, origin, where + " shape extent"));
  e.begin = json_int(spec["data_offsets"][0], origin, where + " data_offsets[0]");
  e.end = json_int(spec["data_offsets"][1], origin, where + " data_offsets[1]");
  if (e.begin > e.end || e.end > data_size) {
    fail(origin, where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                     std::to_string(e.end) + "] fall outside the data section of " +
                     std::to_string(data_size) + " bytes");
  }
  int64_t numel = 0;
  try {
    numel = shape_numel(e.shape);
  } catch (const ShapeError& err) {
    fail(origin, where + ": " + err.what());
  }
  if (numel > data_size * 8)
    fail(origin, where + ": shape " + shape_to_string(e.shape) + " is larger than the file");
  if (storage_bytes(e.dtype, numel) != e.end - e.begin) {
    fail(origin, where + ": shape " + shape_to_string(e.shape) + " of " +
                     std::string(dtype_name(e.dtype)) + " needs " +
                     std::to_string(storage_bytes(e.dtype, numel)) +
                     " bytes but data_offsets span " + std::to_string(e.end - e.begin));
  }
  return e;
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  for (const auto& d : kDTypeNames) {
    if (d.dtype == dtype) return d.name;
  }
  throw DTypeError(detail::concat("safetensors has no dtype for ", dtype_name(dtype),
                                  "; packed sub-byte tensors are stored as U8 bytes"));
}

DType parse_safetensors_dtype(const std::string& name) {
  for (const auto& d : kDTypeNames) {
    if (name == d.name) return d.dtype;
  }
  throw FormatError("unsupported safetensors dtype '" + name +
                    "' (supported: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I8, U8, BOOL)");
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  auto mapped = detail::MappedFile::open(path);
  const auto bytes = mapped->bytes();
  return parse(std::move(mapped), bytes, path.string());
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const void> owner,
                                       std::span<const uint8_t> bytes, std::string origin) {
  SafetensorsFile file;
  file.origin_ = std::move(origin);
  file.owner_ = std::move(owner);
  const auto size = static_cast<int64_t>(bytes.size());
  if (size < 8)
    fail(file.origin_,
         "file has " + std::to_string(size) + " bytes, fewer than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[static_cast<size_t>(i)];
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes) ||
      static_cast<int64_t>(header_len) > size - 8) {
    fail(file.origin_, "header length " + std::to_string(header_len) + " exceeds the file (" +
                           std::to_string(size) + " bytes) or the " +
                           std::to_string(kMaxHeaderBytes) +
                           "-byte limit: truncated or not safetensors");
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
  check_nesting(text, file.origin_);
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& err) {
    fail(file.origin_, std::string("header is not valid JSON: ") + err.what());
  }
  if (!header.is_object()) fail(file.origin_, "header must be a JSON object");
  const int64_t data_size = size - 8 - static_cast<int64_t>(header_len);
  file.data_ = bytes.subspan(8 + header_len);
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(file.origin_, "__metadata__ must be an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) fail(file.origin_, "__metadata__['" + mk + "'] must be a string");
        file.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (key.empty()) fail(file.origin_, "a tensor has an empty name");
    file.entries_.push_back(parse_entry(key, value, data_size, file.origin_));
  }
  std::sort(file.entries_.begin(), file.entries_.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  for (size_t i = 0; i < file.entries_.size(); ++i) {
    if (i > 0 && file.entries_[i].begin < file.entries_[i - 1].end) {
      fail(file.origin_, "tensors '" + file.entries_[i - 1].name + "' and '" +
                             file.entries_[i].name + "' overlap in the data section");
    }
    file.index_[file.entries_[i].name] = i;
  }
  return file;
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorEntry* e = find(name);
  QK_CHECK(e != nullptr, Error, origin_, ": no tensor named '", name, "'");
  const auto span =
      data_.subspan(static_cast<size_t>(e->begin), static_cast<size_t>(e->end - e->begin));
  const Tensor view = Tensor::view(owner_, span, e->shape, e->dtype);
  // Typed access needs natural alignment; a file that places a tensor at an odd offset gets an
  // owned, aligned copy of that tensor instead of a view (files written by quantkit or by the
  // safetensors library are aligned, so this is rare).
  const auto element_bytes = static_cast<uintptr_t>(std::max(1, dtype_bits(e->dtype) / 8));
  if (reinterpret_cast<uintptr_t>(span.data()) % element_bytes != 0) return view.clone();
  return view;
}

void SafetensorsWriter::add(const std::string& name, const Tensor& tensor) {
  QK_CHECK(!name.empty() && name != "__metadata__", ValueError,
           "SafetensorsWriter: invalid tensor name '", name, "'");
  QK_CHECK(tensor.defined(), ValueError, "SafetensorsWriter: tensor '", name, "' is undefined");
  for (const auto& [existing, t] : tensors_) {
    QK_CHECK(existing != name, ValueError, "SafetensorsWriter: tensor '", name, "' added twice");
  }
  tensors_.emplace_back(name, tensor);
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  json header = json::object();
  int64_t offset = 0;
  // Largest elements first (as the safetensors library does): with an 8-byte-aligned data
  // section every tensor then starts naturally aligned, without gaps between tensors.
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& entry : tensors_) order.push_back(&entry);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_bits(a->second.dtype()) > dtype_bits(b->second.dtype());
  });
  for (const auto* entry : order) {
    const auto& [name, t] = *entry;
    Shape shape = t.shape();
    std::string dtype;
    if (is_sub_byte(t.dtype())) {
      shape = {t.nbytes()};
      dtype = "U8";
    } else {
      dtype = safetensors_dtype_name(t.dtype());
    }
    header[name] = {
        {"dtype", dtype}, {"shape", shape}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    QK_CHECK(out.good(), IoError, "cannot create '", tmp.string(), "'");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i)
      len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto* entry : order) {
      const Tensor& t = entry->second;
      out.write(reinterpret_cast<const char*>(t.bytes()), static_cast<std::streamsize>(t.nbytes()));
    }
    out.flush();
    QK_CHECK(out.good(), IoError, "writing '", tmp.string(), "' failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  QK_CHECK(!ec, IoError, "cannot move '", tmp.string(), "' to '", path.string(),
           "': ", ec.message());
}

}  // namespace quantkit

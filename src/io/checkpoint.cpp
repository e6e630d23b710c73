#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "quantkit/core/float_convert.h"
#include "quantkit/io/safetensors.h"

namespace quantkit {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kQTensorKeyPrefix = "quantkit.qtensor.";

std::vector<std::string> shard_files(const fs::path& index_path) {
  std::ifstream in(index_path);
  QK_CHECK(in.good(), IoError, "cannot read '", index_path.string(), "'");
  std::stringstream text;
  text << in.rdbuf();
  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::exception& err) {
    throw FormatError(detail::concat(index_path.string(), ": not valid JSON: ", err.what()));
  }
  QK_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
           FormatError, index_path.string(), ": expected an object with a 'weight_map' object");
  std::vector<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) {
    QK_CHECK(file.is_string(), FormatError, index_path.string(), ": weight_map['", name,
             "'] must be a file name");
    const std::string f = file.get<std::string>();
    QK_CHECK(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..", FormatError,
             index_path.string(), ": shard name '", f,
             "' must be a plain file name in the same directory");
    if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
  }
  return files;
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path& path) {
  Checkpoint ckpt;
  std::vector<fs::path> paths;
  if (fs::is_directory(path)) {
    const fs::path index = path / "model.safetensors.index.json";
    if (fs::exists(index)) {
      for (const std::string& f : shard_files(index)) paths.push_back(path / f);
    } else {
      QK_CHECK(fs::exists(path / "model.safetensors"), IoError, "'", path.string(),
               "' holds neither model.safetensors nor model.safetensors.index.json");
      paths.push_back(path / "model.safetensors");
    }
  } else {
    paths.push_back(path);
  }
  for (const fs::path& p : paths) {
    ckpt.files_.push_back(SafetensorsFile::open(p));
    const SafetensorsFile& file = ckpt.files_.back();
    for (const TensorEntry& e : file.entries()) {
      const bool fresh = ckpt.file_of_name_.emplace(e.name, ckpt.files_.size() - 1).second;
      QK_CHECK(fresh, FormatError, "tensor '", e.name, "' appears in more than one shard (",
               p.string(), ")");
    }
    for (const auto& [k, v] : file.metadata()) {
      ckpt.metadata_[k] = v;
      if (k.rfind(kQTensorKeyPrefix, 0) == 0)
        ckpt.qtensor_meta_[k.substr(std::string(kQTensorKeyPrefix).size())] = v;
    }
  }
  return ckpt;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : file_of_name_) {
    bool part_of_qtensor = false;
    for (const char* suffix : {".qdata", ".scale", ".zero_point"}) {
      const std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
          qtensor_meta_.count(name.substr(0, name.size() - s.size()))) {
        part_of_qtensor = true;
      }
    }
    if (!part_of_qtensor) out.push_back(name);
  }
  for (const auto& [name, meta] : qtensor_meta_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

bool Checkpoint::is_quantized(const std::string& name) const {
  return qtensor_meta_.count(name) > 0;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& stored_name) const {
  const auto it = file_of_name_.find(stored_name);
  QK_CHECK(it != file_of_name_.end(), Error, "checkpoint has no tensor named '", stored_name, "'");
  return files_[it->second];
}

Tensor Checkpoint::tensor(const std::string& name) const {
  QK_CHECK(!is_quantized(name), DTypeError, "'", name,
           "' is a quantized tensor; load it with qtensor()");
  return file_of(name).tensor(name);
}

QTensor Checkpoint::qtensor(const std::string& name) const {
  const auto it = qtensor_meta_.find(name);
  QK_CHECK(it != qtensor_meta_.end(), Error, "checkpoint has no quantized tensor named '", name,
           "'");
  json meta;
  try {
    meta = json::parse(it->second);
    QScheme scheme;
    scheme.dtype = parse_dtype(meta.at("dtype").get<std::string>());
    const Shape shape = meta.at("shape").get<Shape>();
    scheme.block_size = meta.at("block_size").get<Shape>();
    scheme.quant_min = meta.at("quant_min").get<int64_t>();
    scheme.quant_max = meta.at("quant_max").get<int64_t>();
    scheme.zero_point_domain =
        parse_zero_point_domain(meta.at("zero_point_domain").get<std::string>());
    scheme.mapping = parse_mapping_type(meta.value("mapping", "asymmetric"));
    Tensor stored = file_of(name + ".qdata").tensor(name + ".qdata");
    const int64_t numel = shape_numel(shape);
    QK_CHECK(stored.nbytes() == storage_bytes(scheme.dtype, numel), FormatError, "'", name,
             ".qdata' has ", stored.nbytes(), " bytes but ", dtype_name(scheme.dtype),
             shape_to_string(shape), " needs ", storage_bytes(scheme.dtype, numel));
    QK_CHECK(is_sub_byte(scheme.dtype) || stored.dtype() == scheme.dtype, FormatError, "'", name,
             ".qdata' has dtype ", dtype_name(stored.dtype()), " but the metadata says ",
             dtype_name(scheme.dtype));
    const auto bytes =
        std::span<const uint8_t>(stored.bytes(), static_cast<size_t>(stored.nbytes()));
    // The logical view keeps the stored tensor (and through it the mapping) alive.
    Tensor data = Tensor::view(std::make_shared<Tensor>(stored), bytes, shape, scheme.dtype);
    Tensor scale = file_of(name + ".scale").tensor(name + ".scale");
    if (scale.dtype() == DType::kFloat16) scale = scale.to(DType::kFloat32);  // exact
    Tensor zero_point;
    if (scheme.zero_point_domain != ZeroPointDomain::kNone)
      zero_point = file_of(name + ".zero_point").tensor(name + ".zero_point");
    return QTensor(std::move(data), std::move(scale), std::move(zero_point), std::move(scheme));
  } catch (const json::exception& err) {
    throw FormatError(
        detail::concat("quantized tensor '", name, "': metadata is invalid: ", err.what()));
  } catch (const FormatError&) {
    throw;
  } catch (const Error& err) {
    throw FormatError(
        detail::concat("quantized tensor '", name, "' is inconsistent: ", err.what()));
  }
}

std::vector<TensorEntry> Checkpoint::raw_entries() const {
  std::vector<TensorEntry> out;
  for (const SafetensorsFile& f : files_)
    out.insert(out.end(), f.entries().begin(), f.entries().end());
  return out;
}

int64_t Checkpoint::data_bytes() const {
  int64_t total = 0;
  for (const SafetensorsFile& f : files_) {
    for (const TensorEntry& e : f.entries()) total += e.end - e.begin;
  }
  return total;
}

namespace {

/// Whether every value of a float32 tensor is exactly a float16 (scales chosen with
/// AffineSpec::scale_dtype float16): such scales are written as F16, half the bytes, and read
/// back bit for bit.
bool holds_float16_values(const Tensor& t) {
  if (t.dtype() != DType::kFloat32) return false;
  const float* v = t.data<float>();
  return std::all_of(v, v + t.numel(), [](float x) {
    return std::isfinite(x) && f16_bits_to_float(float_to_f16_bits(x)) == x;
  });
}

}  // namespace

void SafetensorsWriter::add(const std::string& name, const QTensor& q) {
  QK_CHECK(q.defined(), ValueError, "SafetensorsWriter: quantized tensor '", name,
           "' is undefined");
  const QScheme& s = q.scheme();
  json meta = {{"dtype", std::string(dtype_name(s.dtype))},
               {"shape", q.shape()},
               {"block_size", s.block_size},
               {"quant_min", s.quant_min},
               {"quant_max", s.quant_max},
               {"zero_point_domain", zero_point_domain_name(s.zero_point_domain)},
               {"mapping", mapping_type_name(s.mapping)}};
  add(name + ".qdata", q.data());
  add(name + ".scale", holds_float16_values(q.scale()) ? q.scale().to(DType::kFloat16) : q.scale());
  if (q.zero_point().defined()) add(name + ".zero_point", q.zero_point());
  set_metadata(kQTensorKeyPrefix + name, meta.dump());
}

}  // namespace quantkit

// Helpers for the PyTorch golden vectors in $QUANTKIT_GOLDEN_DIR (default ../shared/golden).
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "quantkit/core/tensor.h"

namespace quantkit::testing {

using nlohmann::json;

inline std::filesystem::path golden_dir() {
  const char* env = std::getenv("QUANTKIT_GOLDEN_DIR");
  return env != nullptr && *env != '\0' ? std::filesystem::path(env)
                                        : std::filesystem::path(QUANTKIT_DEFAULT_GOLDEN_DIR);
}

/// Loads one golden file; fails the test (never skips) when it is missing or malformed.
inline json load_golden(const std::string& file) {
  const auto path = golden_dir() / file;
  std::ifstream in(path);
  if (!in.good()) {
    ADD_FAILURE() << "golden file missing: " << path << " (set QUANTKIT_GOLDEN_DIR)";
    return json();
  }
  return json::parse(in);
}

inline double json_number(const json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "nan") return std::nan("");
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    throw std::runtime_error("bad number string " + s);
  }
  return v.get<double>();
}

/// Golden tensor object -> Tensor of the same dtype (float32, float64, int64, int32, int8, uint8,
/// bool).
inline Tensor golden_tensor(const json& t) {
  const Shape shape = t.at("shape").get<Shape>();
  const std::string dtype = t.at("dtype").get<std::string>();
  const json& data = t.at("data");
  const DType d = dtype == "float32"   ? DType::kFloat32
                  : dtype == "float64" ? DType::kFloat64
                  : dtype == "int64"   ? DType::kInt64
                  : dtype == "int32"   ? DType::kInt32
                  : dtype == "int8"    ? DType::kInt8
                  : dtype == "uint8"   ? DType::kUInt8
                                       : DType::kBool;
  Tensor out = Tensor::empty(shape, d);
  for (size_t i = 0; i < data.size(); ++i) {
    switch (d) {
      case DType::kFloat32:
        out.data<float>()[i] = static_cast<float>(json_number(data[i]));
        break;
      case DType::kFloat64:
        out.data<double>()[i] = json_number(data[i]);
        break;
      case DType::kInt64:
        out.data<int64_t>()[i] = data[i].get<int64_t>();
        break;
      case DType::kInt32:
        out.data<int32_t>()[i] = data[i].get<int32_t>();
        break;
      case DType::kInt8:
        out.data<int8_t>()[i] = data[i].get<int8_t>();
        break;
      default:
        out.bytes()[i] = data[i].get<uint8_t>();
        break;
    }
  }
  return out;
}

/// Element i of an integer tensor as int64.
inline int64_t int_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kInt64:
      return t.data<int64_t>()[i];
    case DType::kInt32:
      return t.data<int32_t>()[i];
    case DType::kInt8:
      return t.data<int8_t>()[i];
    default:
      return t.bytes()[i];
  }
}

/// Bit-exact float comparison (NaN equals NaN; -0 differs from +0).
inline bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) ||
         std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

}  // namespace quantkit::testing

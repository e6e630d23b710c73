#include "quantkit/workflows/quantize_checkpoint.h"

#include <fnmatch.h>
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace quantkit {

AffineSpec CheckpointQuantOptions::spec() const {
  QK_CHECK(group_size >= 0, ValueError, "group size must be >= 0 (0 = per channel), got ",
           group_size);
  const Granularity granularity =
      group_size > 0 ? Granularity::per_group(group_size) : Granularity::per_axis(0);
  AffineSpec spec = AffineSpec::for_dtype(weights, granularity);
  if (!is_float8(weights)) {
    const bool is_signed = dtype_info(weights).is_signed;
    if (symmetric) {
      QK_CHECK(is_signed, ValueError, "symmetric quantization needs a signed dtype, got ",
               dtype_name(weights), "; use --asymmetric or a signed type");
      spec.mapping = MappingType::kSymmetric;
      spec.zero_point_domain = ZeroPointDomain::kNone;
    } else {
      spec.mapping = MappingType::kAsymmetric;
      spec.zero_point_domain = ZeroPointDomain::kInt;
    }
  } else {
    QK_CHECK(symmetric, ValueError, "float8 weights are symmetric (scale only); drop --asymmetric");
  }
  spec.validate();
  return spec;
}

std::string CheckpointQuantOptions::to_json() const {
  return nlohmann::json{{"method", "weight_only"},
                        {"weights", std::string(dtype_name(weights))},
                        {"group_size", group_size},
                        {"symmetric", symmetric},
                        {"exclude", exclude}}
      .dump();
}

bool name_matches(const std::string& name, const std::string& pattern) {
  if (pattern.find_first_of("*?[") == std::string::npos)
    return name.find(pattern) != std::string::npos;
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

std::vector<TensorReport> quantize_checkpoint(
    const Checkpoint& checkpoint, const CheckpointQuantOptions& options, SafetensorsWriter& writer,
    const std::function<void(size_t, size_t, const std::string&)>& progress) {
  const AffineSpec spec = options.spec();
  const std::vector<std::string> names = checkpoint.names();
  std::vector<TensorReport> reports;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    if (progress) progress(i, names.size(), name);
    TensorReport r;
    r.name = name;
    r.sqnr_db = std::nan("");
    if (checkpoint.is_quantized(name)) {
      const QTensor q = checkpoint.qtensor(name);
      r.shape = q.shape();
      r.scheme = "kept (already " + q.scheme().describe(q.shape()) + ")";
      r.bytes_before = r.bytes_after = q.nbytes();
      writer.add(name, q);
      reports.push_back(r);
      continue;
    }
    const Tensor t = checkpoint.tensor(name);
    r.shape = t.shape();
    r.bytes_before = r.bytes_after = t.nbytes();
    const bool excluded =
        std::any_of(options.exclude.begin(), options.exclude.end(),
                    [&](const std::string& pattern) { return name_matches(name, pattern); });
    if (!is_floating(t.dtype())) {
      r.scheme = "kept (" + std::string(dtype_name(t.dtype())) + ")";
    } else if (t.dim() != 2) {
      r.scheme = "kept (" + std::to_string(t.dim()) + "-D)";
    } else if (excluded) {
      r.scheme = "kept (excluded)";
    } else if (t.numel() == 0) {
      r.scheme = "kept (empty)";
    } else {
      const Tensor w = t.to(DType::kFloat32);
      const QTensor q = quantize(w, spec);
      r.scheme = q.scheme().describe(q.shape());
      r.bytes_after = q.nbytes();
      r.sqnr_db = sqnr_db(w, q.dequantize());
      r.quantized = true;
      writer.add(name, q);
      reports.push_back(r);
      continue;
    }
    writer.add(name, t);
    reports.push_back(r);
  }
  if (progress) progress(names.size(), names.size(), "");
  writer.set_metadata("quantkit.format_version", "1");
  writer.set_metadata("quantkit.config", options.to_json());
  return reports;
}

}  // namespace quantkit

// Weight-only post-training quantization of a whole checkpoint: every floating-point matrix is
// quantized with one spec, everything else (1-D tensors, integer tensors, excluded names) is
// kept as it is.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "quantkit/io/safetensors.h"

namespace quantkit {

struct CheckpointQuantOptions {
  DType weights = DType::kInt8;  // int8, int4, int2, float8_e4m3fn, float8_e5m2 (uint variants too)
  int64_t group_size = 0;        // 0: one scale per output channel (row); else groups along the row
  bool symmetric = true;         // false: asymmetric with an integer zero point
  std::vector<std::string>
      exclude;  // see name_matches(); a tensor whose name matches one stays float

  /// The spec applied to a matrix. Throws when the options do not make a valid spec.
  AffineSpec spec() const;
  /// JSON description stored in the output's metadata ("quantkit.config").
  std::string to_json() const;
};

/// What happened to one tensor.
struct TensorReport {
  std::string name;
  Shape shape;
  std::string scheme;  // "int4 sym g32", or "kept (1-D)", "kept (excluded)", ...
  int64_t bytes_before = 0;
  int64_t bytes_after = 0;
  double sqnr_db = 0.0;  // NaN when the tensor was kept
  bool quantized = false;
};

/// True when `name` matches `pattern`: a glob (`*`, `?`, `[...]`, as fnmatch) over the whole name,
/// or, for a pattern without wildcards, any substring ("lm_head", "embeddings").
bool name_matches(const std::string& name, const std::string& pattern);

/// Quantizes `checkpoint` into `writer` (tensors + metadata) and returns one report per tensor,
/// in name order. `progress(done, total, name)` is called before each tensor.
std::vector<TensorReport> quantize_checkpoint(
    const Checkpoint& checkpoint, const CheckpointQuantOptions& options, SafetensorsWriter& writer,
    const std::function<void(size_t, size_t, const std::string&)>& progress = nullptr);

}  // namespace quantkit

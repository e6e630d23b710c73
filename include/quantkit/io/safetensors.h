// safetensors: reading (memory-mapped, every size validated before use), writing, sharded
// checkpoints, and quantkit's convention for storing QTensors.
//
// File layout: u64 little-endian header length N, N bytes of JSON header, then the data section.
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into
// the data section) plus an optional "__metadata__" string->string map.
//
// A QTensor named W is stored as up to three tensors and one metadata entry:
//   W.qdata       the codes: I8 / U8 / I32 / F8_E4M3 / F8_E5M2 with the logical shape, or, for
//                 packed sub-byte types, U8 [bytes] in the packing order of dtype.h
//   W.scale       F32 or F64, one entry per block (shape = block grid)
//   W.zero_point  I32 (integer zero points) or F32 (float zero points); absent when none
//   __metadata__["quantkit.qtensor.W"] = JSON {"dtype", "shape", "block_size", "quant_min",
//                 "quant_max", "zero_point_domain", "mapping"}
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "quantkit/quant/qtensor.h"

namespace quantkit {

/// One tensor's header entry. Offsets are relative to the start of the data section.
struct TensorEntry {
  std::string name;
  DType dtype;
  Shape shape;
  int64_t begin = 0;
  int64_t end = 0;
};

/// A parsed safetensors file whose tensors are views on the (mapped or given) bytes.
class SafetensorsFile {
 public:
  /// Largest header accepted (the format's own reference implementation uses the same bound).
  static constexpr int64_t kMaxHeaderBytes = 100 << 20;

  /// Memory-maps and validates `path`. Throws IoError (cannot open/map) or FormatError (the
  /// message says what is inconsistent: header length, JSON, dtype, shape, offsets, overlaps).
  static SafetensorsFile open(const std::filesystem::path& path);
  /// Validates bytes already in memory; `owner` keeps them alive for the returned views.
  static SafetensorsFile parse(std::shared_ptr<const void> owner, std::span<const uint8_t> bytes,
                               std::string origin);

  const std::string& origin() const { return origin_; }
  /// Entries in data-offset order.
  const std::vector<TensorEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorEntry* find(const std::string& name) const;
  /// A view on the tensor's bytes (no copy). Throws Error naming the tensor when absent.
  Tensor tensor(const std::string& name) const;

 private:
  std::shared_ptr<const void> owner_;
  std::span<const uint8_t> data_;
  std::vector<TensorEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::string origin_;
};

/// A model's tensors: one .safetensors file, a directory holding model.safetensors, or a
/// directory with model.safetensors.index.json and its shards. QTensors saved by quantkit are
/// recognised and listed under their logical names.
class Checkpoint {
 public:
  static Checkpoint open(const std::filesystem::path& path);

  /// Logical tensor names (float tensors and QTensors), sorted.
  std::vector<std::string> names() const;
  bool is_quantized(const std::string& name) const;
  /// A float/int tensor (a view on the mapped file). Throws for QTensor names.
  Tensor tensor(const std::string& name) const;
  /// A QTensor saved by SafetensorsWriter::add(name, qtensor), validated against its metadata.
  QTensor qtensor(const std::string& name) const;
  /// Metadata of all shards, merged.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// The raw entries of every shard (what is physically stored), for inspection.
  std::vector<TensorEntry> raw_entries() const;
  /// Total bytes of tensor data.
  int64_t data_bytes() const;

 private:
  const SafetensorsFile& file_of(const std::string& stored_name) const;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> file_of_name_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::string> qtensor_meta_;  // logical name -> JSON
};

/// Collects tensors and writes one safetensors file (atomically: temp file + rename).
class SafetensorsWriter {
 public:
  void add(const std::string& name, const Tensor& tensor);
  void add(const std::string& name, const QTensor& qtensor);
  void set_metadata(const std::string& key, const std::string& value);
  /// Writes the file; throws IoError when the file cannot be written.
  void write(const std::filesystem::path& path) const;

 private:
  std::vector<std::pair<std::string, Tensor>> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// safetensors dtype name ("F32", "BF16", "F8_E4M3", ...) of a dtype, and back. Throws
/// FormatError for names quantkit does not load (with the list it does).
std::string safetensors_dtype_name(DType dtype);
DType parse_safetensors_dtype(const std::string& name);

}  // namespace quantkit

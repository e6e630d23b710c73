// Read-only view of a whole file through a private memory mapping. Private to io/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace quantkit::detail {

class MappedFile {
 public:
  /// Maps `path` copy-on-write (writes through views never reach the file). Throws IoError.
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile(uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t* data_;
  size_t size_;
};

}  // namespace quantkit::detail

#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "quantkit/core/random.h"
#include "quantkit/core/tensor.h"
#include "quantkit/kernels/isa.h"

namespace quantkit::testing {

inline Tensor random_tensor(const Shape& shape, uint32_t seed, float stddev = 1.0f) {
  return random_normal(shape, seed, stddev);
}

/// Restores the kernel level a test changed with set_active_isa.
struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { set_active_isa(saved); }
};

inline std::filesystem::path shared_dir() {
  const char* env = std::getenv("QUANTKIT_SHARED_DIR");
  return env != nullptr && *env != '\0' ? std::filesystem::path(env)
                                        : std::filesystem::path(QUANTKIT_DEFAULT_SHARED_DIR);
}

inline std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("quantkit_test_" + std::to_string(::getpid()) + "_" + name);
}

/// One vector of integers per non-empty line of a text file (reference token ids). Fails the
/// caller's expectations by returning nothing when the file is missing.
inline std::vector<std::vector<int64_t>> read_int_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::vector<int64_t>> lines;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::vector<int64_t> ids;
    int64_t id;
    while (s >> id) ids.push_back(id);
    if (!ids.empty()) lines.push_back(ids);
  }
  return lines;
}

}  // namespace quantkit::testing

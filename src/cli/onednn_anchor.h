// oneDNN's int8 matmul as a speed anchor for `quantkit bench kernels`: u8 activations times s8
// weights prepacked into the primitive's preferred layout, f32 output with per-channel output
// scales (what PyTorch's quantized Linear runs on x86 through oneDNN). Built only when oneDNN is
// found (QUANTKIT_HAVE_ONEDNN).
#pragma once

#include <cstdint>
#include <memory>

namespace quantkit::cli {

class OneDnnU8S8Matmul {
 public:
  /// y [m, n] = x [m, k] (uint8) . w^T, w [n, k] int8, for a fixed shape. Throws Error when
  /// oneDNN rejects it.
  OneDnnU8S8Matmul(int64_t m, int64_t k, int64_t n);
  ~OneDnnU8S8Matmul();
  OneDnnU8S8Matmul(const OneDnnU8S8Matmul&) = delete;
  OneDnnU8S8Matmul& operator=(const OneDnnU8S8Matmul&) = delete;

  /// Prepacks another copy of w [n, k] (row-major int8); returns its index for run().
  int64_t add_weights(const int8_t* w);
  /// One matmul with prepacked copy `weights`, blocking until done.
  void run(const uint8_t* x, int64_t weights, float* y);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace quantkit::cli

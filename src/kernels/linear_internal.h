// Pieces shared by the weight-only and the dynamic int8 linear paths. Private to the library.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "gemv.h"
#include "quantkit/kernels/linear.h"

namespace quantkit {

// Above this many activation rows, dequantizing tiles of W and calling sgemm beats the GEMV on
// float32 activations (the int16 GEMV holds out longer: gemm_min_rows in linear.cpp).
constexpr int64_t kGemmMinRows = 64;

/// The kernels' view of `p` writing y [m, N] (all rows; run_row_slices narrows it).
kernels::GemvWeights gemv_weights(const PackedLinearWeight& p, float* y);

/// Calls kernel(args) with args.w narrowed to slices of 16 rows of W on `threads` threads; 16
/// rows keep each thread's writes to y on separate cache lines. Threads take 4 slices at a time
/// as they finish: on this shared machine one core often runs slower for a while, and with a
/// static split the other waited at every barrier (8-layer decode: 12 % -> 8 % of samples
/// spinning in libgomp, 42 -> 46 tokens/s; W4A16 g32 GEMV 15-17 -> 22-24 GB/s, interleaved runs).
template <class Args, class Kernel>
void run_row_slices(Args args, Kernel kernel, int threads) {
  const int64_t n = args.w.n_end, slices = (n + 15) / 16;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4) firstprivate(args)
  for (int64_t s = 0; s < slices; ++s) {
    args.w.n_begin = s * 16;
    args.w.n_end = std::min(n, s * 16 + 16);
    kernel(args);
  }
}

/// Throws ShapeError unless bias is null or float32 [out_features].
void check_bias(const Tensor* bias, const PackedLinearWeight& p);
/// y[r, :] += bias for r < rows (no-op for a null bias).
void add_bias(const Tensor* bias, int64_t rows, Tensor& y);

}  // namespace quantkit

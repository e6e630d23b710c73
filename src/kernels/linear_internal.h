// Pieces shared by the weight-only and the dynamic int8 linear paths. Private to the library.
#pragma once

#include <cstdint>

#include "quantkit/kernels/linear.h"

namespace quantkit {

// Above this many activation rows, dequantizing tiles of W and calling sgemm beats the GEMV.
constexpr int64_t kGemmMinRows = 64;

/// Throws ShapeError unless bias is null or float32 [out_features].
void check_bias(const Tensor* bias, const PackedLinearWeight& p);
/// y[r, :] += bias for r < rows (no-op for a null bias).
void add_bias(const Tensor* bias, int64_t rows, Tensor& y);

}  // namespace quantkit

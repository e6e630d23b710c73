// Argument checks shared by the calibrated rounding methods (GPTQ, AWQ).
#pragma once

#include <vector>

#include "quantkit/quant/affine.h"

namespace quantkit {

/// weight: float32 [N, K]; spec: an 8-bit-or-narrower integer dtype; hessian: K x K. Throws
/// ShapeError / DTypeError prefixed with `who`.
inline void check_rounding_args(const char* who, const Tensor& weight,
                                const std::vector<double>& hessian, const AffineSpec& spec) {
  QK_CHECK(weight.defined() && weight.dtype() == DType::kFloat32 && weight.dim() == 2, ShapeError,
           who, ": weight must be a float32 [out_features, in_features] tensor, got ",
           weight.defined() ? weight.summary() : "undefined");
  QK_CHECK(is_quantized_int(spec.dtype) && spec.dtype != DType::kInt32, DTypeError, who,
           ": the weights round to an integer grid; ", dtype_name(spec.dtype),
           " is not an 8-bit-or-narrower integer dtype");
  const int64_t k = weight.size(1);
  QK_CHECK(static_cast<int64_t>(hessian.size()) == k * k, ShapeError, who, ": Hessian has ",
           hessian.size(), " entries, the weight needs ", k, " x ", k);
}

}  // namespace quantkit

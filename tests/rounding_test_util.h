// Helpers shared by the tests of the calibrated rounding methods (GPTQ, AWQ).
#pragma once

#include <vector>

#include "quantkit/workflows/quantize.h"

namespace quantkit::testing {

/// The weight-only spec of `dtype`, per group along K (0 = per channel).
inline AffineSpec weight_spec(DType dtype, int64_t group, bool symmetric) {
  return weight_only_spec({.weights = dtype,
                           .group_size = group,
                           .symmetric = symmetric,
                           .include = {},
                           .exclude = {}});
}

/// c times the K x K identity, row-major: the Hessian of uncorrelated inputs of equal energy.
inline std::vector<double> scaled_identity(int64_t k, double c) {
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = c;
  return h;
}

}  // namespace quantkit::testing

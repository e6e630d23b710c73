// Element-wise activation kernels, one table per ISA. Private to the library.
#pragma once

#include <cstdint>

#include "quantkit/kernels/isa.h"

namespace quantkit::kernels {

struct ActivationKernels {
  /// y[i] = 0.5 x (1 + erf(x / sqrt(2))), PyTorch's exact (not tanh) GELU. The reference calls
  /// std::erf; the vector levels use Abramowitz & Stegun 7.1.26 (|erf error| <= 1.5e-7, the
  /// same approximation PyTorch's vectorised CPU GELU uses), so they agree with the reference
  /// within 2.5e-7 * |x| + 2 ulp. x and y may alias; NaN stays NaN.
  void (*gelu)(const float* x, int64_t n, float* y);
  /// y[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u, SwiGLU's gate. The reference calls
  /// std::exp; the vector levels take exp(-|g|) from vector_exp.h (about 1 ulp) and agree with
  /// it within 4 ulp of |y| (tested). y may alias g or u.
  void (*silu_mul)(const float* g, const float* u, int64_t n, float* y);
};

namespace reference {
extern const ActivationKernels kActivationTable;
}
namespace avx2 {  // the avx512 level shares it: a 16-wide erf would not speed up this loop
extern const ActivationKernels kActivationTable;
}

const ActivationKernels& activation_kernels_for(Isa isa);
/// The table of the active ISA level.
const ActivationKernels& activation_kernels();

}  // namespace quantkit::kernels

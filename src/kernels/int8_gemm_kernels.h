// Per-ISA block kernels of the integer GEMM. Private to the library.
#pragma once

#include <cstdint>

namespace quantkit::kernels {

using Int16DotBlock = void (*)(const int16_t* a, int64_t m, const int16_t* b, int64_t n, int64_t k,
                               int64_t stride, int32_t* acc, int64_t ldc);

/// out[i] = byte of clamp(round_half_even((acc[i] * multiplier + bias) / out_scale) + zero_point,
/// qmin, qmax) in double (int8 results stored as their two's-complement byte).
using RequantizeRow = void (*)(const int32_t* acc, int64_t n, double multiplier, double bias,
                               double out_scale, double zero_point, double qmin, double qmax,
                               uint8_t* out, int64_t out_stride);

/// acc[j * ldc + i] over rows i < m of a and panel rows j < n (n_padded a multiple of 8).
using PanelGemm = void (*)(const int16_t* a, int64_t m, int64_t stride, const int16_t* panel,
                           int64_t n, int64_t n_padded, int32_t* acc, int64_t ldc);

struct Int8GemmKernels {
  Int16DotBlock dot;
  RequantizeRow requantize;
  PanelGemm panel;
};

namespace reference {
extern const Int8GemmKernels kInt8GemmKernels;
}
namespace avx2 {
extern const Int8GemmKernels kInt8GemmKernels;
}
namespace avx512 {
extern const Int8GemmKernels kInt8GemmKernels;
}

/// The table of the active ISA level.
const Int8GemmKernels& int8_gemm_kernels();

}  // namespace quantkit::kernels

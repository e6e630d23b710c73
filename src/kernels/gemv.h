// Per-ISA row kernels of the weight-only linear layer. Private to the library.
#pragma once

#include <cstdint>

#include "quantkit/kernels/isa.h"

namespace quantkit::kernels {

/// One problem slice: rows [n_begin, n_end) of W against `m` activation rows.
struct GemvArgs {
  const float* x;  // [m, x_stride], K valid elements per row
  int64_t x_stride;
  int64_t m;
  int64_t k;
  const uint8_t* codes;  // packed rows, see linear.h
  int64_t row_bytes;
  const float* scales;   // [N, groups]
  const float* offsets;  // [N, groups], or nullptr when every offset is zero
  float code_bias;       // qmin: the signed code is u + code_bias, exact in float
  int64_t groups;
  int64_t group_size;         // a multiple of 32 (the chunk), or >= K
  const float* x_group_sums;  // [m, groups]: sum of x over each group
  float* y;                   // [m, y_stride]
  int64_t y_stride;
  int64_t n_begin, n_end;
};

/// Dynamic int8 activations: x ~ x_scale[r] * xq[r, :], xq zero-padded to a multiple of 32.
struct GemvInt8Args {
  const int8_t* xq;  // [m, xq_stride]
  int64_t xq_stride;
  const float* x_scale;  // [m]
  // [m, groups]: sums of xq over each group, held as floats (exact: |sum| <= 127 K < 2^24 for
  // any K below 132,000)
  const float* xq_group_sums;
  int64_t m;
  int64_t k;
  const uint8_t* codes;
  int64_t row_bytes;
  const float* scales;   // [N, groups]
  const float* offsets;  // [N, groups] or nullptr
  int32_t code_bias;     // qmin
  int64_t groups;
  int64_t group_size;  // a multiple of 32, or >= K
  float* y;
  int64_t y_stride;
  int64_t n_begin, n_end;
};

struct GemvKernels {
  void (*u8)(const GemvArgs&);
  void (*u4)(const GemvArgs&);
  void (*u2)(const GemvArgs&);
  /// out[k] = s[k / group] * (u[k] + code_bias) + off[k / group] for one packed row of 8, 4 or 2
  /// bits.
  using DequantizeRow = void (*)(const uint8_t* row, int64_t k, float code_bias, const float* s,
                                 const float* off, int64_t group_size, float* out);
  DequantizeRow dequantize_u8, dequantize_u4, dequantize_u2;
  /// Integer-dot kernels for int8 activations (signed int8 weights; 4-bit weights of any sign).
  void (*i8_w8)(const GemvInt8Args&);
  void (*i8_w4)(const GemvInt8Args&);
};

const GemvKernels& gemv_kernels_for(Isa isa);

}  // namespace quantkit::kernels

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
  const float* offsets;  // [N, groups]
  int64_t groups;
  int64_t group_size;         // a multiple of 32 (the chunk), or K
  const float* x_group_sums;  // [m, groups]: sum of x over each group
  float* y;                   // [m, y_stride]
  int64_t y_stride;
  int64_t n_begin, n_end;
};

struct GemvKernels {
  void (*u8)(const GemvArgs&);
  void (*u4)(const GemvArgs&);
  void (*u2)(const GemvArgs&);
};

const GemvKernels& gemv_kernels_for(Isa isa);

}  // namespace quantkit::kernels

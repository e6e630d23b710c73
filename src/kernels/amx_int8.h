// Dynamic int8 linear on AMX tiles (the amx ISA level). Private to the library.
#pragma once

#include <cstdint>

#include "quantkit/kernels/linear.h"

namespace quantkit::kernels {

/// Per-token int8 activations and the packed weight of linear_dynamic_int8.
struct AmxInt8Problem {
  const PackedLinearWeight* weight;  // int8, or int4/uint4; groups a multiple of 32 or per channel
  const int8_t* xq;                  // [m, xq_stride], zero-padded past K to a multiple of 32
  int64_t xq_stride;
  const float* x_scale;        // [m]
  const float* xq_group_sums;  // [m, groups]: exact sums of xq over each group
  int64_t m;
  float* y;  // [m, N]
};

/// Whether amx_linear_int8 takes this weight (int8 or 4-bit codes, groups of 32 elements or a
/// multiple of 64, or per channel).
bool amx_takes(const PackedLinearWeight& p);

/// Tokens from which amx_linear_int8 takes over from the vpdpbusd kernels (2 threads, 4096 x
/// 4096), chosen for weights streamed from DRAM (decode), where AMX gains more than it loses in
/// cache. AMX over VNNI at 4 / 6 / 8 tokens: int8 per-channel in cache 1.10 / 2.6 / 2.0x,
/// weights from DRAM 1.13 / 2.0 / 1.73x; int4 group 128 in cache 0.92 / 1.03 / 1.09x, from DRAM
/// 1.05 / 1.16 / 1.25x; int4 group 32 (paired groups) at 4 / 5 tokens in cache 0.91-0.98x,
/// from DRAM 1.12-1.27x.
constexpr int64_t kAmxMinTokens = 4;

/// y = (x_scale * xq) W^T through AMX tiles: 8-bit weights read in place, their unsigned codes
/// times the signed activations (TDPBUSD, q . x = u . x + qmin sum x); 4-bit codes widened to
/// signed bytes q (TDPBSSD). Dots per group in int32 (exact), then per group
/// s_g float(dot) + off_g sum x; up to 8 tokens, groups of 32 go in pairs through one product
/// (amx_int8.cpp). Only call it where Isa::kAmx is supported.
void amx_linear_int8(const AmxInt8Problem& problem, int threads);

}  // namespace quantkit::kernels

// Weight-only linear on int16 activations through AMX tiles (the amx ISA level). Private to the
// library.
#pragma once

#include <cstdint>
#include <vector>

#include "quantkit/kernels/linear.h"

namespace quantkit::kernels {

/// Int16 activations rounded per 32-element chunk (GemvInt16Args, plain layout).
struct AmxInt16Problem {
  const int16_t* xh;  // [m, xh_stride], zero past K up to 32 * chunks
  int64_t xh_stride;
  const float* chunk_scales;  // [m, chunks]
  int64_t chunks;
  const float* xh_group_sums;  // [m, groups]: sums of the rounded x over each group
  int64_t m;
};

/// Whether amx_linear_int16 takes this weight: integer codes (not float8) in groups of a
/// multiple of 32 elements, or per channel.
bool amx_int16_takes(const PackedLinearWeight& p);

/// Tokens from which amx_linear_int16 beats the avx512 int16 kernels (4096 x 4096, 2 threads,
/// GFLOPS, AMX with chunks in pairs up to 8 tokens against vpdpbusd). In cache, int4 g32 / per
/// channel / int8 per channel: 4 tokens 189-193 / 190 / 146-151 against 225-248 / 263-268 /
/// 185-192; 5: 218-225 / 239-245 / 177-190 against 194-202 / 237-241 / 165-166; 6: 246-267 /
/// 266-267 / 204-206 against 200-222 / 215-225 / 178-182; 8: 341-369 / 389-404 / 317-346
/// against 222-249 / 285-308 / 273-300 (unpaired AMX). Weights from DRAM, int4 g32: 4 tokens
/// 117 against 120, 5: 152 against 125, 8: 235 against 186.
constexpr int64_t amx_int16_min_tokens() {
  return 5;
}

/// y = x W^T with x the int16 activations, through the AMX-INT8 tile dot products. Each int16 is
/// split into a signed high byte and an unsigned low byte; per 32-element chunk, q . x =
/// 256 (q . high) + q . low exactly in int32 (q = u + qmin, the signed code), then chunk_scale *
/// group_scale * float(dot), plus group_offset * group sum. Only call it where Isa::kAmx is
/// supported. ys[i] [m, N_i] = x W_i^T for weights that share x (equal K and group size, 8, 4
/// or 2-bit integer codes): the activations are regrouped for the tiles once for all of them.
void amx_linear_int16(const AmxInt16Problem& problem,
                      const std::vector<const PackedLinearWeight*>& weights,
                      const std::vector<float*>& ys, int threads);

}  // namespace quantkit::kernels

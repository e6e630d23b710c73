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

/// Tokens from which amx_linear_int16 beats the avx512 int16 kernels (4096 x 4096, in cache, 2
/// threads, AMX against vpdpbusd, GFLOPS): 4 tokens 107-124 / 174-208, 6: 155 / 168, 8: 198-228
/// / 144-193, 16: 373-426 / 150-202.
constexpr int64_t amx_int16_min_tokens() {
  return 8;
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

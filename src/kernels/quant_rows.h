// Row kernels of quantize/dequantize, one table per ISA. Private to the library. Every entry
// must give bit-identical results at every ISA level (tests compare them with the reference).
#pragma once

#include <cstdint>

#include "quantkit/kernels/isa.h"

namespace quantkit::kernels {

struct QuantRowKernels {
  /// codes[i] = bits of clamp(zp + round_half_even(x[i] * inv), qmin, qmax), for ranges inside
  /// [-128, 255] (int8 codes are stored as their two's-complement byte). NaN -> qmin.
  void (*quantize_bytes)(const float* x, int64_t n, float inv, float zp, float qmin, float qmax,
                         uint8_t* codes);
  /// y[i] = s * (float)(code - zp), code read as int8 (is_signed) or uint8.
  void (*dequantize_bytes)(const uint8_t* codes, int64_t n, bool is_signed, float s, float zp,
                           float* y);
  /// out[i] = (codes[2i] & 15) | (codes[2i+1] << 4): two 4-bit codes per byte, first one low.
  void (*pack_nibbles)(const uint8_t* codes, int64_t bytes, uint8_t* out);
  /// Inverse of pack_nibbles; signed sign-extends each nibble.
  void (*unpack_nibbles)(const uint8_t* packed, int64_t bytes, bool is_signed, uint8_t* codes);
  /// Running min/max over x; *poison becomes NaN if x holds NaN or +-inf.
  void (*minmax)(const float* x, int64_t n, float* mn, float* mx, float* poison);
  /// x [k] rounded to int16 per 32-element chunk c: scales[c] = float(max|x| / 32767) and
  /// q[32 c + j] = round_half_even(x[32 c + j] * (32767 / max|x|)) computed in double (an
  /// all-zero chunk: scale 0, codes 0), sums[c] = the chunk's sum of q. q is zero-padded to
  /// whole chunks. False (outputs unspecified) when x holds NaN or Inf.
  bool (*round_row_int16)(const float* x, int64_t k, int16_t* q, float* scales, int32_t* sums);
  /// The sum of n int8 codes (exact for n < 2^24).
  int32_t (*sum_int8)(const int8_t* codes, int64_t n);
  /// One token of the dynamic int8 linear, symmetric on amax = max |x[0..k)|: codes[i] =
  /// quantize_bytes(x[i] * (127 / amax)) in [-127, 127] (all zero when amax is 0), *scale =
  /// amax / 127 (1 when amax is 0), and group_sums[g] = the sum of the codes of elements
  /// [g group_size, (g + 1) group_size) as a float (none for group_size 0). False (outputs
  /// unspecified) when x holds NaN or Inf.
  bool (*quantize_token_int8)(const float* x, int64_t k, int64_t group_size, int8_t* codes,
                              float* scale, float* group_sums);
};

const QuantRowKernels& quant_row_kernels();
const QuantRowKernels& quant_row_kernels_for(Isa isa);

}  // namespace quantkit::kernels

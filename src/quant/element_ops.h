// Per-element quantization arithmetic shared by quantize, dequantize and fake_quantize. These
// loops are the scalar specification; they are written so that the compiler can vectorise them
// (no libm calls, no data-dependent branches in the integer path).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace quantkit::detail {

/// nearbyintf in the default rounding mode (half to even) without a libm call: adding and
/// removing 2^23 (with the sign of v) makes the FPU round at the units bit. |v| >= 2^23 is
/// already an integer (or NaN/inf) and passes through.
inline float round_half_even(float v) {
  const float magic = std::copysign(8388608.0f, v);
  return std::fabs(v) < 8388608.0f ? (v + magic) - magic : v;
}

/// float -> int64 as x86's cvttss2si does it for PyTorch: truncation, NaN -> INT64_MIN,
/// +-overflow saturates (x86 gives INT64_MIN for +overflow too; that case is platform-specific).
inline int64_t to_int64_saturating(float t) {
  if (std::isnan(t)) return std::numeric_limits<int64_t>::min();
  if (t >= 9.2233720368547758e18f) return std::numeric_limits<int64_t>::max();
  if (t <= -9.2233720368547758e18f) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(t);
}

/// q = clamp(zp + round(x * inv), qmin, qmax) for ranges that a float represents exactly
/// (everything narrower than int32). NaN -> qmin.
inline int32_t quantize_small_range(float x, float inv, float zp, float qmin, float qmax) {
  const float t = zp + round_half_even(x * inv);
  const float clamped = t > qmax ? qmax : (t >= qmin ? t : qmin);
  return static_cast<int32_t>(clamped);
}

/// The same rule for any int64 range, including PyTorch's float32 add of the zero point.
inline int64_t quantize_wide_range(float x, float inv, int64_t zp, int64_t qmin, int64_t qmax) {
  const float t = static_cast<float>(zp) + round_half_even(x * inv);
  const int64_t q = to_int64_saturating(t);
  return q < qmin ? qmin : (q > qmax ? qmax : q);
}

}  // namespace quantkit::detail

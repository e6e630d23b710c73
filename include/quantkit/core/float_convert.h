// Scalar float32 <-> float16 / bfloat16 / float8 conversions with round-to-nearest-even and
// PyTorch's (c10) special-value rules:
//   float16:        overflow -> +-inf, NaN -> quiet NaN (0x7E00 | sign).
//   bfloat16:       NaN -> 0x7FC0 (sign dropped, as c10 does).
//   float8_e4m3fn:  no infinities; |x| >= 480, +-inf and NaN -> NaN (0x7F | sign); max finite 448.
//   float8_e5m2:    |x| >= 65536 -> +-inf (0x7C | sign); NaN -> 0x7F | sign; max finite 57344.
// These are the reference conversions; vectorised versions in kernels/ must match them bit for bit.
#pragma once

#include <bit>
#include <cstdint>

namespace quantkit {

inline uint32_t float_bits(float x) {
  return std::bit_cast<uint32_t>(x);
}
inline float bits_float(uint32_t b) {
  return std::bit_cast<float>(b);
}

inline uint16_t float_to_f16_bits(float x) {
  const uint32_t f = float_bits(x);
  const uint32_t sign = (f >> 16) & 0x8000u;
  uint32_t a = f & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);   // NaN
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {
    // Subnormal half: adding 0.5f puts the half-subnormal unit 2^-24 at the float's last bit, so
    // the hardware add performs the round-to-nearest-even for us.
    const float sum = bits_float(a) + 0.5f;
    return static_cast<uint16_t>(sign | (float_bits(sum) - float_bits(0.5f)));
  }
  const uint32_t mantissa_odd = (a >> 13) & 1u;
  a += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu + mantissa_odd;
  return static_cast<uint16_t>(sign | (a >> 13));
}

inline float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1F) return bits_float(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {
    // Subnormal (or zero): mantissa * 2^-24 is exact in float32.
    const float magnitude = static_cast<float>(mantissa) * bits_float(0x33800000u);
    return bits_float(sign | float_bits(magnitude));
  }
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline uint16_t float_to_bf16_bits(float x) {
  const uint32_t f = float_bits(x);
  if ((f & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0u;
  const uint32_t rounding_bias = 0x7FFFu + ((f >> 16) & 1u);
  return static_cast<uint16_t>((f + rounding_bias) >> 16);
}

inline float bf16_bits_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

inline uint8_t float_to_e4m3_bits(float x) {
  const uint32_t f = float_bits(x);
  const uint8_t sign = static_cast<uint8_t>((f >> 24) & 0x80u);
  uint32_t a = f & 0x7FFFFFFFu;
  if (a >= 0x43F00000u) return sign | 0x7Fu;  // >= 480, inf, NaN
  if (a < 0x3C800000u) {
    // Below 2^-6 the result is subnormal with unit 2^-9; 16384.0f has ulp 2^-9.
    const float sum = bits_float(a) + 16384.0f;
    return sign | static_cast<uint8_t>(float_bits(sum) - float_bits(16384.0f));
  }
  const uint32_t mantissa_odd = (a >> 20) & 1u;
  a += (static_cast<uint32_t>(7 - 127) << 23) + 0x7FFFFu + mantissa_odd;
  return sign | static_cast<uint8_t>(a >> 20);
}

inline float e4m3_bits_to_float(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t exponent = (c >> 3) & 0xFu;
  const uint32_t mantissa = c & 0x7u;
  if (exponent == 0xF && mantissa == 0x7) return bits_float(sign | 0x7FC00000u);
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0.001953125f;  // 2^-9
    return bits_float(sign | float_bits(magnitude));
  }
  return bits_float(sign | ((exponent + 120) << 23) | (mantissa << 20));
}

inline uint8_t float_to_e5m2_bits(float x) {
  const uint32_t f = float_bits(x);
  const uint8_t sign = static_cast<uint8_t>((f >> 24) & 0x80u);
  uint32_t a = f & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7Fu;   // NaN
  if (a >= 0x47800000u) return sign | 0x7Cu;  // >= 65536 and inf
  if (a < 0x38800000u) {
    // Below 2^-14 the result is subnormal with unit 2^-16; 128.0f has ulp 2^-16.
    const float sum = bits_float(a) + 128.0f;
    return sign | static_cast<uint8_t>(float_bits(sum) - float_bits(128.0f));
  }
  const uint32_t mantissa_odd = (a >> 21) & 1u;
  a += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFFFu + mantissa_odd;
  return sign | static_cast<uint8_t>(a >> 21);
}

/// float8_e5m2 is the upper byte of a float16.
inline float e5m2_bits_to_float(uint8_t c) {
  return f16_bits_to_float(static_cast<uint16_t>(static_cast<uint16_t>(c) << 8));
}

inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kE5M2Max = 57344.0f;

}  // namespace quantkit

// Exhaustive checks of the float16 / bfloat16 / float8 conversions: every code decodes to the
// value its format defines, re-encodes to itself, and every midpoint between neighbouring codes
// rounds to the even one.
#include <gtest/gtest.h>

#include <cmath>

#include "quantkit/core/float_convert.h"
#include "quantkit/core/tensor.h"

namespace quantkit {
namespace {

TEST(Float16, EveryCodeMatchesTheCompilerAndRoundTrips) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const auto h = static_cast<uint16_t>(code);
    const float f = f16_bits_to_float(h);
    const _Float16 native = std::bit_cast<_Float16>(h);
    if (std::isnan(static_cast<float>(native))) {
      EXPECT_TRUE(std::isnan(f)) << code;
      EXPECT_EQ(float_to_f16_bits(f) & 0x7C00u, 0x7C00u);
      continue;
    }
    ASSERT_EQ(float_bits(f), float_bits(static_cast<float>(native))) << code;
    ASSERT_EQ(float_to_f16_bits(f), h) << code;
  }
}

TEST(Float16, RoundingMatchesTheCompilerOnMidpointsAndNeighbours) {
  // Every float between consecutive half codes: midpoint, one float below and above it.
  for (uint32_t code = 0; code < 0x7C00; ++code) {
    const float lo = f16_bits_to_float(static_cast<uint16_t>(code));
    const float hi =
        code + 1 == 0x7C00 ? 65536.0f : f16_bits_to_float(static_cast<uint16_t>(code + 1));
    const float mid = lo + (hi - lo) / 2;
    for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
      for (float s : {v, -v}) {
        ASSERT_EQ(float_to_f16_bits(s), std::bit_cast<uint16_t>(static_cast<_Float16>(s))) << s;
      }
    }
  }
  EXPECT_EQ(float_to_f16_bits(INFINITY), 0x7C00u);
  EXPECT_EQ(float_to_f16_bits(-1e10f), 0xFC00u);
  EXPECT_EQ(float_to_f16_bits(65519.0f), 0x7BFFu);
  EXPECT_EQ(float_to_f16_bits(65520.0f), 0x7C00u);
}

TEST(BFloat16, EveryCodeRoundTripsAndMidpointsRoundToEven) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const auto b = static_cast<uint16_t>(code);
    const float f = bf16_bits_to_float(b);
    ASSERT_EQ(float_bits(f), code << 16);
    if (std::isnan(f)) {
      EXPECT_EQ(float_to_bf16_bits(f), 0x7FC0u);  // c10 canonical NaN
      continue;
    }
    ASSERT_EQ(float_to_bf16_bits(f), b) << code;
    // The float halfway to the next code rounds to whichever of the two is even.
    const uint32_t mid_bits = (code << 16) | 0x8000u;
    const float mid = bits_float(mid_bits);
    if (std::isnan(mid) || std::isinf(mid)) continue;
    const uint16_t want = (code & 1u) ? static_cast<uint16_t>(code + 1) : b;
    ASSERT_EQ(float_to_bf16_bits(mid), want) << code;
    ASSERT_EQ(float_to_bf16_bits(bits_float(mid_bits + 1)), static_cast<uint16_t>(code + 1))
        << code;
    ASSERT_EQ(float_to_bf16_bits(bits_float(mid_bits - 1)), b) << code;
  }
}

/// The value of an fp8 code computed from first principles.
double fp8_value(uint8_t code, int exponent_bits, int bias, bool has_inf) {
  const int mantissa_bits = 7 - exponent_bits;
  const int sign = code >> 7 ? -1 : 1;
  const int e = (code >> mantissa_bits) & ((1 << exponent_bits) - 1);
  const int m = code & ((1 << mantissa_bits) - 1);
  const int e_max = (1 << exponent_bits) - 1;
  if (has_inf && e == e_max) return m == 0 ? sign * INFINITY : NAN;
  if (!has_inf && e == e_max && m == (1 << mantissa_bits) - 1) return NAN;
  if (e == 0) return sign * std::ldexp(m, 1 - bias - mantissa_bits);
  return sign * std::ldexp((1 << mantissa_bits) + m, e - bias - mantissa_bits);
}

struct Fp8Format {
  const char* name;
  int exponent_bits, bias;
  bool has_inf;
  float (*decode)(uint8_t);
  uint8_t (*encode)(float);
  float max_finite;
};

class Float8 : public ::testing::TestWithParam<Fp8Format> {};

TEST_P(Float8, EveryCodeDecodesRoundTripsAndRoundsMidpointsToEven) {
  const Fp8Format fmt = GetParam();
  for (uint32_t c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    const double want = fp8_value(code, fmt.exponent_bits, fmt.bias, fmt.has_inf);
    const float got = fmt.decode(code);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << fmt.name << " code " << c;
      ASSERT_TRUE(std::isnan(fmt.decode(fmt.encode(got))));
      continue;
    }
    ASSERT_EQ(static_cast<double>(got), want) << fmt.name << " code " << c;
    if (std::isinf(want)) continue;
    if (want != 0.0 || !(c & 0x80)) {
      ASSERT_EQ(fmt.encode(got), code) << fmt.name << " code " << c;
    }
    // Midpoint to the next larger magnitude: ties to even; a float off the tie goes its way.
    const uint8_t next = static_cast<uint8_t>(code + 1);
    const float next_value = fmt.decode(next);
    if ((c & 0x7F) == 0x7F || std::isnan(next_value) || std::isinf(next_value) ||
        (next & 0x7F) == 0)
      continue;
    const float mid = got + (next_value - got) / 2;
    ASSERT_EQ(fmt.encode(mid), (c & 1) ? next : code) << fmt.name << " midpoint after code " << c;
    ASSERT_EQ(fmt.encode(std::nextafter(mid, got)), code) << fmt.name;
    ASSERT_EQ(fmt.encode(std::nextafter(mid, next_value)), next) << fmt.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Float8,
                         ::testing::Values(Fp8Format{"e4m3fn", 4, 7, false, e4m3_bits_to_float,
                                                     float_to_e4m3_bits, 448.0f},
                                           Fp8Format{"e5m2", 5, 15, true, e5m2_bits_to_float,
                                                     float_to_e5m2_bits, 57344.0f}));

TEST(Float8, SpecialValuesFollowC10) {
  // e4m3fn: no infinities; [448, 464] -> 448, above the halfway point to 480 -> NaN, inf -> NaN.
  EXPECT_EQ(e4m3_bits_to_float(float_to_e4m3_bits(448.0f)), 448.0f);
  EXPECT_EQ(e4m3_bits_to_float(float_to_e4m3_bits(464.0f)), 448.0f);
  EXPECT_TRUE(std::isnan(e4m3_bits_to_float(float_to_e4m3_bits(480.0f))));
  EXPECT_TRUE(std::isnan(e4m3_bits_to_float(float_to_e4m3_bits(INFINITY))));
  EXPECT_TRUE(std::isnan(e4m3_bits_to_float(float_to_e4m3_bits(-1e6f))));
  EXPECT_EQ(float_to_e4m3_bits(-INFINITY), 0xFFu);
  // e5m2 keeps infinities; max finite 57344.
  EXPECT_EQ(e5m2_bits_to_float(float_to_e5m2_bits(57344.0f)), 57344.0f);
  EXPECT_EQ(e5m2_bits_to_float(float_to_e5m2_bits(61439.0f)), 57344.0f);
  EXPECT_TRUE(std::isinf(e5m2_bits_to_float(float_to_e5m2_bits(65536.0f))));
  EXPECT_EQ(float_to_e5m2_bits(-INFINITY), 0xFCu);
  EXPECT_TRUE(std::isnan(e5m2_bits_to_float(float_to_e5m2_bits(NAN))));
}

TEST(TensorConversion, ToAndFromHalfTypesIsElementwise) {
  const Tensor x = Tensor::from_floats({1.0f, -2.5f, 1e-3f, 70000.0f, NAN}, {5});
  const Tensor h = x.to(DType::kFloat16);
  EXPECT_EQ(h.dtype(), DType::kFloat16);
  const Tensor back = h.to(DType::kFloat32);
  EXPECT_EQ(back.data<float>()[1], -2.5f);
  EXPECT_TRUE(std::isinf(back.data<float>()[3]));
  EXPECT_TRUE(std::isnan(back.data<float>()[4]));
  EXPECT_EQ(x.to(DType::kBFloat16).to(DType::kFloat32).data<float>()[0], 1.0f);
  EXPECT_THROW(x.to(DType::kInt4), DTypeError);
  const int64_t big = (int64_t{1} << 40) + 1;  // not representable in float32
  const Tensor ints =
      Tensor::from_values<int64_t>(std::vector<int64_t>{big, -3}, {2}, DType::kInt64);
  EXPECT_EQ(ints.to(DType::kFloat64).data<double>()[0], static_cast<double>(big));
  EXPECT_EQ(ints.to(DType::kFloat32).data<float>()[1], -3.0f);
}

}  // namespace
}  // namespace quantkit

// Every ISA level of the quantization row kernels must be bit-identical to the reference level,
// on random shapes with odd sizes, tails and partial groups.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/activation.h"
#include "kernels/gemv.h"
#include "kernels/quant_rows.h"
#include "quantkit/kernels/bandwidth.h"
#include "quantkit/kernels/blas.h"
#include "quantkit/kernels/isa.h"
#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::IsaGuard;

struct Result {
  std::vector<uint8_t> codes;
  std::vector<float> scales, dequant;
};

Result run(const Tensor& x, const AffineSpec& spec) {
  const QTensor q = quantize(x, spec);
  const Tensor y = q.dequantize();
  Result r;
  r.codes.assign(q.data().bytes(), q.data().bytes() + q.data().nbytes());
  r.scales.assign(q.scale().data<float>(), q.scale().data<float>() + q.scale().numel());
  r.dequant.assign(y.data<float>(), y.data<float>() + y.numel());
  return r;
}

TEST(Blas, OverridesOnlyTheGenericFallbackWithTheCpusLevel) {
  EXPECT_EQ(blas_core_override("Prescott", true, true), "SkylakeX");
  EXPECT_EQ(blas_core_override("PRESCOTT", true, false), "Haswell");
  EXPECT_EQ(blas_core_override("Prescott", false, false), "");
  EXPECT_EQ(blas_core_override("Zen", true, false), "");
  EXPECT_EQ(blas_core_override("SkylakeX", true, true), "");
  EXPECT_EQ(blas_core_override("", true, true), "");
  EXPECT_FALSE(blas_core_name().empty());
}

TEST(Kernels, EveryIsaMatchesTheReferenceBitForBit) {
  IsaGuard guard;
  const std::vector<Shape> shapes = {{1, 1},   {3, 7},    {5, 33},   {2, 64},
                                     {7, 129}, {4, 1000}, {1, 4097}, {3, 2, 45}};
  const std::vector<DType> dtypes = {DType::kInt8,  DType::kUInt8, DType::kInt4,
                                     DType::kUInt4, DType::kInt2,  DType::kUInt2};
  const std::vector<int64_t> groups = {0, 16, 32, 64, 128, 7};
  int compared = 0;
  for (size_t s = 0; s < shapes.size(); ++s) {
    Tensor x = testing::random_tensor(shapes[s], static_cast<uint32_t>(s + 1), 2.0f);
    // Exact ties and a few values far outside the range exercise rounding and clamping.
    x.data<float>()[0] = 0.5f;
    if (x.numel() > 3) x.data<float>()[3] = -1e6f;
    for (DType dtype : dtypes) {
      for (int64_t g : groups) {
        for (bool asym : {false, true}) {
          AffineSpec spec = AffineSpec::for_dtype(
              dtype, g ? Granularity::per_group(g) : Granularity::per_axis(0));
          if (!dtype_info(dtype).is_signed && !asym) continue;
          spec.mapping = asym ? MappingType::kAsymmetric : MappingType::kSymmetric;
          spec.zero_point_domain = asym ? ZeroPointDomain::kInt : ZeroPointDomain::kNone;
          set_active_isa(Isa::kReference);
          const Result want = run(x, spec);
          for (Isa isa : supported_isas()) {
            set_active_isa(isa);
            const Result got = run(x, spec);
            ASSERT_EQ(got.codes, want.codes)
                << isa_name(isa) << " " << spec.to_string() << shape_to_string(shapes[s]);
            ASSERT_EQ(got.scales, want.scales) << isa_name(isa) << " " << spec.to_string();
            ASSERT_EQ(0,
                      std::memcmp(got.dequant.data(), want.dequant.data(), want.dequant.size() * 4))
                << isa_name(isa) << " " << spec.to_string() << shape_to_string(shapes[s]);
            ++compared;
          }
        }
      }
    }
  }
  std::printf("compared %d (shape, dtype, group, mapping, isa) combinations; levels here:",
              compared);
  for (Isa isa : supported_isas()) std::printf(" %s", std::string(isa_name(isa)).c_str());
  std::printf("\n");
}

// The int16 activations of the weight-only GEMV: every level equals the scalar statement of
// quant_rows.h (max |x| / 32767 per chunk, half to even in double), tails zero-padded, NaN/Inf
// refused.
TEST(Kernels, RoundRowInt16MatchesItsSpecificationAtEveryLevel) {
  for (int64_t k : {1, 31, 32, 33, 64, 100, 2048, 4097}) {
    Tensor x = testing::random_tensor({k}, static_cast<uint32_t>(k), 3.0f);
    float* xs = x.data<float>();
    if (k > 40) {
      std::fill(xs + 32, xs + 64, 0.0f);  // an all-zero chunk
      xs[k - 1] = 1e-38f;                 // 32767 / amax overflows float, not double
    }
    xs[0] = 0.5f;
    const int64_t chunks = (k + 31) / 32;
    std::vector<int16_t> want(static_cast<size_t>(chunks * 32), 0);
    std::vector<float> want_scales(static_cast<size_t>(chunks));
    std::vector<int32_t> want_sums(static_cast<size_t>(chunks), 0);
    for (int64_t c = 0; c < chunks; ++c) {
      double amax = 0;
      for (int64_t i = c * 32; i < std::min(k, c * 32 + 32); ++i)
        amax = std::max(amax, std::fabs(static_cast<double>(xs[i])));
      want_scales[static_cast<size_t>(c)] = static_cast<float>(amax / 32767.0);
      for (int64_t i = c * 32; i < std::min(k, c * 32 + 32) && amax > 0; ++i) {
        const double v = std::nearbyint(static_cast<double>(xs[i]) * (32767.0 / amax));
        want[static_cast<size_t>(i)] = static_cast<int16_t>(v);
        want_sums[static_cast<size_t>(c)] += want[static_cast<size_t>(i)];
      }
    }
    for (Isa isa : supported_isas()) {
      const kernels::QuantRowKernels& kern = kernels::quant_row_kernels_for(isa);
      std::vector<int16_t> q(want.size(), 7);
      std::vector<float> scales(want_scales.size());
      std::vector<int32_t> sums(want_sums.size());
      ASSERT_TRUE(kern.round_row_int16(xs, k, q.data(), scales.data(), sums.data()));
      EXPECT_EQ(q, want) << isa_name(isa) << " k=" << k;
      EXPECT_EQ(scales, want_scales) << isa_name(isa) << " k=" << k;
      EXPECT_EQ(sums, want_sums) << isa_name(isa) << " k=" << k;
      for (float bad :
           {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        Tensor y = x.clone();
        y.data<float>()[k - 1] = bad;
        EXPECT_FALSE(kern.round_row_int16(y.data<float>(), k, q.data(), scales.data(), sums.data()))
            << isa_name(isa);
      }
    }
  }
}

// The group sums of the dynamic int8 activations: exact at every level, for runs of any length
// (the vector body and its tail) and at the extremes of the int8 range.
TEST(Kernels, SumInt8IsExactAtEveryLevel) {
  for (int64_t n : {0, 1, 31, 32, 33, 64, 127, 4096, 4099}) {
    std::vector<int8_t> codes(static_cast<size_t>(n));
    uint32_t state = static_cast<uint32_t>(n) * 2654435761u + 1;
    for (int8_t& c : codes) {
      state = state * 1664525u + 1013904223u;
      c = static_cast<int8_t>(state >> 24);
    }
    if (n > 64) std::fill(codes.begin(), codes.begin() + 64, int8_t{-128});
    int64_t want = 0;
    for (int8_t c : codes) want += c;
    for (Isa isa : supported_isas()) {
      EXPECT_EQ(kernels::quant_row_kernels_for(isa).sum_int8(codes.data(), n), want)
          << isa_name(isa) << " n=" << n;
    }
  }
}

// The per-token int8 activations of the dynamic linear: every level gives the codes, scale and
// group sums of the statement in quant_rows.h, written out here in double (amax / 127, half to
// even, exact sums), for rows with ties (x * 127 / amax on .5), tails of every length, all-zero
// rows and group sizes the AVX-512 form takes (multiples of 16) or hands to the composed one.
TEST(Kernels, QuantizeTokenInt8MatchesItsSpecificationAtEveryLevel) {
  for (int64_t k : {1, 15, 16, 17, 63, 64, 65, 100, 448, 4096, 4103}) {
    for (int64_t group :
         {int64_t{0}, int64_t{16}, int64_t{32}, int64_t{48}, int64_t{128}, k, k + 5}) {
      if (group > k && group != k + 5) continue;  // k + 5: one group past the row's end
      for (int variant = 0; variant < 3; ++variant) {
        Tensor x = testing::random_tensor({k}, static_cast<uint32_t>(k * 7 + group), 2.0f);
        float* xs = x.data<float>();
        if (variant == 1) {  // amax 127: x * inv is x itself, so the halves are ties
          xs[0] = 127.0f;
          for (int64_t i = 1; i < k; ++i) xs[i] = static_cast<float>((i % 9) - 4) + 0.5f;
        }
        if (variant == 2) std::fill(xs, xs + k, 0.0f);
        const int64_t groups = group > 0 ? (k + group - 1) / group : 0;
        double amax = 0.0;
        for (int64_t i = 0; i < k; ++i)
          amax = std::max(amax, std::fabs(static_cast<double>(xs[i])));
        const float famax = static_cast<float>(amax);
        const float inv = famax > 0.0f ? 127.0f / famax : 0.0f;
        std::vector<int8_t> want(static_cast<size_t>(k));
        std::vector<float> want_sums(static_cast<size_t>(groups), 0.0f);
        for (int64_t i = 0; i < k; ++i) {
          const double v = std::nearbyint(static_cast<double>(xs[i] * inv));
          want[static_cast<size_t>(i)] = static_cast<int8_t>(std::clamp(v, -127.0, 127.0));
          if (groups) want_sums[static_cast<size_t>(i / group)] += want[static_cast<size_t>(i)];
        }
        const float want_scale = famax > 0.0f ? famax / 127.0f : 1.0f;
        for (Isa isa : supported_isas()) {
          const kernels::QuantRowKernels& kern = kernels::quant_row_kernels_for(isa);
          std::vector<int8_t> codes(static_cast<size_t>(k), 99);
          std::vector<float> sums(static_cast<size_t>(groups), -1.0f);
          float scale = 0.0f;
          ASSERT_TRUE(kern.quantize_token_int8(xs, k, group, codes.data(), &scale, sums.data()));
          EXPECT_EQ(codes, want) << isa_name(isa) << " k=" << k << " group=" << group
                                 << " variant=" << variant;
          EXPECT_EQ(scale, want_scale) << isa_name(isa) << " k=" << k;
          EXPECT_EQ(sums, want_sums) << isa_name(isa) << " k=" << k << " group=" << group;
          for (float bad :
               {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
            std::vector<float> y(xs, xs + k);
            y[static_cast<size_t>(k - 1)] = bad;
            EXPECT_FALSE(
                kern.quantize_token_int8(y.data(), k, group, codes.data(), &scale, sums.data()))
                << isa_name(isa) << " k=" << k;
          }
        }
      }
    }
  }
}

// The split-byte activation layout of the VNNI decode kernels: every int16 the rounding can
// produce (+-32767 and all between) is 256 * high + low with the high byte signed and the low
// byte unsigned, the two halves of each 64-slot run stored high bytes first.
TEST(Kernels, SplitInt16ActivationsKeepEveryValue) {
  std::vector<int16_t> x;
  for (int v = -32767; v <= 32767; ++v) x.push_back(static_cast<int16_t>(v));
  x.resize((x.size() + 63) / 64 * 64, 0);
  std::vector<int16_t> split = x;
  kernels::split_int16_activations(split.data(), static_cast<int64_t>(split.size()));
  const auto* bytes = reinterpret_cast<const uint8_t*>(split.data());
  for (size_t s = 0; s < x.size(); ++s) {
    const size_t run = s / 64, i = s % 64;
    const int high = static_cast<int8_t>(bytes[run * 128 + i]);
    const int low = bytes[run * 128 + 64 + i];
    ASSERT_EQ(256 * high + low, x[s]) << "slot " << s;
  }
}

// SwiGLU's gate at every level against the formula in double: within 4 ulp of |y| (exp to about
// 1 ulp, then a division and two products), for gates from deep in the tail to large, with
// tails of every length and NaN carried through. Below g = -87 both levels leave the formula
// (the reference's exp(-g) overflows to a zero quotient, the vector exp clamps at exp(-87)):
// results under 1e-34, hence the absolute term.
TEST(Kernels, SiluMulIsWithinFourUlpAtEveryLevel) {
  IsaGuard guard;
  for (int64_t n : {1, 7, 8, 9, 4003}) {
    std::vector<float> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      g[static_cast<size_t>(i)] = -100.0f + 130.0f * static_cast<float>(i) / static_cast<float>(n);
      u[static_cast<size_t>(i)] = 0.5f + 0.001f * static_cast<float>(i % 997);
    }
    g[0] = 0.0f;
    for (Isa isa : supported_isas()) {
      std::vector<float> y(g.size());
      kernels::activation_kernels_for(isa).silu_mul(g.data(), u.data(), n, y.data());
      for (int64_t i = 0; i < n; ++i) {
        const double gd = g[static_cast<size_t>(i)], ud = u[static_cast<size_t>(i)];
        const double want = gd / (1.0 + std::exp(-gd)) * ud;
        const double ulp = std::nextafter(static_cast<float>(std::fabs(want)), 1e30f) -
                           std::fabs(static_cast<float>(want));
        ASSERT_LE(std::fabs(y[static_cast<size_t>(i)] - want), 4 * ulp + 1e-34)
            << isa_name(isa) << " g=" << gd;
      }
      g[0] = std::numeric_limits<float>::quiet_NaN();
      kernels::activation_kernels_for(isa).silu_mul(g.data(), u.data(), n, y.data());
      EXPECT_TRUE(std::isnan(y[0])) << isa_name(isa);
      g[0] = 0.0f;
    }
  }
}

TEST(Kernels, ForcingAnUnknownOrUnsupportedLevelFails) {
  IsaGuard guard;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx2Vnni, Isa::kAvx512, Isa::kAmx}) {
    bool supported = false;
    for (Isa s : supported_isas()) supported |= s == isa;
    if (!supported) {
      EXPECT_THROW(set_active_isa(isa), ValueError) << isa_name(isa);
    }
  }
}

TEST(BandwidthProbe, MeasuresEveryTimeOverItsBufferAndRejectsBadSizes) {
  const ReadBandwidthProbe probe(int64_t{1} << 20, 2);
  for (int i = 0; i < 3; ++i) {  // the same buffer each time: reads only, checked by its sum
    const double gbps = probe.measure(1);
    EXPECT_TRUE(std::isfinite(gbps) && gbps > 0.0) << gbps;
  }
  EXPECT_THROW(probe.measure(0), ValueError);
  EXPECT_THROW(ReadBandwidthProbe(1024, 1), ValueError);
  EXPECT_THROW(ReadBandwidthProbe(int64_t{1} << 20, 0), ValueError);
  EXPECT_GT(measure_read_bandwidth_gbps(int64_t{1} << 20, 1, 1), 0.0);
}

}  // namespace
}  // namespace quantkit

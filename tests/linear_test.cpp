// Weight-only linear kernels against the scalar reference (dequantize, accumulate in double).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/gemv.h"
#include "quantkit/core/float_convert.h"
#include "quantkit/kernels/isa.h"
#include "quantkit/kernels/linear.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::IsaGuard;

struct WeightCase {
  DType dtype;
  ZeroPointDomain domain;
  int64_t group;                        // 0 = per channel
  DType scale_dtype = DType::kFloat32;  // float16: packed compact (3 bytes a group)
};

QTensor make_weight(int64_t n, int64_t k, const WeightCase& c, uint32_t seed) {
  AffineSpec spec = AffineSpec::for_dtype(
      c.dtype, c.group ? Granularity::per_group(c.group) : Granularity::per_axis(0));
  if (!is_float8(c.dtype)) {
    spec.zero_point_domain = c.domain;
    spec.mapping =
        c.domain == ZeroPointDomain::kNone ? MappingType::kSymmetric : MappingType::kAsymmetric;
  }
  spec.scale_dtype = c.scale_dtype;
  return quantize(testing::random_tensor({n, k}, seed, 0.05f), spec);
}

/// Both decode tunings (kernels/gemv.h), whichever CPU runs the test: the Intel one (256-bit
/// one-token 8-bit loops) and the AMD one (512-bit).
const std::vector<kernels::DecodeTuning> kDecodeTunings = {{8192, 1024, false, false},
                                                           {8192, 0, true, true}};

struct DecodeTuningGuard {
  kernels::DecodeTuning saved = kernels::decode_tuning;
  ~DecodeTuningGuard() { kernels::decode_tuning = saved; }
};

const std::vector<WeightCase> kCases = {
    {DType::kInt8, ZeroPointDomain::kNone, 0},
    {DType::kInt8, ZeroPointDomain::kInt, 0},
    {DType::kInt8, ZeroPointDomain::kNone, 32},
    {DType::kUInt8, ZeroPointDomain::kInt, 64},
    {DType::kInt4, ZeroPointDomain::kNone, 32},
    {DType::kInt4, ZeroPointDomain::kInt, 128},
    {DType::kUInt4, ZeroPointDomain::kFloat, 64},
    {DType::kInt4, ZeroPointDomain::kNone, 0},
    {DType::kInt4, ZeroPointDomain::kNone, 7},
    {DType::kInt2, ZeroPointDomain::kNone, 32},
    {DType::kUInt2, ZeroPointDomain::kInt, 32},
    {DType::kInt2, ZeroPointDomain::kNone, 0},
    {DType::kFloat8E4M3, ZeroPointDomain::kNone, 0},
    {DType::kFloat8E5M2, ZeroPointDomain::kNone, 0},
    {DType::kInt8, ZeroPointDomain::kNone, 0, DType::kFloat16},
    {DType::kInt4, ZeroPointDomain::kNone, 32, DType::kFloat16},
    {DType::kUInt4, ZeroPointDomain::kInt, 64, DType::kFloat16},
    {DType::kInt4, ZeroPointDomain::kInt, 7, DType::kFloat16},
    {DType::kInt2, ZeroPointDomain::kNone, 32, DType::kFloat16},
};

TEST(LinearPacking, Float16ScalesAndIntegerZeroPointsPackCompact) {
  for (const WeightCase& c : kCases) {
    const QTensor w = make_weight(40, 100, c, 5);
    const PackedLinearWeight p = pack_linear_weight(w);
    const bool expect_compact = c.scale_dtype == DType::kFloat16 && !is_float8(c.dtype);
    ASSERT_EQ(p.compact(), expect_compact) << w.summary();
    const int64_t groups = 40 * p.groups;
    const int64_t meta =
        !p.compact() ? 4 * groups * (p.has_offsets ? 2 : 1) : groups * (p.has_offsets ? 3 : 2);
    EXPECT_EQ(p.nbytes(), p.codes.nbytes() + meta) << w.summary();
    if (!p.compact()) continue;
    // Scales and zero points come back exactly, and the float32 view agrees with them.
    const QTensor back = p.unpack();
    for (int64_t b = 0; b < groups; ++b) {
      ASSERT_EQ(back.scale().data<float>()[b], w.scale().data<float>()[b]) << w.summary();
      if (c.domain == ZeroPointDomain::kInt) {
        ASSERT_EQ(back.zero_point().data<int32_t>()[b], w.zero_point().data<int32_t>()[b]);
      }
    }
    std::vector<float> s(static_cast<size_t>(p.groups)), off(s.size());
    p.group_params(39, 1, s.data(), off.data());
    for (int64_t g = 0; g < p.groups; ++g) {
      const int64_t b = 39 * p.groups + g;
      const float zp = c.domain == ZeroPointDomain::kInt
                           ? static_cast<float>(w.zero_point().data<int32_t>()[b])
                           : 0.0f;
      EXPECT_EQ(s[static_cast<size_t>(g)], w.scale().data<float>()[b]);
      EXPECT_EQ(off[static_cast<size_t>(g)], -w.scale().data<float>()[b] * zp);
    }
  }
}

TEST(LinearPacking, Float16ScaleDtypeRoundsTheChosenScales) {
  AffineSpec spec = AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(32));
  spec.scale_dtype = DType::kFloat16;
  const Tensor x = testing::random_tensor({8, 64}, 9, 0.05f);
  const QTensor q = quantize(x, spec);
  for (int64_t b = 0; b < q.scale().numel(); ++b) {
    const float s = q.scale().data<float>()[b];
    EXPECT_EQ(f16_bits_to_float(float_to_f16_bits(s)), s);
  }
  // Half a step, plus what rounding the scale (relative error <= 2^-11) moves the clamped end
  // of the range: at most 8 codes' worth of it.
  const Tensor back = q.dequantize();
  for (int64_t i = 0; i < x.numel(); ++i) {
    EXPECT_LE(std::fabs(back.data<float>()[i] - x.data<float>()[i]),
              (0.5f + 8.0f / 2048.0f) * q.scale().data<float>()[i / 32] * 1.0001f);
  }
  spec.dtype = DType::kInt8;
  spec.quant_min = -128;
  spec.quant_max = 127;
  EXPECT_THROW(quantize(testing::random_tensor({1, 32}, 1, 1e7f), spec), ValueError);
}

TEST(LinearPacking, UnpackGivesBackTheExactCodes) {
  for (const WeightCase& c : kCases) {
    // 300 rows: packing runs rows in parallel (unpacking too where rows start on whole bytes).
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
             {5, 1}, {5, 31}, {5, 32}, {5, 100}, {5, 257}, {300, 256}, {300, 257}, {300, 258}}) {
      const QTensor w = make_weight(n, k, c, 3);
      const PackedLinearWeight p = pack_linear_weight(w);
      EXPECT_EQ(p.row_bytes % 64, 0);
      const QTensor back = p.unpack();
      const Tensor a = w.int_repr(), b = back.int_repr();
      ASSERT_EQ(0, std::memcmp(a.bytes(), b.bytes(), static_cast<size_t>(a.nbytes())))
          << w.summary() << " k=" << k;
      // The channel tiles hold the same codes: there and back, and unpacked directly.
      const PackedLinearWeight tiled = p.with_layout(CodeLayout::kChannelTiles);
      EXPECT_EQ(tiled.codes.size(0), (n + 15) / 16 * 16);
      const PackedLinearWeight rows = tiled.with_layout(CodeLayout::kRows);
      ASSERT_EQ(rows.codes.shape(), p.codes.shape());
      ASSERT_EQ(0, std::memcmp(rows.codes.bytes(), p.codes.bytes(),
                               static_cast<size_t>(p.codes.nbytes())))
          << w.summary() << " k=" << k;
      // And the group metadata, tile-major there: the same scales and offsets for every row,
      // and the same bytes back in rows.
      const auto count = static_cast<size_t>(n * p.groups);
      std::vector<float> from_rows(2 * count), tile_params(2 * count);
      p.group_params(0, n, from_rows.data(), from_rows.data() + count);
      tiled.group_params(0, n, tile_params.data(), tile_params.data() + count);
      ASSERT_EQ(0, std::memcmp(from_rows.data(), tile_params.data(), 2 * count * sizeof(float)))
          << w.summary() << " k=" << k;
      ASSERT_EQ(rows.compact(), p.compact());
      for (auto [back_param, param] : {std::pair{&rows.scales, &p.scales},
                                       {&rows.offsets, &p.offsets},
                                       {&rows.scales_f16, &p.scales_f16},
                                       {&rows.zero_points, &p.zero_points}}) {
        ASSERT_EQ(back_param->defined(), param->defined());
        if (!param->defined()) continue;
        ASSERT_EQ(back_param->shape(), param->shape());
        ASSERT_EQ(0, std::memcmp(back_param->bytes(), param->bytes(),
                                 static_cast<size_t>(param->nbytes())));
      }
      const Tensor from_tiles = tiled.unpack().int_repr();
      ASSERT_EQ(0, std::memcmp(a.bytes(), from_tiles.bytes(), static_cast<size_t>(a.nbytes())))
          << w.summary() << " k=" << k;
      const Tensor da = w.dequantize(), db = back.dequantize();
      for (int64_t i = 0; i < da.numel(); ++i) {
        ASSERT_NEAR(da.data<float>()[i], db.data<float>()[i],
                    1e-6f * (1 + std::fabs(da.data<float>()[i])))
            << w.summary();
      }
    }
  }
}

/// How far a kernel's y[r, o] may lie from the reference's. Float32 accumulation in another
/// order: 64 ulp of sum |x_k W_ok|. Int16 activations add sum |W_ok| |x'_k - x_k| with
/// |x'_k - x_k| <= amax / 65534, amax the largest |x| of k's 32-element chunk (the int16 scale;
/// 1 + 2^-8 for the float32 scale): 65000 covers both.
struct ErrorBound {
  double magnitude = 0.0, rounding = 0.0;
  ErrorBound(const Tensor& x, const Tensor& wf, int64_t r, int64_t o, int64_t k) {
    for (int64_t c0 = 0; c0 < k; c0 += 32) {
      double amax = 0.0;
      for (int64_t i = c0; i < std::min(k, c0 + 32); ++i)
        amax = std::max(amax, std::fabs(static_cast<double>(x.data<float>()[r * k + i])));
      for (int64_t i = c0; i < std::min(k, c0 + 32); ++i) {
        const double wi = std::fabs(wf.data<float>()[o * k + i]);
        magnitude += std::fabs(x.data<float>()[r * k + i]) * wi;
        rounding += wi * amax / 65000.0;
      }
    }
  }
  double bound(bool int16) const {
    return 64 * 1.1920929e-7 * magnitude + 1e-30 + (int16 ? rounding : 0.0);
  }
};

TEST(Linear, EveryIsaMatchesTheReference) {
  IsaGuard guard;
  DecodeTuningGuard tuning_guard;
  int compared = 0;
  double worst = 0.0;
  for (const WeightCase& c : kCases) {
    for (int64_t k : {1, 33, 64, 100, 257}) {
      for (int64_t n : {1, 17, 40}) {
        const QTensor w = make_weight(n, k, c, static_cast<uint32_t>(k * 31 + n));
        const PackedLinearWeight p = pack_linear_weight(w);
        const Tensor wf = w.dequantize();
        // 400: past the sgemm threshold of other weights; 4-bit stays on the int16 channel
        // tiles at the avx512 and avx2 levels. 10 and 11: the avx2 tiles' passes of 2 and 3
        // tokens after those of 4.
        for (int64_t m : {1, 2, 3, 7, 8, 10, 11, 33, 128, 400}) {
          if ((m == 400 || m == 10 || m == 11) && (dtype_bits(c.dtype) != 4 || n == 1)) continue;
          const Tensor x = testing::random_tensor({m, k}, static_cast<uint32_t>(m + k + n));
          set_active_isa(Isa::kReference);
          const Tensor want = linear_weight_only(x, p);
          for (Isa isa : supported_isas()) {
            set_active_isa(isa);
            for (int run = 0; run < 4; ++run) {
              const auto mode = run < 2 ? GemvActivations::kFloat32 : GemvActivations::kInt16;
              kernels::decode_tuning = kDecodeTunings[static_cast<size_t>(run % 2)];
              const Tensor got = linear_weight_only(x, p, nullptr, mode);
              for (int64_t r = 0; r < m; ++r) {
                for (int64_t o = 0; o < n; ++o) {
                  const ErrorBound e(x, wf, r, o, k);
                  const double err =
                      std::fabs(got.data<float>()[r * n + o] - want.data<float>()[r * n + o]);
                  ASSERT_LE(err, e.bound(mode == GemvActivations::kInt16))
                      << isa_name(isa) << " " << w.summary() << " m=" << m << " k=" << k
                      << " int16=" << (mode == GemvActivations::kInt16)
                      << " wide W8A16 decode=" << kernels::decode_tuning.wide_w8a16_single_token;
                  if (mode == GemvActivations::kFloat32)
                    worst = std::max(worst, err / (e.magnitude + 1e-30));
                }
              }
              ++compared;
            }
          }
          // The reference itself: y equals x times the dequantized weight.
          double max_err = 0.0;
          for (int64_t o = 0; o < n; ++o) {
            double acc = 0.0;
            for (int64_t i = 0; i < k; ++i)
              acc += static_cast<double>(x.data<float>()[i]) * wf.data<float>()[o * k + i];
            max_err = std::max(max_err, std::fabs(acc - want.data<float>()[o]));
          }
          ASSERT_LT(max_err, 1e-4) << w.summary();
        }
      }
    }
  }
  std::printf("compared %d cases; worst float32 |error| / sum|x w| = %.3g (bound %.3g)\n", compared,
              worst, 64 * 1.1920929e-7);
}

// The avx512 pair tiles (from GemvKernels::u4_pair_tiles_min_tokens tokens): passes of 4 to 8
// tokens in every mix from 5 to 35 tokens, K with a partial chunk and a partial last group, N
// ending in a slice of 8 channels (one tile, the other empty) or of 24 (a tile and a half),
// symmetric, integer and float zero points, compact metadata.
TEST(Linear, PairTilesTakeEveryPassWidth) {
  IsaGuard guard;
  const std::vector<WeightCase> cases = {
      {DType::kInt4, ZeroPointDomain::kNone, 32},
      {DType::kUInt4, ZeroPointDomain::kFloat, 64},
      {DType::kInt4, ZeroPointDomain::kInt, 0},
      {DType::kInt4, ZeroPointDomain::kInt, 96, DType::kFloat16},
  };
  const int64_t k = 200;
  int compared = 0;
  for (Isa isa : supported_isas()) {
    const int64_t first = kernels::gemv_kernels_for(isa).u4_pair_tiles_min_tokens;
    if (first > 24) continue;
    for (const WeightCase& c : cases) {
      for (int64_t n : {40, 56}) {
        const QTensor w = make_weight(n, k, c, 77);
        const PackedLinearWeight p = pack_linear_weight(w);
        const Tensor wf = w.dequantize();
        for (int64_t m = first; m < 36; ++m) {
          const Tensor x = testing::random_tensor({m, k}, static_cast<uint32_t>(m));
          set_active_isa(Isa::kReference);
          const Tensor want = linear_weight_only(x, p);
          set_active_isa(isa);
          const Tensor got = linear_weight_only(x, p, nullptr, GemvActivations::kInt16);
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t o = 0; o < n; ++o) {
              const double err =
                  std::fabs(got.data<float>()[r * n + o] - want.data<float>()[r * n + o]);
              ASSERT_LE(err, ErrorBound(x, wf, r, o, k).bound(true))
                  << isa_name(isa) << " " << w.summary() << " m=" << m << " token " << r
                  << " channel " << o;
            }
          }
          ++compared;
        }
      }
    }
  }
  if (compared == 0) GTEST_SKIP() << "no ISA level here takes the pair tiles";
}

// The channel tiles' group metadata stays with each thread between calls, and a symmetric
// weight's zero offsets are rewritten only when an asymmetric weight left others there: a
// symmetric weight after an asymmetric one, on one thread (the same tile buffers), must not see
// the old offsets.
TEST(Linear, SymmetricAfterAsymmetricWeightOnTheSameThread) {
  IsaGuard guard;
  const int threads = num_threads();
  set_num_threads(1);
  const int64_t n = 48, k = 640;  // 20 groups: 16 through the transposes, 4 after
  const WeightCase asym = {DType::kUInt4, ZeroPointDomain::kFloat, 32};
  const WeightCase sym = {DType::kInt4, ZeroPointDomain::kNone, 32};
  const PackedLinearWeight pa = pack_linear_weight(make_weight(n, k, asym, 5));
  const QTensor ws = make_weight(n, k, sym, 6);
  const PackedLinearWeight ps = pack_linear_weight(ws);
  const Tensor wf = ws.dequantize();
  for (Isa isa : supported_isas()) {
    for (int64_t m : {1, 8, 32}) {
      const Tensor x = testing::random_tensor({m, k}, static_cast<uint32_t>(m));
      set_active_isa(Isa::kReference);
      const Tensor want = linear_weight_only(x, ps);
      set_active_isa(isa);
      (void)linear_weight_only(x, pa, nullptr, GemvActivations::kInt16);
      const Tensor got = linear_weight_only(x, ps, nullptr, GemvActivations::kInt16);
      for (int64_t r = 0; r < m; ++r) {
        for (int64_t o = 0; o < n; ++o) {
          ASSERT_LE(std::fabs(got.data<float>()[r * n + o] - want.data<float>()[r * n + o]),
                    ErrorBound(x, wf, r, o, k).bound(true))
              << isa_name(isa) << " m=" << m << " token " << r << " channel " << o;
        }
      }
    }
  }
  set_num_threads(threads);
}

TEST(Linear, Int16ActivationsRoundEachChunkOnItsOwnScale) {
  // W = 1 everywhere (int8, scale 1). Chunk 0 holds 1.0 and 1e-6: 1e-6 is below its step
  // (1 / 32767) and rounds to 0. Chunk 1 holds only 1e-6 and 3e-6: its own scale keeps them.
  // x[2] = 0.7 rounds to 22937 / 32767. The expected sums are exact in double.
  IsaGuard guard;
  const int64_t k = 64;
  std::vector<float> xs(static_cast<size_t>(k), 0.0f);
  xs[0] = 1.0f, xs[1] = 1e-6f, xs[2] = 0.7f, xs[32] = 1e-6f, xs[33] = 3e-6f;
  const Tensor x = Tensor::from_floats(xs, {1, k});
  const Tensor ones =
      Tensor::from_floats(std::vector<float>(static_cast<size_t>(2 * k), 1.0f), {2, k});
  const QTensor wq = quantize(ones, AffineSpec::for_dtype(DType::kInt8, Granularity::per_axis(0)));
  const PackedLinearWeight p = pack_linear_weight(wq);
  const double w1 = wq.dequantize().data<float>()[0];
  const double chunk0 = static_cast<double>(static_cast<float>(1.0 / 32767.0)) * (32767 + 22937);
  const double chunk1 = static_cast<double>(static_cast<float>(3e-6f / 32767.0)) *
                        (std::nearbyint(1e-6f * (32767.0 / 3e-6f)) + 32767);
  const double want = w1 * (chunk0 + chunk1);
  for (Isa isa : supported_isas()) {
    if (isa == Isa::kReference) continue;  // the reference level computes in double, unrounded
    set_active_isa(isa);
    const Tensor y = linear_weight_only(x, p, nullptr, GemvActivations::kInt16);
    EXPECT_NEAR(y.data<float>()[0], want, 1e-6 * want) << isa_name(isa);
    EXPECT_NEAR(y.data<float>()[1], want, 1e-6 * want) << isa_name(isa);
    const Tensor exact = linear_weight_only(x, p, nullptr, GemvActivations::kFloat32);
    EXPECT_NEAR(exact.data<float>()[0], w1 * (1.7 + 5e-6), 1e-6) << isa_name(isa);
    EXPECT_GT(std::fabs(y.data<float>()[0] - exact.data<float>()[0]), 5e-7) << isa_name(isa);
  }
}

TEST(Linear, Int16ActivationsCarryNaNAndInfThroughTheFloatPath) {
  IsaGuard guard;
  const QTensor w = make_weight(16, 64, {DType::kInt4, ZeroPointDomain::kNone, 32}, 1);
  const PackedLinearWeight p = pack_linear_weight(w);
  for (float bad : {std::nanf(""), INFINITY}) {
    Tensor x = testing::random_tensor({2, 64}, 3);
    x.data<float>()[70] = bad;  // row 1
    for (Isa isa : supported_isas()) {
      set_active_isa(isa);
      const Tensor y = linear_weight_only(x, p, nullptr, GemvActivations::kInt16);
      const Tensor ref = linear_weight_only(x, p, nullptr, GemvActivations::kFloat32);
      for (int64_t o = 0; o < 16; ++o) {
        EXPECT_TRUE(std::isfinite(y.data<float>()[o])) << isa_name(isa);
        EXPECT_FALSE(std::isfinite(y.data<float>()[16 + o])) << isa_name(isa);
        EXPECT_EQ(y.data<float>()[o], ref.data<float>()[o]) << isa_name(isa);
      }
    }
  }
}

TEST(Linear, GemvActivationsSettingIsUsed) {
  const GemvActivations saved = gemv_activations();
  const PackedLinearWeight p =
      pack_linear_weight(make_weight(16, 96, {DType::kInt8, ZeroPointDomain::kNone, 0}, 4));
  const Tensor x = testing::random_tensor({3, 96}, 5);
  for (GemvActivations mode : {GemvActivations::kFloat32, GemvActivations::kInt16}) {
    set_gemv_activations(mode);
    EXPECT_EQ(gemv_activations(), mode);
    const Tensor a = linear_weight_only(x, p), b = linear_weight_only(x, p, nullptr, mode);
    EXPECT_EQ(0, std::memcmp(a.bytes(), b.bytes(), static_cast<size_t>(a.nbytes())));
  }
  set_gemv_activations(saved);
}

TEST(Linear, BiasBatchDimsAndBadInput) {
  const QTensor w = make_weight(8, 64, {DType::kInt4, ZeroPointDomain::kNone, 32}, 1);
  const PackedLinearWeight p = pack_linear_weight(w);
  const Tensor x = testing::random_tensor({2, 3, 64}, 2);
  const Tensor bias = testing::random_tensor({8}, 3);
  const Tensor y = linear_weight_only(x, p, &bias);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 8}));
  const Tensor y0 = linear_weight_only(x, p);
  EXPECT_NEAR(y.data<float>()[9] - y0.data<float>()[9], bias.data<float>()[1], 1e-5);
  EXPECT_THROW(linear_weight_only(testing::random_tensor({2, 63}, 1), p), ShapeError);
  EXPECT_THROW(linear_weight_only(x.to(DType::kFloat16), p), DTypeError);
  const Tensor bad_bias = testing::random_tensor({7}, 1);
  EXPECT_THROW(linear_weight_only(x, p, &bad_bias), ShapeError);
  EXPECT_THROW(pack_linear_weight(
                   quantize(testing::random_tensor({4}, 1), AffineSpec::for_dtype(DType::kInt8))),
               ShapeError);
  EXPECT_THROW(set_num_threads(0), ValueError);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data<float>(), b.data<float>(), static_cast<size_t>(a.numel()) * 4) == 0;
}

// The single-token GEMV expands compact metadata, folds it into the chunk scales and sums the
// bias in one pass at 1, 2 and 4 chunks per group: bit-identical to the three passes it
// replaces, which float32 metadata of the same values still takes (K = 1100: vector steps of
// 16 and 8 groups and a partial last group; K = 470 at group size 64: the partial group inside
// the only step of 8).
TEST(Linear, CompactMetadataFoldsLikeFloat32Metadata) {
  IsaGuard guard;
  const int64_t n = 19;
  for (int64_t k : {470, 1100}) {
    const Tensor x = testing::random_tensor({1, k}, 4);
    for (auto [dtype, group] : std::vector<std::pair<DType, int64_t>>{{DType::kInt4, 0},
                                                                      {DType::kInt4, 32},
                                                                      {DType::kInt4, 64},
                                                                      {DType::kInt4, 128},
                                                                      {DType::kInt2, 0},
                                                                      {DType::kInt2, 32}}) {
      for (ZeroPointDomain domain : {ZeroPointDomain::kNone, ZeroPointDomain::kInt}) {
        const PackedLinearWeight compact =
            pack_linear_weight(make_weight(n, k, {dtype, domain, group, DType::kFloat16}, 9));
        ASSERT_TRUE(compact.compact());
        PackedLinearWeight full = compact.clone();
        full.scales = Tensor::empty({n, full.groups}, DType::kFloat32);
        if (full.has_offsets) full.offsets = Tensor::empty({n, full.groups}, DType::kFloat32);
        compact.group_params(0, n, full.scales.data<float>(),
                             full.has_offsets ? full.offsets.data<float>() : nullptr);
        full.scales_f16 = Tensor();
        full.zero_points = Tensor();
        for (Isa isa : supported_isas()) {
          set_active_isa(isa);
          EXPECT_TRUE(same_bits(linear_weight_only(x, compact), linear_weight_only(x, full)))
              << isa_name(isa) << " " << dtype_name(dtype) << " k " << k << " group " << group
              << " asym " << (domain == ZeroPointDomain::kInt);
        }
      }
    }
  }
}

// Every float8 code, NaN and infinities included, decodes to its exact value in the float8
// kernels of every level: row n holds code n at column n % k (zeros elsewhere), so y[r, n] is the
// single product x[r, n % k] * scale * value(n), with no rounding. 1 and 5 tokens take the
// GEMV, 70 the dequantized tiles + sgemm; k = 40 and 200 leave a partial last chunk, and 200
// reaches the AVX-512 loop (blocks of 4 chunks per channel, 1 at group 32).
TEST(Linear, Float8KernelsDecodeEveryCodeExactly) {
  IsaGuard guard;
  for (DType dtype : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    for (auto [k, group] : {std::pair<int64_t, int64_t>{40, 0}, {200, 0}, {200, 32}}) {
      const QTensor like = make_weight(256, k, {dtype, ZeroPointDomain::kNone, group}, 1);
      Tensor codes = Tensor::zeros({256, k}, dtype);
      for (int64_t n = 0; n < 256; ++n) codes.bytes()[n * k + n % k] = static_cast<uint8_t>(n);
      Tensor scale = Tensor::empty(like.scale().shape(), DType::kFloat32);
      for (int64_t i = 0; i < scale.numel(); ++i) scale.data<float>()[i] = 0.5f;
      const PackedLinearWeight p =
          pack_linear_weight(QTensor(codes, scale, Tensor(), like.scheme()));
      for (int64_t m : {1, 5, 70}) {
        const Tensor x = testing::random_tensor({m, k}, static_cast<uint32_t>(m * k));
        for (Isa isa : supported_isas()) {
          set_active_isa(isa);
          for (GemvActivations mode : {GemvActivations::kFloat32, GemvActivations::kInt16}) {
            const Tensor y = linear_weight_only(x, p, nullptr, mode);
            for (int64_t r = 0; r < m; ++r) {
              for (int64_t n = 0; n < 256; ++n) {
                const auto code = static_cast<uint8_t>(n);
                const float value = dtype == DType::kFloat8E4M3 ? e4m3_bits_to_float(code)
                                                                : e5m2_bits_to_float(code);
                const float want = x.data<float>()[r * k + n % k] * (0.5f * value);
                const float got = y.data<float>()[r * 256 + n];
                if (std::isnan(want)) {
                  ASSERT_TRUE(std::isnan(got))
                      << isa_name(isa) << " " << dtype_name(dtype) << " code " << n << " m=" << m
                      << " k=" << k << " group " << group;
                } else {
                  ASSERT_EQ(got, want) << isa_name(isa) << " " << dtype_name(dtype) << " code " << n
                                       << " m=" << m << " k=" << k << " group " << group;
                }
              }
            }
          }
        }
      }
    }
  }
}

// Weights sharing an input (q/k/v) in one pass: every output bit-identical to its own
// linear_weight_only call, on the shared int16 path (1 and 7 tokens, compact and float32
// metadata, biases, 2-bit interleaving) and on every fallback (160 tokens, group sizes or
// widths that differ, NaN in x, float8, the reference level).
TEST(Linear, SharedInputEqualsSeparateCallsBitForBit) {
  IsaGuard guard;
  const int64_t k = 96;
  auto pack = [&](const WeightCase& c, int64_t n, uint32_t seed) {
    return pack_linear_weight(make_weight(n, k, c, seed));
  };
  struct Group {
    std::vector<WeightCase> cases;
  };
  const std::vector<Group> groups = {
      {{{DType::kInt4, ZeroPointDomain::kNone, 32, DType::kFloat16},
        {DType::kInt4, ZeroPointDomain::kInt, 32, DType::kFloat16},
        {DType::kInt4, ZeroPointDomain::kNone, 32}}},
      {{{DType::kInt8, ZeroPointDomain::kNone, 0}, {DType::kUInt8, ZeroPointDomain::kInt, 0}}},
      {{{DType::kInt2, ZeroPointDomain::kNone, 32, DType::kFloat16},
        {DType::kUInt2, ZeroPointDomain::kInt, 32}}},
      {{{DType::kInt4, ZeroPointDomain::kNone, 32}, {DType::kInt4, ZeroPointDomain::kNone, 0}}},
      {{{DType::kInt4, ZeroPointDomain::kNone, 32}, {DType::kInt8, ZeroPointDomain::kNone, 32}}},
      {{{DType::kFloat8E4M3, ZeroPointDomain::kNone, 0}}},
  };
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (const Group& g : groups) {
      std::vector<PackedLinearWeight> packed;
      std::vector<Tensor> biases;
      for (size_t i = 0; i < g.cases.size(); ++i) {
        packed.push_back(pack(g.cases[i], 17 + 16 * static_cast<int64_t>(i), 5 + i));
        biases.push_back(testing::random_tensor({packed.back().out_features}, 9 + i));
      }
      std::vector<const PackedLinearWeight*> weights;
      std::vector<const Tensor*> bias_ptrs;
      for (size_t i = 0; i < packed.size(); ++i) {
        weights.push_back(&packed[i]);
        bias_ptrs.push_back(i == 1 ? nullptr : &biases[i]);
      }
      for (int64_t m : {1, 7, 160}) {
        Tensor x = testing::random_tensor({m, k}, 3);
        for (bool nan : {false, true}) {
          if (nan) x.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
          const std::vector<Tensor> ys = linear_weight_only_shared_input(x, weights, bias_ptrs);
          ASSERT_EQ(ys.size(), weights.size());
          for (size_t i = 0; i < weights.size(); ++i) {
            const Tensor want = linear_weight_only(x, *weights[i], bias_ptrs[i]);
            EXPECT_TRUE(same_bits(ys[i], want)) << isa_name(isa) << " m=" << m << " weight " << i
                                                << " " << dtype_name(weights[i]->dtype);
          }
        }
      }
    }
  }
  const PackedLinearWeight p = pack({DType::kInt4, ZeroPointDomain::kNone, 32}, 8, 1);
  const Tensor x = testing::random_tensor({1, k}, 2);
  EXPECT_THROW(linear_weight_only_shared_input(x, {}), ValueError);
  EXPECT_THROW(linear_weight_only_shared_input(x, {&p}, {nullptr, nullptr}), ValueError);
  EXPECT_THROW(linear_weight_only_shared_input(testing::random_tensor({1, k + 1}, 2), {&p}),
               ShapeError);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

TEST(LinearDynamicInt8, EveryIsaMatchesTheSpecification) {
  IsaGuard guard;
  DecodeTuningGuard tuning_guard;
  int compared = 0;
  double worst = 0.0, worst_vs_float = 0.0;
  const std::vector<WeightCase> cases = {
      {DType::kInt8, ZeroPointDomain::kNone, 0},
      {DType::kInt8, ZeroPointDomain::kInt, 32},
      {DType::kInt8, ZeroPointDomain::kNone, 64},  // two chunks a group: the 512-bit decode loop
      {DType::kInt4, ZeroPointDomain::kNone, 32},
      {DType::kInt4, ZeroPointDomain::kInt, 64},
      {DType::kUInt4, ZeroPointDomain::kFloat, 0},
      {DType::kUInt8, ZeroPointDomain::kInt, 0},  // float path
      {DType::kInt4, ZeroPointDomain::kNone, 7},
      {DType::kFloat8E4M3, ZeroPointDomain::kNone, 0},
      {DType::kInt4, ZeroPointDomain::kNone, 32, DType::kFloat16},
      {DType::kInt8, ZeroPointDomain::kInt, 32, DType::kFloat16},
      {DType::kInt4, ZeroPointDomain::kInt, 64, DType::kFloat16},
  };
  for (const WeightCase& c : cases) {
    // 600: 19 groups of 32, beyond the 16 that the avx512 tiles transpose at a time.
    for (int64_t k : {1, 33, 64, 100, 257, 600}) {
      for (int64_t n : {1, 17, 40}) {
        const QTensor w = make_weight(n, k, c, static_cast<uint32_t>(k + n));
        const PackedLinearWeight p = pack_linear_weight(w);
        // The avx512 kernels read these as stored, for every token count; other levels convert.
        const PackedLinearWeight tiled = p.with_layout(CodeLayout::kChannelTiles);
        const Tensor wf = w.dequantize();
        // From 4 (4-bit) or 32 (8-bit) tokens on the AVX2 kernels pass tiles over 4 or 6 tokens
        // at a time: 33..37 and 128 leave every remainder of both. The avx512 level's 16-channel
        // tiles take 8 tokens a pass (8-bit from 6 tokens on: 7 and 33 leave remainders). The amx
        // level takes 4 tokens on in steps of 32 and panels of 256 (273 ends in a second, partial
        // panel); up to 8 tokens it pairs groups of 32 (K = 257: nine groups, the last pair half
        // empty).
        for (int64_t m : {1, 2, 3, 4, 7, 8, 33, 34, 35, 37, 128, 273}) {
          if (k == 600 && m != 1 && m != 8 && m != 33) continue;  // long rows: a few shapes
          const Tensor x = testing::random_tensor({m, k}, static_cast<uint32_t>(7 * m + k));
          set_active_isa(Isa::kReference);
          // The specification: per-token int8 activations, dequantized, times W in double.
          const Tensor want = linear_weight_only(fake_quantize_per_token_int8(x), p);
          const Tensor exact = linear_weight_only(x, p);
          for (Isa isa : supported_isas()) {
            for (const kernels::DecodeTuning& tuning : kDecodeTunings) {
              set_active_isa(isa);
              kernels::decode_tuning = tuning;
              for (const PackedLinearWeight* layout : {&p, &tiled}) {
                const Tensor got = linear_dynamic_int8(x, *layout);
                const bool tiles = layout->layout == CodeLayout::kChannelTiles;
                for (int64_t r = 0; r < m; ++r) {
                  for (int64_t o = 0; o < n; ++o) {
                    double magnitude = 0.0;
                    for (int64_t i = 0; i < k; ++i)
                      magnitude +=
                          std::fabs(x.data<float>()[r * k + i] * wf.data<float>()[o * k + i]);
                    const double err =
                        std::fabs(got.data<float>()[r * n + o] - want.data<float>()[r * n + o]);
                    ASSERT_LE(err, 64 * 1.1920929e-7 * magnitude + 1e-30)
                        << isa_name(isa) << " " << w.summary() << " m=" << m << " k=" << k
                        << " wide W8A8 decode=" << tuning.wide_w8a8_single_token
                        << " channel tiles=" << tiles;
                    worst = std::max(worst, err / (magnitude + 1e-30));
                    // int8 activations lose at most half a step (max|x| / 254) per element.
                    const double vs_float =
                        std::fabs(got.data<float>()[r * n + o] - exact.data<float>()[r * n + o]);
                    worst_vs_float = std::max(worst_vs_float, vs_float / (magnitude + 1e-30));
                  }
                }
                ++compared;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_LT(worst_vs_float, 0.05);
  std::printf(
      "compared %d cases; worst |error| / sum|x w| = %.3g vs the int8 spec, %.3g vs float "
      "activations\n",
      compared, worst, worst_vs_float);
}

// Many tokens go to the integer kernels in runs that fit half the L2 (tokens_per_run in
// linear_dynamic_int8.cpp): 8203 tokens of K = 512 are 4.2 MB of int8 rows, several runs on any
// L2 up to 8 MiB, the last one partial. Every token must come out as the specification has it,
// in its own row of y.
TEST(LinearDynamicInt8, LongBatchesGoInRunsOfTokens) {
  IsaGuard guard;
  const int64_t m = 8203, k = 512, n = 40;
  for (const WeightCase& c :
       {WeightCase{DType::kInt8, ZeroPointDomain::kNone, 0},
        WeightCase{DType::kInt4, ZeroPointDomain::kInt, 32, DType::kFloat16}}) {
    const QTensor w = make_weight(n, k, c, 11);
    const PackedLinearWeight p = pack_linear_weight(w);
    const PackedLinearWeight tiled = p.with_layout(CodeLayout::kChannelTiles);
    const Tensor wf = w.dequantize();
    const Tensor x = testing::random_tensor({m, k}, 12);
    set_active_isa(Isa::kReference);
    const Tensor want = linear_weight_only(fake_quantize_per_token_int8(x), p);
    std::vector<double> bound(static_cast<size_t>(m * n));
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t o = 0; o < n; ++o) {
        double magnitude = 0.0;
        for (int64_t i = 0; i < k; ++i)
          magnitude += std::fabs(x.data<float>()[r * k + i] * wf.data<float>()[o * k + i]);
        bound[static_cast<size_t>(r * n + o)] = 64 * 1.1920929e-7 * magnitude + 1e-30;
      }
    }
    for (Isa isa : supported_isas()) {
      set_active_isa(isa);
      for (const PackedLinearWeight* layout : {&p, &tiled}) {
        const Tensor got = linear_dynamic_int8(x, *layout);
        for (int64_t i = 0; i < m * n; ++i) {
          ASSERT_LE(std::fabs(got.data<float>()[i] - want.data<float>()[i]),
                    bound[static_cast<size_t>(i)])
              << isa_name(isa) << " " << w.summary() << " token " << i / n << " channel " << i % n;
        }
      }
    }
  }
}

// Weights in channel tiles give the float kernels (which read rows) the same codes: bit for bit
// the results of the rows they were made from, alone and beside other weights; the dynamic
// int8 kernels give the same bits where both layouts take the same tiles (the avx512 level from
// 16 tokens on; K = 600 with its 19 groups of 32: a partial step of the group transposes).
TEST(LinearChannelTiles, EveryKernelGivesTheResultsOfRows) {
  IsaGuard guard;
  const std::vector<WeightCase> cases = {{DType::kInt8, ZeroPointDomain::kNone, 0},
                                         {DType::kInt4, ZeroPointDomain::kInt, 32, DType::kFloat16},
                                         {DType::kInt2, ZeroPointDomain::kNone, 32}};
  for (const WeightCase& c : cases) {
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{17, 64}, {40, 600}}) {
      const PackedLinearWeight rows = pack_linear_weight(make_weight(n, k, c, 11));
      const PackedLinearWeight tiled = rows.with_layout(CodeLayout::kChannelTiles);
      EXPECT_EQ(tiled.nbytes(), rows.nbytes());
      for (int64_t m : {1, 3, 8, 33}) {
        const Tensor x = testing::random_tensor({m, k}, static_cast<uint32_t>(m + k));
        for (Isa isa : supported_isas()) {
          set_active_isa(isa);
          EXPECT_TRUE(same_bits(linear_weight_only(x, tiled), linear_weight_only(x, rows)))
              << isa_name(isa) << " m " << m << " k " << k;
          const std::vector<Tensor> ys = linear_weight_only_shared_input(x, {&rows, &tiled});
          EXPECT_TRUE(same_bits(ys[1], ys[0])) << isa_name(isa) << " m " << m << " k " << k;
          if (dtype_bits(c.dtype) != 2 && (isa != Isa::kAvx512 || m >= 16)) {
            EXPECT_TRUE(same_bits(linear_dynamic_int8(x, tiled), linear_dynamic_int8(x, rows)))
                << isa_name(isa) << " m " << m << " k " << k;
          }
        }
      }
    }
  }
}

// Quantizing x once for several weights changes nothing: every output equals its own call, for
// weights that share the group size (one quantization) and for mixes that do not (one each).
TEST(LinearDynamicInt8, SharedInputEqualsSeparateCallsBitForBit) {
  IsaGuard guard;
  const int64_t k = 96;
  const std::vector<std::vector<WeightCase>> groups = {
      {{DType::kInt8, ZeroPointDomain::kNone, 0}, {DType::kInt8, ZeroPointDomain::kInt, 0}},
      {{DType::kInt4, ZeroPointDomain::kNone, 32, DType::kFloat16},
       {DType::kInt8, ZeroPointDomain::kInt, 32}},
      {{DType::kInt4, ZeroPointDomain::kNone, 32}, {DType::kInt8, ZeroPointDomain::kNone, 0}},
      {{DType::kUInt8, ZeroPointDomain::kInt, 0}, {DType::kInt8, ZeroPointDomain::kNone, 0}},
  };
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    for (const std::vector<WeightCase>& cases : groups) {
      std::vector<PackedLinearWeight> packed;
      std::vector<Tensor> biases;
      for (size_t i = 0; i < cases.size(); ++i) {
        packed.push_back(
            pack_linear_weight(make_weight(17 + 16 * static_cast<int64_t>(i), k, cases[i], 5 + i)));
        biases.push_back(testing::random_tensor({packed.back().out_features}, 9 + i));
      }
      const std::vector<const PackedLinearWeight*> weights = {&packed[0], &packed[1]};
      const std::vector<const Tensor*> bias_ptrs = {&biases[0], nullptr};
      for (int64_t m : {1, 7, 40}) {
        const Tensor x = testing::random_tensor({m, k}, 3);
        const std::vector<Tensor> ys = linear_dynamic_int8_shared_input(x, weights, bias_ptrs);
        ASSERT_EQ(ys.size(), weights.size());
        for (size_t i = 0; i < weights.size(); ++i) {
          EXPECT_TRUE(same_bits(ys[i], linear_dynamic_int8(x, *weights[i], bias_ptrs[i])))
              << isa_name(isa) << " m=" << m << " weight " << i;
        }
      }
    }
  }
  const PackedLinearWeight p =
      pack_linear_weight(make_weight(8, k, {DType::kInt8, ZeroPointDomain::kNone, 0}, 1));
  const Tensor x = testing::random_tensor({1, k}, 2);
  EXPECT_THROW(linear_dynamic_int8_shared_input(x, {}), ValueError);
  EXPECT_THROW(linear_dynamic_int8_shared_input(x, {&p}, {nullptr, nullptr}), ValueError);
  EXPECT_THROW(linear_dynamic_int8_shared_input(testing::random_tensor({1, k + 1}, 2), {&p}),
               ShapeError);
  EXPECT_THROW(linear_dynamic_int8_shared_input(x.to(DType::kFloat64), {&p}), DTypeError);
}

TEST(LinearDynamicInt8, RejectsNonFiniteActivations) {
  const PackedLinearWeight p =
      pack_linear_weight(make_weight(4, 64, {DType::kInt8, ZeroPointDomain::kNone, 0}, 1));
  Tensor x = testing::random_tensor({2, 64}, 1);
  x.data<float>()[70] = NAN;
  EXPECT_THROW(linear_dynamic_int8(x, p), ValueError);
}

}  // namespace
}  // namespace quantkit

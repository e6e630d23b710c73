#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>

#include "quantkit/core/float_convert.h"
#include "quantkit/core/packing.h"
#include "quantkit/quant/pytorch.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::random_tensor;

TEST(Granularity, ResolvesEveryKindToABlockShape) {
  const Shape s{4, 6, 10};
  EXPECT_EQ(Granularity::per_tensor().block_size_for(s), (Shape{4, 6, 10}));
  EXPECT_EQ(Granularity::per_axis(1).block_size_for(s), (Shape{4, 1, 10}));
  EXPECT_EQ(Granularity::per_axis(-1).block_size_for(s), (Shape{4, 6, 1}));
  EXPECT_EQ(Granularity::per_group(4).block_size_for(s), (Shape{1, 1, 4}));
  EXPECT_EQ(Granularity::per_token().block_size_for(s), (Shape{1, 1, 10}));
  EXPECT_EQ(Granularity::blocks({2, -1, 5}).block_size_for(s), (Shape{2, 6, 5}));
  EXPECT_THROW(Granularity::per_axis(3).block_size_for(s), ShapeError);
  EXPECT_THROW(Granularity::per_group(0), ValueError);
  EXPECT_THROW(Granularity::blocks({2, 2}).block_size_for(s), ShapeError);
}

TEST(Packing, SubByteRoundTripAndDocumentedOrder) {
  const std::vector<int32_t> v{-8, 7, 0, -1, 3};
  std::vector<uint8_t> packed(3);
  pack_integers(v, DType::kInt4, packed.data());
  EXPECT_EQ(packed[0], 0x78);  // element 0 in the low nibble
  EXPECT_EQ(packed[1], 0xF0);
  EXPECT_EQ(packed[2], 0x03);
  std::vector<int32_t> back(5);
  unpack_integers(packed.data(), DType::kInt4, back);
  EXPECT_EQ(back, v);
  const std::vector<int32_t> u2{0, 1, 2, 3, 3, 2};
  std::vector<uint8_t> p2(2);
  pack_integers(u2, DType::kUInt2, p2.data());
  EXPECT_EQ(p2[0], 0b11100100);
  std::vector<int32_t> b2(6);
  unpack_integers(p2.data(), DType::kUInt2, b2);
  EXPECT_EQ(b2, u2);
}

struct Case {
  DType dtype;
  MappingType mapping;
  ZeroPointDomain domain;
  int64_t group;  // 0 = per-channel
};

class AffineRoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(AffineRoundTrip, ErrorIsAtMostHalfAStepAndPartialGroupsWork) {
  const Case c = GetParam();
  const Shape shape{7, 45};  // 45 is not a multiple of any group size used: partial last group
  const Tensor x = random_tensor(shape, 7);
  AffineSpec spec = AffineSpec::for_dtype(
      c.dtype, c.group ? Granularity::per_group(c.group) : Granularity::per_axis(0));
  spec.mapping = c.mapping;
  spec.zero_point_domain = c.domain;
  const QParams qp = choose_qparams(x, spec);
  const QTensor q = quantize(x, spec, qp);
  EXPECT_EQ(q.shape(), shape);
  EXPECT_EQ(q.data().nbytes(), storage_bytes(c.dtype, x.numel()));
  const Tensor y = q.dequantize();
  const int64_t groups_per_row = c.group ? (45 + c.group - 1) / c.group : 1;
  EXPECT_EQ(qp.scale.numel(), 7 * groups_per_row);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t row = i / 45, col = i % 45;
    const int64_t b = row * groups_per_row + (c.group ? col / c.group : 0);
    const float s = qp.scale.data<float>()[b];
    // Inside the range nothing is clipped: round-to-nearest leaves at most half a step.
    EXPECT_LE(std::fabs(y.data<float>()[i] - x.data<float>()[i]), 0.5f * s * 1.0001f + 1e-7f)
        << "element " << i << " scale " << s;
  }
  // Requantizing the dequantized tensor with the same qparams is exact (idempotence).
  const QTensor q2 = quantize(y, spec, qp);
  const Tensor r1 = q.int_repr(), r2 = q2.int_repr();
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_EQ(r1.value_as_float(i), r2.value_as_float(i)) << i;
  // fake_quantize equals quantize + dequantize, and passes gradients everywhere inside the range.
  const FakeQuantized fq = fake_quantize(x, spec, qp);
  for (int64_t i = 0; i < x.numel(); ++i) {
    EXPECT_EQ(fq.output.data<float>()[i], y.data<float>()[i]) << i;
    // kSymmetric divides by (qmax - qmin) / 2 = 127.5 for int8, so the largest magnitude lands
    // half a step past qmax and is clipped (as PyTorch's symmetric observers do); nothing else is.
    const int64_t b = (i / 45) * groups_per_row + (c.group ? (i % 45) / c.group : 0);
    const float steps = std::fabs(x.data<float>()[i]) / qp.scale.data<float>()[b];
    if (c.mapping != MappingType::kSymmetric || steps < static_cast<float>(spec.quant_max)) {
      EXPECT_EQ(fq.mask.data<uint8_t>()[i], 1) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, AffineRoundTrip,
    ::testing::Values(
        Case{DType::kInt8, MappingType::kSymmetric, ZeroPointDomain::kNone, 0},
        Case{DType::kInt8, MappingType::kAsymmetric, ZeroPointDomain::kInt, 0},
        Case{DType::kUInt8, MappingType::kAsymmetric, ZeroPointDomain::kInt, 16},
        Case{DType::kInt4, MappingType::kSymmetric, ZeroPointDomain::kNone, 32},
        Case{DType::kInt4, MappingType::kSymmetricNoClippingError, ZeroPointDomain::kNone, 8},
        Case{DType::kUInt4, MappingType::kAsymmetric, ZeroPointDomain::kInt, 32},
        Case{DType::kUInt4, MappingType::kAsymmetric, ZeroPointDomain::kFloat, 16},
        Case{DType::kInt2, MappingType::kSymmetricNoClippingError, ZeroPointDomain::kNone, 16},
        Case{DType::kUInt2, MappingType::kAsymmetric, ZeroPointDomain::kInt, 8},
        Case{DType::kInt32, MappingType::kSymmetric, ZeroPointDomain::kInt, 0}));

TEST(Affine, Float8PerChannelClampsAndRoundTrips) {
  const Tensor x = random_tensor({5, 33}, 3, 10.0f);
  for (DType d : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    const AffineSpec spec = AffineSpec::for_dtype(d, Granularity::per_axis(0));
    const QParams qp = choose_qparams(x, spec);
    const QTensor q = quantize(x, spec, qp);
    const Tensor y = q.dequantize();
    const double sqnr = sqnr_db(x, y);
    EXPECT_GT(sqnr, d == DType::kFloat8E4M3 ? 25.0 : 18.0) << dtype_name(d);
    // A value far beyond the range saturates to the largest finite code instead of NaN/inf.
    const Tensor big = Tensor::from_floats({1e9f, -1e9f}, {1, 2});
    const QTensor qb = quantize(big, AffineSpec::for_dtype(d),
                                QParams{Tensor::from_floats({1.0f}, {1, 1}), Tensor()});
    const Tensor yb = qb.dequantize();
    EXPECT_EQ(yb.data<float>()[0], d == DType::kFloat8E4M3 ? 448.0f : 57344.0f);
    EXPECT_EQ(yb.data<float>()[1], d == DType::kFloat8E4M3 ? -448.0f : -57344.0f);
  }
}

TEST(Affine, Int8PerChannelSqnrIsHigh) {
  const Tensor w = random_tensor({64, 256}, 11);
  const QTensor q = quantize(w, AffineSpec::for_dtype(DType::kInt8, Granularity::per_axis(0)));
  EXPECT_GT(sqnr_db(w, q.dequantize()), 38.0);
  const QTensor q4 = quantize(w, AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(32)));
  EXPECT_GT(sqnr_db(w, q4.dequantize()), 17.0);
}

TEST(Affine, RejectsBadInputWithClearErrors) {
  const Tensor x = random_tensor({4, 8}, 1);
  AffineSpec spec = AffineSpec::for_dtype(DType::kInt8);
  spec.quant_min = 5;
  spec.quant_max = 5;
  EXPECT_THROW(choose_qparams(x, spec), ValueError);
  spec = AffineSpec::for_dtype(DType::kInt4);
  spec.quant_max = 9;
  EXPECT_THROW(spec.validate(), ValueError);
  EXPECT_THROW(AffineSpec::for_dtype(DType::kFloat32), DTypeError);
  // NaN and Inf have no usable range.
  Tensor bad = x.clone();
  bad.data<float>()[3] = NAN;
  try {
    choose_qparams(bad, AffineSpec::for_dtype(DType::kInt8));
    FAIL() << "NaN accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
  bad.data<float>()[3] = INFINITY;
  EXPECT_THROW(choose_qparams(bad, AffineSpec::for_dtype(DType::kInt8)), ValueError);
  // Scale shape must match the block grid; scales must be positive and finite.
  const AffineSpec pc = AffineSpec::for_dtype(DType::kInt8, Granularity::per_axis(0));
  QParams qp = choose_qparams(x, pc);
  EXPECT_THROW(quantize(x, pc, QParams{Tensor::from_floats({1.0f, 1.0f}, {2, 1}), qp.zero_point}),
               ShapeError);
  qp.scale.data<float>()[1] = 0.0f;
  EXPECT_THROW(quantize(x, pc, qp), ValueError);
  qp.scale.data<float>()[1] = NAN;
  EXPECT_THROW(quantize(x, pc, qp), ValueError);
  EXPECT_THROW(quantize(x.to(DType::kFloat16), AffineSpec::for_dtype(DType::kInt8)), DTypeError);
  EXPECT_THROW(quantize_per_tensor(x, -1.0, 0, DType::kUInt8), ValueError);
  EXPECT_THROW(quantize_per_tensor(x, 0.1, 300, DType::kUInt8), ValueError);
  EXPECT_THROW(quantize_per_tensor(x, 0.1, 0, DType::kInt4), DTypeError);
}

TEST(Affine, NanQuantizesToQminAndInfSaturates) {
  const Tensor x = Tensor::from_floats({NAN, INFINITY, -INFINITY, 1.0f}, {4});
  const QTensor q = quantize_per_tensor(x, 0.5, 10, DType::kUInt8);
  const Tensor r = q.int_repr();
  EXPECT_EQ(r.data<uint8_t>()[0], 0);
  EXPECT_EQ(r.data<uint8_t>()[1], 255);
  EXPECT_EQ(r.data<uint8_t>()[2], 0);
  EXPECT_EQ(r.data<uint8_t>()[3], 12);
}

TEST(Affine, EmptyAndScalarTensors) {
  const Tensor empty = Tensor::empty({0, 8}, DType::kFloat32);
  const QTensor q = quantize_per_tensor(empty, 0.1, 0, DType::kInt8);
  EXPECT_EQ(q.dequantize().numel(), 0);
  const Tensor scalar = Tensor::from_floats({2.5f}, {});
  EXPECT_EQ(quantize_per_tensor(scalar, 1.0, 0, DType::kInt8).int_repr().data<int8_t>()[0], 2);
}

TEST(QTensor, SummaryAndValidation) {
  const Tensor w = random_tensor({16, 40}, 5);
  const QTensor q = quantize(w, AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(32)));
  EXPECT_NE(q.summary().find("int4 sym g32 (partial last group)"), std::string::npos)
      << q.summary();
  EXPECT_THROW(QTensor(q.data(), Tensor::from_floats({1.0f}, {1}), Tensor(), q.scheme()),
               ShapeError);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

// Regression: the float zero point of a signed range must map min to qmin (zp = qmin - min / s);
// -min / s is only right for PyTorch's unsigned float-qparams range.
TEST(Affine, FloatZeroPointOnSignedRangesErrsAtMostHalfAStep) {
  for (DType dtype : {DType::kInt4, DType::kInt2, DType::kInt8}) {
    const Tensor w = testing::random_tensor({16, 96}, 3, 0.1f);
    AffineSpec spec = AffineSpec::for_dtype(dtype, Granularity::per_group(32));
    spec.mapping = MappingType::kAsymmetric;
    spec.zero_point_domain = ZeroPointDomain::kFloat;
    const QParams qp = choose_qparams(w, spec);
    const Tensor back = quantize(w, spec, qp).dequantize();
    for (int64_t i = 0; i < w.numel(); ++i) {
      const float s = qp.scale.data<float>()[i / 32];
      ASSERT_LE(std::fabs(back.data<float>()[i] - w.data<float>()[i]), 0.5f * s * 1.0001f)
          << dtype_name(dtype) << " @" << i;
    }
  }
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

// The clipping search never does worse than min/max per block, and helps on heavy tails.
TEST(Affine, MseSearchBeatsMinMaxOnHeavyTails) {
  Tensor w = testing::random_tensor({32, 128}, 9, 0.1f);
  for (int64_t i = 0; i < w.numel(); i += 37) w.data<float>()[i] *= 8.0f;  // outliers
  for (bool symmetric : {true, false}) {
    AffineSpec spec = AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(32));
    spec.mapping = symmetric ? MappingType::kSymmetric : MappingType::kAsymmetric;
    spec.zero_point_domain = symmetric ? ZeroPointDomain::kNone : ZeroPointDomain::kFloat;
    const double minmax = sqnr_db(w, quantize(w, spec).dequantize());
    const double mse = sqnr_db(w, quantize(w, spec, choose_qparams_mse(w, spec)).dequantize());
    EXPECT_GT(mse, minmax + (symmetric ? 0.3 : 0.05)) << (symmetric ? "sym" : "asym");
    EXPECT_EQ(sqnr_db(w, quantize(w, spec, choose_qparams_mse(w, spec, 0)).dequantize()), minmax);
  }
}

/// Squared round-trip error of every group of 32 along the rows of w.
std::vector<double> group_errors(const Tensor& w, const Tensor& back) {
  std::vector<double> err(static_cast<size_t>(w.numel() / 32), 0.0);
  for (int64_t i = 0; i < w.numel(); ++i) {
    const double d = static_cast<double>(w.data<float>()[i]) - back.data<float>()[i];
    err[static_cast<size_t>(i / 32)] += d * d;
  }
  return err;
}

// Block by block, for every mapping and zero-point domain, with float16 and float32 scales:
// the search (grid, separate ends, least-squares refit) is never worse than min/max, keeps
// scales float16-exact when asked, and keeps integer zero points inside the code range.
TEST(Affine, MseSearchNeverWorseThanMinMaxPerBlock) {
  Tensor w = testing::random_tensor({24, 160}, 4, 0.05f);
  for (int64_t i = 0; i < w.numel(); i += 29) w.data<float>()[i] += 0.2f;  // skewed blocks
  struct Scheme {
    DType dtype;
    MappingType mapping;
    ZeroPointDomain domain;
  };
  for (const Scheme c :
       {Scheme{DType::kInt4, MappingType::kSymmetric, ZeroPointDomain::kNone},
        Scheme{DType::kInt4, MappingType::kAsymmetric, ZeroPointDomain::kInt},
        Scheme{DType::kInt4, MappingType::kAsymmetric, ZeroPointDomain::kFloat},
        Scheme{DType::kUInt4, MappingType::kAsymmetric, ZeroPointDomain::kInt},
        Scheme{DType::kInt2, MappingType::kAsymmetric, ZeroPointDomain::kInt},
        Scheme{DType::kInt8, MappingType::kSymmetric, ZeroPointDomain::kInt},
        Scheme{DType::kFloat8E4M3, MappingType::kSymmetric, ZeroPointDomain::kNone}}) {
    for (DType scale_dtype : {DType::kFloat32, DType::kFloat16}) {
      AffineSpec spec = AffineSpec::for_dtype(c.dtype, Granularity::per_group(32));
      spec.mapping = c.mapping;
      spec.zero_point_domain = c.domain;
      spec.scale_dtype = scale_dtype;
      const QParams qp = choose_qparams_mse(w, spec);
      const std::vector<double> searched = group_errors(w, quantize(w, spec, qp).dequantize());
      const std::vector<double> minmax = group_errors(w, quantize(w, spec).dequantize());
      double total_searched = 0, total_minmax = 0;
      for (size_t b = 0; b < minmax.size(); ++b) {
        ASSERT_LE(searched[b], minmax[b] * (1 + 1e-9)) << dtype_name(c.dtype) << " block " << b;
        total_searched += searched[b];
        total_minmax += minmax[b];
      }
      // float8's error is relative to each value, so a smaller scale buys little there.
      if (!is_float8(c.dtype)) {
        EXPECT_LT(total_searched, total_minmax * 0.97) << dtype_name(c.dtype);
      }
      for (int64_t b = 0; b < qp.scale.numel(); ++b) {
        const float s = qp.scale.data<float>()[b];
        if (scale_dtype == DType::kFloat16) {
          ASSERT_EQ(s, f16_bits_to_float(float_to_f16_bits(s)));
        }
        if (c.domain != ZeroPointDomain::kInt) continue;
        const int32_t z = qp.zero_point.data<int32_t>()[b];
        ASSERT_GE(z, spec.effective_min());
        ASSERT_LE(z, spec.effective_max());
      }
    }
  }
}

// A block that spans several rows (per-channel along axis 1 of a [K, N] layout) is searched
// as one block: the result matches the same weights transposed into per-row blocks.
TEST(Affine, MseSearchHandlesBlocksAcrossRows) {
  const Tensor w = testing::random_tensor({40, 12}, 5, 0.1f);
  Tensor wt = Tensor::empty({12, 40}, DType::kFloat32);
  for (int64_t r = 0; r < 40; ++r)
    for (int64_t c = 0; c < 12; ++c) wt.data<float>()[c * 40 + r] = w.data<float>()[r * 12 + c];
  AffineSpec spec = AffineSpec::for_dtype(DType::kInt4, Granularity::per_axis(1));
  spec.mapping = MappingType::kAsymmetric;
  spec.zero_point_domain = ZeroPointDomain::kInt;
  AffineSpec spec_t = spec;
  spec_t.granularity = Granularity::per_axis(0);
  const QParams a = choose_qparams_mse(w, spec), b = choose_qparams_mse(wt, spec_t);
  ASSERT_EQ(a.scale.numel(), 12);
  for (int64_t c = 0; c < 12; ++c) {
    EXPECT_EQ(a.scale.data<float>()[c], b.scale.data<float>()[c]);
    EXPECT_EQ(a.zero_point.data<int32_t>()[c], b.zero_point.data<int32_t>()[c]);
  }
}

}  // namespace
}  // namespace quantkit

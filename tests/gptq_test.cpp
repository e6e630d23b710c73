// GPTQ: the algorithm against round-to-nearest (its special case) and on correlated inputs.
#include "quantkit/quant/gptq.h"

#include <gtest/gtest.h>

#include <cblas.h>

#include <cmath>
#include <cstring>

#include "quantkit/workflows/quantize.h"
#include "rounding_test_util.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::scaled_identity;
using testing::weight_spec;

/// sum over rows of ||x (W - Wq)^T||^2.
double output_error(const Tensor& x, const Tensor& w, const Tensor& wq) {
  const int64_t t = x.size(0), k = x.size(1), n = w.size(0);
  std::vector<float> diff(static_cast<size_t>(n * k)), y(static_cast<size_t>(t * n));
  for (int64_t i = 0; i < n * k; ++i) diff[i] = w.data<float>()[i] - wq.data<float>()[i];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(t), static_cast<int>(n),
              static_cast<int>(k), 1.0f, x.data<float>(), static_cast<int>(k), diff.data(),
              static_cast<int>(k), 0.0f, y.data(), static_cast<int>(n));
  double e = 0.0;
  for (float v : y) e += static_cast<double>(v) * v;
  return e;
}

TEST(Gptq, DiagonalHessianIsRoundToNearest) {
  // With H = c I no error can be spread (the inverse factor is diagonal), so every code and every
  // scale equals plain quantization.
  const Tensor w = testing::random_tensor({24, 100}, 1, 0.05f);
  for (auto [dtype, group, sym] : {std::tuple{DType::kInt4, int64_t{32}, true},
                                   {DType::kInt4, 0, false},
                                   {DType::kInt8, 0, true},
                                   {DType::kInt2, 32, false}}) {
    const AffineSpec spec = weight_spec(dtype, group, sym);
    const QTensor want = quantize(w, spec);
    GptqOptions act_order;
    act_order.act_order = true;  // equal diagonal: the order stays, and so do the codes
    const QTensor got = gptq_quantize(w, scaled_identity(100, 3.0), spec,
                                      dtype == DType::kInt4 ? act_order : GptqOptions{});
    EXPECT_EQ(got.scheme().block_size, want.scheme().block_size);
    const Tensor a = got.int_repr(), b = want.int_repr();
    ASSERT_EQ(a.nbytes(), b.nbytes());
    EXPECT_EQ(0, std::memcmp(a.bytes(), b.bytes(), a.nbytes())) << want.summary();
    const Tensor da = got.dequantize(), db = want.dequantize();
    for (int64_t i = 0; i < da.numel(); ++i)
      ASSERT_EQ(da.data<float>()[i], db.data<float>()[i]) << want.summary() << " at " << i;
  }
}

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputs) {
  // Inputs with strongly correlated features (x = z A): the regime GPTQ is built for.
  const int64_t t = 512, k = 100, n = 48;
  const Tensor z = testing::random_tensor({t, k}, 2);
  const Tensor mix = testing::random_tensor({k, k}, 3, 0.3f);
  Tensor x = Tensor::empty({t, k}, DType::kFloat32);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, k, k, 1.0f, z.data<float>(), k,
              mix.data<float>(), k, 0.0f, x.data<float>(), k);
  HessianAccumulator acc(k);
  acc.add(x.data<float>(), t / 2);  // in two calls, as calibration batches arrive
  acc.add(x.data<float>() + (t / 2) * k, t - t / 2);
  EXPECT_EQ(acc.samples(), t);
  const Tensor w = testing::random_tensor({n, k}, 4, 0.05f);
  for (auto [dtype, group, sym] : {std::tuple{DType::kInt4, int64_t{32}, true},
                                   {DType::kInt4, 32, false},
                                   {DType::kInt4, 0, true},
                                   {DType::kInt8, 0, true},
                                   {DType::kInt2, 32, false}}) {
    const AffineSpec spec = weight_spec(dtype, group, sym);
    const double rtn = output_error(x, w, quantize(w, spec).dequantize());
    for (int64_t block : {int64_t{128}, int64_t{16}}) {  // blocking changes rounding only
      for (bool act_order : {false, true}) {
        GptqOptions o;
        o.block_size = block;
        o.act_order = act_order;
        const QTensor q = gptq_quantize(w, acc.hessian(), spec, o);
        const double gptq = output_error(x, w, q.dequantize());
        std::printf("%s: output error GPTQ / RTN = %.3f (block %lld%s)\n", q.summary().c_str(),
                    gptq / rtn, static_cast<long long>(block), act_order ? ", act order" : "");
        EXPECT_LT(gptq, 0.8 * rtn) << q.summary();
      }
    }
  }
}

TEST(Gptq, DeadInputsAndBadArguments) {
  const int64_t k = 64;
  Tensor x = testing::random_tensor({200, k}, 5);
  for (int64_t r = 0; r < 200; ++r) x.data<float>()[r * k + 7] = 0.0f;  // feature 7 never fires
  HessianAccumulator acc(k);
  acc.add(x.data<float>(), 200);
  const Tensor w = testing::random_tensor({8, k}, 6, 0.05f);
  const AffineSpec spec = weight_spec(DType::kInt4, 32, true);
  const Tensor dq = gptq_quantize(w, acc.hessian(), spec).dequantize();
  for (int64_t r = 0; r < 8; ++r) EXPECT_EQ(dq.data<float>()[r * k + 7], 0.0f);

  EXPECT_THROW(gptq_quantize(w, scaled_identity(k - 1, 1.0), spec), ShapeError);
  EXPECT_THROW(gptq_quantize(w, scaled_identity(k, 1.0), weight_spec(DType::kFloat8E4M3, 0, true)),
               DTypeError);
  EXPECT_THROW(gptq_quantize(w, scaled_identity(k, -1.0), spec), ValueError);  // not PD
  EXPECT_THROW(HessianAccumulator(k).hessian(), ValueError);                   // no samples
  x.data<float>()[3] = std::nanf("");
  EXPECT_THROW(acc.add(x.data<float>(), 1), ValueError);
}

}  // namespace
}  // namespace quantkit

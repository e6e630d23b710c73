// AWQ: the scale search against round-to-nearest (its alpha = 0 case), its error measure against
// the real outputs, the QLinear that divides its input, and the workflow on a module tree.
#include "quantkit/quant/awq.h"

#include <gtest/gtest.h>

#include <cblas.h>

#include <cmath>
#include <cstring>

#include "quantkit/kernels/linear.h"
#include "quantkit/nn/quantized.h"
#include "quantkit/workflows/gptq_awq.h"
#include "rounding_test_util.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::scaled_identity;
using testing::weight_spec;

/// Inputs whose first `salient` features are `gain` times louder than the rest, mixed a little so
/// that features correlate (what real activations look like).
Tensor activations(int64_t t, int64_t k, int64_t salient, float gain, uint32_t seed) {
  const Tensor z = testing::random_tensor({t, k}, seed);
  const Tensor mix = testing::random_tensor({k, k}, seed + 1, 0.1f);
  Tensor x = Tensor::empty({t, k}, DType::kFloat32);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(t), static_cast<int>(k),
              static_cast<int>(k), 1.0f, z.data<float>(), static_cast<int>(k), mix.data<float>(),
              static_cast<int>(k), 0.0f, x.data<float>(), static_cast<int>(k));
  for (int64_t r = 0; r < t; ++r) {
    for (int64_t c = 0; c < k; ++c) x.data<float>()[r * k + c] += z.data<float>()[r * k + c];
    for (int64_t c = 0; c < salient; ++c) x.data<float>()[r * k + c * 7 % k] *= gain;
  }
  return x;
}

/// 2/T * sum_t ||x_t W^T - (x_t * input_scale) dequant(q)^T||^2, from the inputs themselves.
double measured_error(const Tensor& x, const Tensor& w, const AwqResult& r) {
  const int64_t t = x.size(0), k = x.size(1), n = w.size(0);
  const Tensor dq = r.weight.dequantize();
  double e = 0.0;
  for (int64_t row = 0; row < t; ++row) {
    for (int64_t o = 0; o < n; ++o) {
      double exact = 0.0, approx = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        const double xv = x.data<float>()[row * k + c];
        exact += xv * w.data<float>()[o * k + c];
        approx += xv * r.input_scale.data<float>()[c] * dq.data<float>()[o * k + c];
      }
      e += (exact - approx) * (exact - approx);
    }
  }
  return 2.0 * e / static_cast<double>(t);
}

TEST(Awq, EqualChannelsAreRoundToNearest) {
  // Every channel equally loud: s is the same for all, normalised to exactly 1, so the weight is
  // plain quantization whatever alpha the search settles on.
  const int64_t k = 96;
  const Tensor w = testing::random_tensor({16, k}, 1, 0.05f);
  const std::vector<double> h = scaled_identity(k, 2.0);
  const std::vector<double> mean_abs(static_cast<size_t>(k), 0.8);
  for (const bool sym : {true, false}) {
    const AffineSpec spec = weight_spec(DType::kInt4, 32, sym);
    const AwqResult r = awq_quantize(w, h, mean_abs, spec);
    const Tensor a = r.weight.int_repr(), b = quantize(w, spec).int_repr();
    ASSERT_EQ(a.nbytes(), b.nbytes());
    EXPECT_EQ(0, std::memcmp(a.bytes(), b.bytes(), a.nbytes()));
    for (int64_t c = 0; c < k; ++c) EXPECT_EQ(r.input_scale.data<float>()[c], 1.0f);
    EXPECT_EQ(r.error, r.error_rtn);
  }
}

TEST(Awq, SearchBeatsRoundToNearestOnSalientChannels) {
  const int64_t t = 400, k = 128, n = 40;
  const Tensor x = activations(t, k, 6, 12.0f, 2);
  HessianAccumulator stats(k);
  stats.add(x.data<float>(), t);
  const Tensor w = testing::random_tensor({n, k}, 4, 0.05f);
  for (auto [group, sym] :
       {std::pair{int64_t{32}, false}, {int64_t{32}, true}, {int64_t{0}, true}}) {
    const AffineSpec spec = weight_spec(DType::kInt4, group, sym);
    const std::string label = "group " + std::to_string(group) + (sym ? " sym" : " asym");
    const AwqResult r = awq_quantize(w, stats.hessian(), stats.mean_abs(), spec);
    EXPECT_GT(r.alpha, 0.0) << label;
    EXPECT_LT(r.error, 0.8 * r.error_rtn) << label;
    // The search's measure, tr(dW H dW^T), is the output error on the calibration rows.
    EXPECT_NEAR(measured_error(x, w, r), r.error, 1e-3 * r.error) << label;

    AwqOptions with_gptq;
    with_gptq.gptq_rounding = true;
    const AwqResult g = awq_quantize(w, stats.hessian(), stats.mean_abs(), spec, with_gptq);
    EXPECT_EQ(g.alpha, r.alpha);
    EXPECT_LT(g.error, r.error) << label;
    EXPECT_NEAR(measured_error(x, w, g), g.error, 1e-3 * g.error);
  }
}

TEST(Awq, QLinearDividesItsInput) {
  const int64_t t = 64, k = 80, n = 24;  // K = 80: a partial last group of 16
  const Tensor x = activations(t, k, 4, 8.0f, 6);
  HessianAccumulator stats(k);
  stats.add(x.data<float>(), t);
  const Tensor w = testing::random_tensor({n, k}, 8, 0.05f);
  const AwqResult r =
      awq_quantize(w, stats.hessian(), stats.mean_abs(), weight_spec(DType::kInt4, 32, false));
  WeightOnlyLinear q(r.weight, Tensor(), ActivationQuant::kNone);
  q.input_scale = r.input_scale;
  Tensor scaled = Tensor::empty({t, k}, DType::kFloat32);
  for (int64_t i = 0; i < t * k; ++i)
    scaled.data<float>()[i] = x.data<float>()[i] * r.input_scale.data<float>()[i % k];
  const Tensor want = linear_weight_only(scaled, q.packed);
  const Tensor got = q.forward(x).as_float("test");
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < got.numel(); ++i) ASSERT_EQ(got.data<float>()[i], want.data<float>()[i]);

  q.input_scale = Tensor::from_floats({1.0f, 2.0f}, {2});  // an inconsistent saved model
  EXPECT_THROW(q.forward(x), ShapeError);
}

TEST(Awq, WorkflowQuantizesEveryObservedLinear) {
  auto first = std::make_shared<Linear>(48, 64), second = std::make_shared<Linear>(64, 16);
  first->weight = testing::random_tensor({64, 48}, 9, 0.1f);
  second->weight = testing::random_tensor({16, 64}, 10, 0.1f);
  Sequential model({first, second});
  WeightOnlyConfig config;
  config.weights = DType::kInt4;
  config.group_size = 16;
  config.symmetric = false;
  prepare_awq(model, {"0", "1"}, config);
  EXPECT_EQ(model.find("0").type_name(), "HessianObservedLinear");
  EXPECT_THROW(freeze(model), ValueError);  // no calibration rows yet: names the module
  const Tensor x = activations(100, 48, 3, 10.0f, 11);
  const Tensor float_out = model.forward(x).as_float("test");
  freeze(model);
  for (const char* name : {"0", "1"}) {
    const auto& q = static_cast<WeightOnlyLinear&>(model.find(name));
    EXPECT_EQ(q.type_name(), "QLinear");
    ASSERT_TRUE(q.input_scale.defined()) << name;
  }
  EXPECT_EQ(model.state_dict().count("0.input_scale"), 1u);  // saved with the model
  const Tensor out = model.forward(x).as_float("test");
  EXPECT_GT(sqnr_db(float_out, out), 15.0);

  Sequential fp8({std::make_shared<Linear>(8, 8)});
  config.weights = DType::kFloat8E4M3;
  config.symmetric = true;
  config.group_size = 0;
  EXPECT_THROW(prepare_awq(fp8, {"0"}, config), ValueError);
}

TEST(Awq, BadArguments) {
  const int64_t k = 64;
  const Tensor w = testing::random_tensor({8, k}, 12, 0.05f);
  const std::vector<double> h = scaled_identity(k, 1.0);
  const std::vector<double> mean_abs(static_cast<size_t>(k), 1.0);
  const AffineSpec spec = weight_spec(DType::kInt4, 32, true);
  EXPECT_THROW(awq_quantize(w, h, std::vector<double>(k - 1, 1.0), spec), ShapeError);
  EXPECT_THROW(awq_quantize(w, std::vector<double>(10, 1.0), mean_abs, spec), ShapeError);
  std::vector<double> nan_mean = mean_abs;
  nan_mean[5] = std::nan("");
  EXPECT_THROW(awq_quantize(w, h, nan_mean, spec), ValueError);
  EXPECT_THROW(awq_quantize(w, h, mean_abs, weight_spec(DType::kFloat8E4M3, 0, true)), DTypeError);
  AwqOptions no_grid;
  no_grid.grid = 0;
  EXPECT_THROW(awq_quantize(w, h, mean_abs, spec, no_grid), ValueError);
  // All-zero statistics (a layer that never fired) still quantize: s = 1 everywhere.
  const AwqResult r = awq_quantize(w, h, std::vector<double>(k, 0.0), spec);
  EXPECT_EQ(r.input_scale.data<float>()[0], 1.0f);
}

}  // namespace
}  // namespace quantkit

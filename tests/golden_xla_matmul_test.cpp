// torch_xla quantized_matmul semantics (W8A16/W4A16, per-channel/blockwise, sym/asym) against
// ../shared/golden/weight_only_matmul.json: |y - y_ref_f64| <= 1e-5 * max|y_ref_f64|.
#include <gtest/gtest.h>

#include <cmath>

#include "golden_support.h"
#include "quantkit/nn/quantized_linear.h"

namespace quantkit::testing {
namespace {

TEST(golden, WeightOnlyMatmul) {
  const json g = load_golden("weight_only_matmul.json");
  ASSERT_TRUE(g.is_object());
  int checked = 0;
  double worst = 0.0;
  for (const json& c : g["cases"]) {
    const Tensor x = golden_tensor(c["x"]);
    const Tensor w = golden_tensor(c["w_int"]);
    const Tensor scale = golden_tensor(c["scale"]);
    const Tensor zp = c["zero_point"].is_null() ? Tensor() : golden_tensor(c["zero_point"]);
    const Tensor want = golden_tensor(c["y_ref_f64"]);
    const Tensor y = quantized_matmul(x, w, scale, zp, c["block_size"], c["int4_weight"]);
    ASSERT_EQ(y.shape(), want.shape()) << c["id"];
    double max_ref = 0.0;
    for (int64_t i = 0; i < want.numel(); ++i)
      max_ref = std::max(max_ref, std::fabs(want.data<double>()[i]));
    const double tol = 1e-5 * std::max(max_ref, 1e-30);
    for (int64_t i = 0; i < want.numel(); ++i) {
      const double err = std::fabs(y.data<float>()[i] - want.data<double>()[i]);
      ASSERT_LE(err, tol) << c["id"] << " " << c["name"] << " element " << i;
      worst = std::max(worst, err / std::max(max_ref, 1e-30));
    }
    // The module gives the same result as the functional op.
    QuantizedLinear layer(c["in_features"], c["out_features"], false, c["block_size"],
                          c["int4_weight"]);
    layer.load_quantized_weight(w, scale, zp);
    const Tensor y2 = layer.forward(x);
    for (int64_t i = 0; i < y.numel(); ++i)
      ASSERT_EQ(y.data<float>()[i], y2.data<float>()[i]) << c["id"];
    ++checked;
  }
  EXPECT_EQ(checked, g["num_cases"].get<int>());
  std::printf(
      "[golden] weight_only_matmul.json: checked %d cases, worst |y - y_ref| / max|y_ref| = %.3g "
      "(tolerance 1e-5)\n",
      checked, worst);
}

TEST(QuantizedMatmul, RejectsBadInput) {
  const Tensor x = Tensor::zeros({2, 8}, DType::kFloat32);
  const Tensor w = Tensor::zeros({4, 8}, DType::kInt8);
  const Tensor s = Tensor::from_floats({1, 1, 1, 1}, {4});
  EXPECT_THROW(quantized_matmul(x, w, Tensor::from_floats({1, 1}, {2})),
               ShapeError);                                                 // scale shape
  EXPECT_THROW(quantized_matmul(x, w.to(DType::kFloat32), s), DTypeError);  // float weight
  EXPECT_THROW(quantized_matmul(x.to(DType::kFloat16), w, s), DTypeError);  // x dtype
  EXPECT_THROW(quantized_matmul(Tensor::zeros({2, 7}, DType::kFloat32), w, s),
               ShapeError);  // K mismatch
  EXPECT_THROW(quantized_matmul(x, Tensor::zeros({2, 3, 4}, DType::kInt8),
                                Tensor::zeros({2, 4}, DType::kFloat32), Tensor(), 4),
               ShapeError);  // block layout does not match block_size
  Tensor big = Tensor::zeros({4, 8}, DType::kInt8);
  big.data<int8_t>()[3] = 9;
  EXPECT_THROW(quantized_matmul(x, big, s, Tensor(), -1, /*int4_weight=*/true),
               ValueError);  // not int4
  EXPECT_NO_THROW(quantized_matmul(x, w, s));
  EXPECT_THROW(QuantizedLinear(10, 4, false, 4), ValueError);  // K not divisible by the block
  QuantizedLinear layer(8, 4);
  EXPECT_THROW(layer.forward(x), ValueError);  // weights not loaded
}

TEST(QuantizedMatmul, W8A8PerRowActivationsStayClose) {
  const Tensor x =
      Tensor::from_floats({0.5f, -1.0f, 0.25f, 2.0f, 1.0f, 0.0f, -0.5f, 0.75f}, {1, 8});
  Tensor w = Tensor::empty({3, 8}, DType::kInt8);
  for (int64_t i = 0; i < w.numel(); ++i)
    w.data<int8_t>()[i] = static_cast<int8_t>((i * 37) % 255 - 127);
  const Tensor s = Tensor::from_floats({0.01f, 0.02f, 0.03f}, {3});
  const Tensor y16 = quantized_matmul(x, w, s);
  const Tensor y8 = quantized_matmul(x, w, s, Tensor(), -1, false, true);
  for (int64_t i = 0; i < 3; ++i)
    EXPECT_NEAR(y8.data<float>()[i], y16.data<float>()[i],
                0.02f * (1 + std::fabs(y16.data<float>()[i])));
  EXPECT_THROW(
      quantized_matmul(x, w.reshape({1, 8, 3}), s.reshape({1, 3}), Tensor(), 8, false, true),
      ValueError);
}

}  // namespace
}  // namespace quantkit::testing

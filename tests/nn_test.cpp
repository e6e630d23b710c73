// Modules and the integer kernels against naive references: float conv (1d/2d/3d, stride,
// padding, dilation, groups), static int8 linear/conv against the documented integer formula,
// the panel kernel against the reference GEMM, state dicts, printing and the error messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "quantkit/workflows/quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::random_tensor;

// out[n, o, pos] = bias[o] + sum W[o, c, k...] in[n, g*cpg + c, pos*stride - pad + k*dil], in
// double.
Tensor naive_conv(const Tensor& x, const Conv& conv) {
  const ConvOptions& o = conv.options;
  const int dims = conv.dims;
  std::vector<int64_t> in(x.shape().begin() + 2, x.shape().end());
  const std::vector<int64_t> out = o.output_size(in);
  Shape out_shape{x.size(0), o.out_channels};
  out_shape.insert(out_shape.end(), out.begin(), out.end());
  Tensor y = Tensor::empty(out_shape, DType::kFloat32);
  auto pad3 = [dims](const std::vector<int64_t>& v, int64_t fill) {
    std::vector<int64_t> r(3, fill);
    for (int d = 0; d < dims; ++d) r[static_cast<size_t>(3 - dims + d)] = v[static_cast<size_t>(d)];
    return r;
  };
  const auto I = pad3(in, 1), O = pad3(out, 1), K = pad3(o.kernel_size, 1), S = pad3(o.stride, 1),
             P = pad3(o.padding, 0), D = pad3(o.dilation, 1);
  const int64_t cpg = o.in_channels / o.groups, opg = o.out_channels / o.groups;
  int64_t idx = 0;
  for (int64_t n = 0; n < x.size(0); ++n)
    for (int64_t oc = 0; oc < o.out_channels; ++oc)
      for (int64_t a = 0; a < O[0]; ++a)
        for (int64_t b = 0; b < O[1]; ++b)
          for (int64_t c = 0; c < O[2]; ++c) {
            double sum = conv.bias.defined() ? conv.bias.data<float>()[oc] : 0.0;
            const int64_t grp = oc / opg;
            for (int64_t ic = 0; ic < cpg; ++ic)
              for (int64_t ka = 0; ka < K[0]; ++ka)
                for (int64_t kb = 0; kb < K[1]; ++kb)
                  for (int64_t kc = 0; kc < K[2]; ++kc) {
                    const int64_t ia = a * S[0] - P[0] + ka * D[0];
                    const int64_t ib = b * S[1] - P[1] + kb * D[1];
                    const int64_t ix = c * S[2] - P[2] + kc * D[2];
                    if (ia < 0 || ia >= I[0] || ib < 0 || ib >= I[1] || ix < 0 || ix >= I[2])
                      continue;
                    const float xv =
                        x.data<float>()[(((n * o.in_channels + grp * cpg + ic) * I[0] + ia) * I[1] +
                                         ib) *
                                            I[2] +
                                        ix];
                    const float wv =
                        conv.weight
                            .data<float>()[(((oc * cpg + ic) * K[0] + ka) * K[1] + kb) * K[2] + kc];
                    sum += static_cast<double>(xv) * wv;
                  }
            y.data<float>()[idx++] = static_cast<float>(sum);
          }
  return y;
}

struct ConvCase {
  int dims;
  ConvOptions options;
  Shape input;
};

TEST(nn, conv_matches_naive_reference) {
  const std::vector<ConvCase> cases = {
      {1, {3, 5, {3}, {1}, {1}, {}, 1, true}, {2, 3, 11}},
      {1, {4, 6, {5}, {2}, {2}, {2}, 2, false}, {1, 4, 17}},
      {2, {3, 8, {3}, {1}, {1}, {}, 1, true}, {2, 3, 9, 7}},
      {2, {4, 4, {3, 2}, {2, 1}, {0, 1}, {1, 2}, 4, true}, {3, 4, 8, 9}},
      {2, {6, 9, {1}, {1}, {0}, {}, 3, true}, {1, 6, 5, 5}},
      {3, {2, 3, {2, 3, 3}, {1, 2, 1}, {1, 0, 1}, {}, 1, true}, {1, 2, 4, 6, 5}},
  };
  uint32_t seed = 1;
  for (const ConvCase& c : cases) {
    Conv conv(c.dims, c.options);
    conv.weight = random_tensor(conv.weight.shape(), seed++, 0.3f);
    if (conv.bias.defined()) conv.bias = random_tensor(conv.bias.shape(), seed++);
    const Tensor x = random_tensor(c.input, seed++);
    const Tensor got = conv(x).as_float("test");
    const Tensor want = naive_conv(x, conv);
    ASSERT_EQ(got.shape(), want.shape()) << conv.extra_repr();
    for (int64_t i = 0; i < want.numel(); ++i) {
      ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-4)
          << conv.extra_repr() << " @" << i;
    }
  }
}

TEST(kernels_int8, panel_and_block_kernels_equal_the_reference_on_odd_shapes) {
  testing::IsaGuard guard;
  uint32_t seed = 7;
  for (int64_t m : {1, 2, 3, 7, 33, 130}) {
    for (int64_t n : {1, 5, 8, 31, 33, 70}) {
      for (int64_t k : {1, 9, 16, 17, 144, 300}) {
        const Tensor wf = random_tensor({n, k}, seed++, 60.0f);
        const Tensor xf = random_tensor({m, k}, seed++, 80.0f);
        std::vector<int8_t> w(static_cast<size_t>(n * k));
        Tensor x = Tensor::empty({m, k}, DType::kUInt8);
        for (int64_t i = 0; i < n * k; ++i) {
          w[i] =
              static_cast<int8_t>(std::clamp(std::nearbyint(wf.data<float>()[i]), -128.f, 127.f));
        }
        for (int64_t i = 0; i < m * k; ++i) {
          x.data<uint8_t>()[i] = static_cast<uint8_t>(
              std::clamp(std::nearbyint(128 + xf.data<float>()[i]), 0.f, 255.f));
        }
        std::vector<int64_t> wzp(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) wzp[j] = (j % 3) - 1;
        const Int16Rows wr = pack_int8_rows(w.data(), n, k, wzp.data());
        Int16Rows xr;
        shift_activations(x, m, k, 131, xr);
        std::vector<int32_t> want(static_cast<size_t>(n * m));
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < m; ++i) {
            int64_t s = 0;
            for (int64_t p = 0; p < k; ++p)
              s += (int64_t{x.data<uint8_t>()[i * k + p]} - 131) * (w[j * k + p] - wzp[j]);
            want[j * m + i] = static_cast<int32_t>(s);
          }
        for (Isa isa : supported_isas()) {
          set_active_isa(isa);
          std::vector<int32_t> a(want.size()), b(want.size());
          gemm_s16_s32(wr, xr, a.data(), m);
          gemm_panel_s16_s32(xr.data.data(), m, pack_pair_panel(wr, 0, n), b.data(), m);
          ASSERT_EQ(a, want) << isa_name(isa) << " block m=" << m << " n=" << n << " k=" << k;
          ASSERT_EQ(b, want) << isa_name(isa) << " panel m=" << m << " n=" << n << " k=" << k;
        }
      }
    }
  }
}

TEST(kernels_int8, requantize_matches_the_double_formula_at_every_level) {
  testing::IsaGuard guard;
  std::vector<int32_t> acc;
  for (int i = -3000; i <= 3000; i += 7) acc.push_back(i * 37);
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    std::vector<uint8_t> out(acc.size());
    requantize(acc.data(), static_cast<int64_t>(acc.size()), 0.00123, 0.5, 0.37, 7, 0, 255,
               out.data());
    for (size_t i = 0; i < acc.size(); ++i) {
      const double q = std::nearbyint((acc[i] * 0.00123 + 0.5) / 0.37) + 7;
      ASSERT_EQ(out[i], static_cast<uint8_t>(std::clamp(q, 0.0, 255.0)))
          << isa_name(isa) << " " << acc[i];
    }
  }
}

// GELU at every level against erf in double: the reference uses std::erf (float, ~1 ulp); the
// vector levels use Abramowitz & Stegun 7.1.26, |erf error| <= 1.5e-7, which moves 0.5 x (1 + erf)
// by at most 0.75e-7 |x|; evaluating 1 - r t exp(-z^2) and 1 + erf in float adds up to ~3
// roundings of a value <= 2 (0.5 |x| * 3.6e-7), and the product a final 2 ulp: 2.5e-7 |x| + 2 ulp.
TEST(nn, gelu_is_within_the_erf_approximation_bound_at_every_level) {
  testing::IsaGuard guard;
  const int64_t n = 200003;  // several parallel chunks and a tail of 3
  Tensor x = Tensor::empty({n}, DType::kFloat32);
  for (int64_t i = 0; i < n; ++i) x.data<float>()[i] = -12.0f + 24.0f * i / (n - 1);
  x.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  x.data<float>()[1] = std::numeric_limits<float>::infinity();
  x.data<float>()[2] = 0.0f;
  x.data<float>()[n - 1] = 1e-30f;
  GELU gelu;
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    const Tensor y = gelu.forward(Value(x)).as_float("test");
    EXPECT_TRUE(std::isnan(y.data<float>()[0])) << isa_name(isa);
    EXPECT_EQ(y.data<float>()[1], std::numeric_limits<float>::infinity()) << isa_name(isa);
    EXPECT_EQ(y.data<float>()[2], 0.0f) << isa_name(isa);
    double worst = 0.0;
    for (int64_t i = 3; i < n; ++i) {
      const double v = x.data<float>()[i];
      const double want = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
      const double bound = 2.0 * std::nextafter(static_cast<float>(std::fabs(want)), 1e30f) -
                           2.0 * std::fabs(static_cast<float>(want)) + 2.5e-7 * std::fabs(v) +
                           1e-45;
      const double err = std::fabs(y.data<float>()[i] - want);
      ASSERT_LE(err, bound) << isa_name(isa) << " x=" << v;
      worst = std::max(worst, err);
    }
    std::printf("%s: max abs error %.3g on [-12, 12]\n", std::string(isa_name(isa)).c_str(), worst);
  }
}

// Static int8 conv against the integer formula on an odd geometry with groups and padding.
TEST(nn, static_quantized_conv_matches_the_integer_formula) {
  Conv conv(2, {4, 6, {3}, {2}, {1}, {}, 2, true});
  conv.weight = random_tensor(conv.weight.shape(), 3, 0.2f);
  conv.bias = random_tensor({6}, 4, 0.1f);
  const QTensor wq = quantize_per_tensor(conv.weight, 0.004, 0, DType::kInt8);
  Int8Weight w(wq.int_repr(), {0.004}, {0});
  const OutputQParams out{0.05, 120, DType::kUInt8};
  StaticQuantizedConv qconv(2, conv.options, w, conv.bias, out, true);
  const Tensor xf = random_tensor({2, 4, 7, 6}, 5);
  const Value x = quantize_value(xf, {0.03, 128, DType::kUInt8});
  const Value y = qconv(x);
  // Reference: float conv on the dequantized codes is exactly the integer sum times the scales.
  Conv ref(2, conv.options);
  ref.weight = w.dequantize();
  ref.bias = Tensor::zeros({6}, DType::kFloat32);
  const Tensor real = ref(x.to_float()).as_float("ref");
  const int64_t positions = real.numel() / (2 * 6);
  int64_t exact = 0;
  for (int64_t i = 0; i < real.numel(); ++i) {
    const int64_t ch = (i / positions) % 6;
    const double acc = std::nearbyint(real.data<float>()[i] / (0.03 * 0.004));
    const double v = acc * (0.03 * 0.004) + conv.bias.data<float>()[ch];
    const int64_t q =
        std::clamp<int64_t>(static_cast<int64_t>(std::nearbyint(v / 0.05)) + 120, 120, 255);
    exact += q == y.data().data<uint8_t>()[i];
  }
  EXPECT_EQ(exact, real.numel());
}

TEST(nn, module_tree_names_state_dict_and_printing) {
  Sequential model;
  auto inner = std::make_shared<Sequential>();
  inner->add("query", make_module<Linear>(4, 4)).add("act", make_module<GELU>());
  model.add("encoder", inner).add("head", make_module<Linear>(4, 2, false));
  EXPECT_EQ(model.find("encoder.query").type_name(), "Linear");
  const auto sd = model.state_dict();
  EXPECT_EQ(sd.size(), 3u);
  EXPECT_TRUE(sd.count("encoder.query.weight") && sd.count("encoder.query.bias") &&
              sd.count("head.weight"));
  const std::string printed = model.to_string();
  EXPECT_NE(printed.find("(query): Linear(in_features=4, out_features=4, bias=True)"),
            std::string::npos)
      << printed;
  model.replace("encoder.act", make_module<ReLU>());
  EXPECT_EQ(model.find("encoder.act").type_name(), "ReLU");
  // load_state_dict lists every problem at once.
  std::map<std::string, Tensor> bad{
      {"encoder.query.weight", Tensor::zeros({3, 4}, DType::kFloat32)},
      {"nope", Tensor::zeros({1}, DType::kFloat32)}};
  try {
    model.load_state_dict(bad);
    FAIL();
  } catch (const ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'encoder.query.weight' is float32[3, 4], the module expects float32[4, 4]"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("missing 'head.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected 'nope'"), std::string::npos) << msg;
  }
  EXPECT_THROW(model.find("encoder.key"), ValueError);
}

TEST(nn, errors_name_the_module_and_suggest_stubs) {
  Linear linear(4, 3);
  const Value q = quantize_value(Tensor::zeros({2, 4}, DType::kFloat32), {0.1, 0, DType::kUInt8});
  try {
    linear(q);
    FAIL();
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("Linear expects a float tensor but got a quantized one"),
              std::string::npos);
    EXPECT_NE(std::string(e.what()).find("DeQuantStub"), std::string::npos);
  }
  StaticQuantizedLinear ql(Int8Weight(Tensor::zeros({3, 4}, DType::kInt8), {0.1}, {0}), Tensor(),
                           {0.1, 0, DType::kUInt8}, false);
  try {
    ql(Tensor::zeros({2, 4}, DType::kFloat32));
    FAIL();
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("QuantStub"), std::string::npos);
  }
  EXPECT_THROW(linear(Tensor::zeros({2, 5}, DType::kFloat32)), ShapeError);
  Conv conv(2, {3, 4, {3}, {1}, {0}, {1}, 1, true});
  EXPECT_THROW(conv(Tensor::zeros({1, 2, 5, 5}, DType::kFloat32)), ShapeError);
  EXPECT_THROW(conv(Tensor::zeros({1, 3, 2, 2}, DType::kFloat32)), ShapeError);
  EXPECT_THROW(Conv(2, ConvOptions{3, 4, {3}, {1}, {0}, {}, 2, true}), ValueError);  // 3 % 2
}

TEST(workflows, fuse_rejects_unsupported_patterns_and_train_mode_bn) {
  Sequential m;
  m.add("conv", make_module<Conv>(2, ConvOptions{1, 2, {3}, {1}, {0}, {1}, 1, true}))
      .add("bn", make_module<BatchNorm>(2, 2));
  m.add("gelu", make_module<GELU>());
  EXPECT_THROW(fuse_modules(m, {{"conv", "gelu"}}), ValueError);
  m.train();
  try {
    fuse_modules(m, {{"conv", "bn"}});
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("eval"), std::string::npos);
  }
}

TEST(workflows, convert_before_calibration_names_the_observer) {
  Sequential m;
  m.add("quant", make_module<QuantStub>()).add("fc", make_module<Linear>(4, 2));
  m.add("dequant", make_module<DeQuantStub>());
  m.eval();
  m.qconfig = get_default_qconfig("x86");
  prepare(m);
  try {
    convert(m);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(
        std::string(e.what()).find("observer of 'quant' (HistogramObserver) has seen no data"),
        std::string::npos)
        << e.what();
  }
  QConfigMapping mapping;
  mapping.set_object_type("LayerNorm", get_default_qconfig("x86"));
  try {
    prepare(m, mapping);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'LayerNorm' has no quantized counterpart"),
              std::string::npos);
  }
  EXPECT_THROW(quantize_dynamic(m, {"Conv2d"}), ValueError);
}

// A model mixing static int8, dynamic int8, weight-only int4 and a module left float by name.
TEST(workflows, static_dynamic_weight_only_and_float_modules_mix) {
  auto m = std::make_shared<Sequential>();
  m->add("quant", make_module<QuantStub>()).add("fc1", make_module<Linear>(16, 32));
  m->add("relu", make_module<ReLU>()).add("dequant", make_module<DeQuantStub>());
  m->add("fc2", make_module<Linear>(32, 32)).add("fc3", make_module<Linear>(32, 8));
  m->add("fc4", make_module<Linear>(8, 4));
  uint32_t seed = 11;
  for (auto& [name, t] : m->state_dict()) {
    m->load_state_dict({{name, random_tensor(t.shape(), seed++, 0.3f)}}, false);
  }
  m->eval();
  const Tensor x = random_tensor({5, 16}, 99);
  const Tensor y_float = (*m)(x).as_float("test");
  QConfigMapping mapping;
  mapping.set_global(get_default_qconfig("x86"));
  for (const char* name : {"fc2", "fc3", "fc4"}) mapping.set_module_name(name, nullptr);
  prepare(*m, mapping);
  for (uint32_t s = 0; s < 4; ++s) (*m)(random_tensor({5, 16}, 200 + s));
  convert(*m);
  quantize_dynamic(*m, {"Linear"});  // only fc2..fc4 are still Linear
  WeightOnlyConfig wo;
  wo.weights = DType::kInt4;
  wo.group_size = 8;
  m->replace("fc3", make_module<Linear>(32, 8));  // a fresh float fc3 for the weight-only path
  m->load_state_dict({{"fc3.weight", random_tensor({8, 32}, 5, 0.3f)}}, false);
  EXPECT_EQ(quantize_weights(*m, wo), 1);
  const auto map = quantization_map(*m);
  EXPECT_EQ(map.at("fc1").rfind("QuantizedLinear", 0), 0u);
  EXPECT_EQ(map.at("fc2").rfind("DynamicQuantizedLinear", 0), 0u);
  EXPECT_EQ(map.at("fc3").rfind("QLinear", 0), 0u);
  const Tensor y = (*m)(x).as_float("test");
  EXPECT_EQ(y.shape(), y_float.shape());
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_TRUE(std::isfinite(y.data<float>()[i]));
}

// The custom module API: a float type, its observed and quantized versions.
class Scale : public Module {
 public:
  std::string type_name() const override { return "Scale"; }
  Value forward(const Value& x) override {
    Tensor y = x.as_float(type_name()).clone();
    for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] *= 2.0f;
    return y;
  }
};
class ObservedScale : public Scale {
 public:
  std::string type_name() const override { return "ObservedScale"; }
};
class QuantizedScale : public Module {
 public:
  explicit QuantizedScale(OutputQParams q) : out(q) {}
  std::string type_name() const override { return "QuantizedScale"; }
  Value forward(const Value& x) override {
    Tensor f = x.to_float();
    for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] *= 2.0f;
    return quantize_value(f, out);
  }
  OutputQParams out;
};

TEST(workflows, custom_module_conversion) {
  register_custom_module({"Scale", "ObservedScale",
                          [](Module&, const QConfig&) { return make_module<ObservedScale>(); },
                          [](Module& observed) {
                            const auto q = observed.activation_post_process->calculate_qparams();
                            return make_module<QuantizedScale>(OutputQParams{
                                q.scale_value(), q.zero_point_value(), DType::kUInt8});
                          }});
  Sequential m;
  m.add("quant", make_module<QuantStub>()).add("scale", make_module<Scale>());
  m.add("dequant", make_module<DeQuantStub>());
  m.eval();
  m.qconfig = get_default_qconfig("qnnpack");
  prepare(m);
  EXPECT_EQ(m.find("scale").type_name(), "ObservedScale");
  m(Tensor::from_floats({-1.0f, 0.5f, 1.0f}, {3}));
  convert(m);
  EXPECT_EQ(m.find("scale").type_name(), "QuantizedScale");
  const Tensor y = m(Tensor::from_floats({-1.0f, 0.5f, 1.0f}, {3})).as_float("test");
  EXPECT_NEAR(y.data<float>()[2], 2.0f, 0.02f);
  unregister_custom_module("Scale");
}

TEST(workflows, weight_only_activation_calibration_and_freeze) {
  Sequential m;
  m.add("fc", make_module<Linear>(64, 16));
  m.load_state_dict(
      {{"fc.weight", random_tensor({16, 64}, 1, 0.2f)}, {"fc.bias", random_tensor({16}, 2)}});
  m.eval();
  const Tensor x = random_tensor({4, 64}, 3);
  const Tensor y_float = m(x).as_float("test");
  WeightOnlyConfig cfg;
  cfg.weights = DType::kInt8;
  cfg.activations = ActivationQuant::kInt8;
  EXPECT_EQ(quantize_weights(m, cfg), 1);
  EXPECT_THROW(freeze(m), ValueError);  // no calibration data yet
  set_calibration(m, true);
  m(x);
  freeze(m);
  const Tensor y = m(x).as_float("test");
  EXPECT_GT(sqnr_db(y_float, y), 30.0);
}

// forward_shared_input: plain QLinear modules of one activation mode (weight-only, dynamic int8)
// run together and equal their own forwards bit for bit; a list with any other module (here a float
// Linear, or a QLinear still calibrating) runs each forward.
TEST(workflows, forward_shared_input_equals_each_forward) {
  Sequential m;
  m.add("q", make_module<Linear>(64, 32, false))
      .add("k", make_module<Linear>(64, 16, false))
      .add("f", make_module<Linear>(64, 8));
  m.load_state_dict({{"q.weight", random_tensor({32, 64}, 1, 0.2f)},
                     {"k.weight", random_tensor({16, 64}, 2, 0.2f)},
                     {"f.weight", random_tensor({8, 64}, 3, 0.2f)},
                     {"f.bias", random_tensor({8}, 4)}});
  WeightOnlyConfig cfg;
  cfg.weights = DType::kInt4;
  cfg.group_size = 32;
  cfg.exclude = {"f"};
  EXPECT_EQ(quantize_weights(m, cfg), 2);
  Module* q = m.child("q").get();
  Module* k = m.child("k").get();
  Module* f = m.child("f").get();
  ASSERT_EQ(q->type_name(), "QLinear");
  ASSERT_EQ(f->type_name(), "Linear");
  const Tensor x = random_tensor({1, 64}, 5);
  auto same = [](const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() &&
           std::equal(a.data<float>(), a.data<float>() + a.numel(), b.data<float>());
  };
  const std::vector<Tensor> qk = forward_shared_input({q, k}, x);
  EXPECT_TRUE(same(qk[0], (*q)(Value(x)).as_float("test")));
  EXPECT_TRUE(same(qk[1], (*k)(Value(x)).as_float("test")));
  const std::vector<Tensor> mixed = forward_shared_input({q, f}, x);
  EXPECT_TRUE(same(mixed[1], (*f)(Value(x)).as_float("test")));
  // Dynamic per-token int8 on both: x is quantized once; on one only: each runs its own.
  auto& q_linear = static_cast<WeightOnlyLinear&>(*q);
  auto& k_linear = static_cast<WeightOnlyLinear&>(*k);
  q_linear.activations = ActivationQuant::kInt8DynamicPerToken;
  const Tensor x8 = random_tensor({8, 64}, 6);
  const std::vector<Tensor> one_mode = forward_shared_input({q, k}, x8);
  EXPECT_TRUE(same(one_mode[0], (*q)(Value(x8)).as_float("test")));
  EXPECT_TRUE(same(one_mode[1], (*k)(Value(x8)).as_float("test")));
  k_linear.activations = ActivationQuant::kInt8DynamicPerToken;
  const std::vector<Tensor> dynamic = forward_shared_input({q, k}, x8);
  EXPECT_TRUE(same(dynamic[0], (*q)(Value(x8)).as_float("test")));
  EXPECT_TRUE(same(dynamic[1], (*k)(Value(x8)).as_float("test")));
  set_calibration(m, true);  // a calibrating QLinear records its input: its own forward runs
  forward_shared_input({q, k}, x);
  EXPECT_GT(q_linear.observed_absmax, 0.0f);
}

// A QLinear with dynamic int8 activations packs its codes as that kernel reads them (channel
// tiles where the avx512 level is active), and still gives the results of rows everywhere.
TEST(workflows, dynamic_int8_qlinear_packs_for_its_kernel) {
  testing::IsaGuard guard;
  AffineSpec spec = AffineSpec::for_dtype(DType::kInt8, Granularity::per_axis(0));
  spec.mapping = MappingType::kSymmetric;
  spec.zero_point_domain = ZeroPointDomain::kNone;
  const QTensor w = quantize(random_tensor({40, 96}, 7, 0.2f), spec);
  const Tensor x = random_tensor({20, 96}, 8);
  for (Isa isa : supported_isas()) {
    set_active_isa(isa);
    WeightOnlyLinear dynamic(w, Tensor(), ActivationQuant::kInt8DynamicPerToken);
    const bool tiles = isa == Isa::kAvx512;
    EXPECT_EQ(dynamic.packed.layout, tiles ? CodeLayout::kChannelTiles : CodeLayout::kRows)
        << isa_name(isa);
    WeightOnlyLinear weight_only(w, Tensor(), ActivationQuant::kNone);
    EXPECT_EQ(weight_only.packed.layout, CodeLayout::kRows);
    const Tensor y = dynamic(Value(x)).as_float("test");
    const Tensor want = linear_dynamic_int8(x, weight_only.packed);
    EXPECT_EQ(0, std::memcmp(y.data<float>(), want.data<float>(), sizeof(float) * y.numel()))
        << isa_name(isa);
  }
}

}  // namespace
}  // namespace quantkit

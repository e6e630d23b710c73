// The eager workflows against PyTorch: qconfigs.json (default QConfigs), dynamic_linear.json
// (quantize_dynamic) and static_quant.json (fuse -> prepare -> calibrate -> convert).
#include <gtest/gtest.h>

#include <cmath>

#include "golden_support.h"
#include "quantkit/workflows/quantize.h"

namespace quantkit {
namespace {

using testing::golden_tensor;
using testing::int_at;
using testing::json;
using testing::json_number;

std::string backend_of(const std::string& getter) {
  const size_t a = getter.find('\''), b = getter.rfind('\'');
  return getter.substr(a + 1, b - a - 1);
}

TEST(golden, qconfigs_default_backends) {
  const json g = testing::load_golden("qconfigs.json");
  int checked = 0;
  for (const json& c : g["cases"]) {
    const std::string getter = c["getter"];
    QConfigPtr qc;
    if (getter.rfind("get_default_qconfig(", 0) == 0) {
      qc = get_default_qconfig(backend_of(getter));
    } else if (getter == "torch.ao.quantization.default_dynamic_qconfig") {
      qc = default_dynamic_qconfig();
    } else if (getter == "torch.ao.quantization.per_channel_dynamic_qconfig") {
      qc = per_channel_dynamic_qconfig();
    } else {
      continue;  // QAT (FakeQuantize) and float16 qconfigs: not provided yet
    }
    SCOPED_TRACE(getter);
    for (const char* side : {"activation", "weight"}) {
      const json& want = c[side];
      const auto obs = (std::string(side) == "activation" ? qc->activation : qc->weight)();
      EXPECT_EQ(obs->type_name(), want["class"].get<std::string>()) << side;
      EXPECT_EQ(torch_dtype_name(obs->options().dtype), want["dtype"].get<std::string>()) << side;
      if (want.contains("qscheme")) {
        EXPECT_EQ(torch_qscheme_name(obs->options().qscheme), want["qscheme"].get<std::string>());
        EXPECT_EQ(obs->quant_min(), want["quant_min"].get<int64_t>()) << side;
        EXPECT_EQ(obs->quant_max(), want["quant_max"].get<int64_t>()) << side;
        EXPECT_EQ(obs->options().reduce_range, want["reduce_range"].get<bool>()) << side;
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 6);  // fbgemm, x86, qnnpack, onednn, dynamic, per-channel dynamic
}

TEST(golden, dynamic_linear) {
  const json g = testing::load_golden("dynamic_linear.json");
  int runs = 0;
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["id"].get<std::string>());
    const QEngine engine = parse_quantized_engine(c["engine"]);
    Sequential model;
    model.add("fc",
              make_module<Linear>(c["in_features"], c["out_features"], c["bias"].get<bool>()));
    std::map<std::string, Tensor> sd{{"fc.weight", golden_tensor(c["weight_fp32"])}};
    if (c["bias"].get<bool>()) sd["fc.bias"] = golden_tensor(c["bias_fp32"]);
    model.load_state_dict(sd);
    model.eval();
    const QConfigPtr qc = c["qconfig"] == "per_channel_dynamic_qconfig"
                              ? per_channel_dynamic_qconfig()
                              : default_dynamic_qconfig();
    quantize_dynamic(model, {"Linear"}, qc, engine);
    auto& q = static_cast<DynamicQuantizedLinear&>(*model.child("fc"));
    const json& wq = c["weight_q"];
    const Tensor want_codes = golden_tensor(wq["int_repr"]);
    for (int64_t i = 0; i < want_codes.numel(); ++i) {
      ASSERT_EQ(q.weight.codes.data<int8_t>()[i], want_codes.data<int8_t>()[i]) << i;
    }
    if (wq.contains("scale")) {
      EXPECT_EQ(q.weight.scales[0], json_number(wq["scale"]));
    } else {
      const Tensor s = golden_tensor(wq["scales"]);
      for (int64_t i = 0; i < s.numel(); ++i) EXPECT_EQ(q.weight.scales[i], s.data<double>()[i]);
    }
    for (const json& r : c["runs"]) {
      SCOPED_TRACE(r["input_name"].get<std::string>());
      const Tensor x = golden_tensor(r["x"]);
      if (!r["raises"].is_null()) {
        EXPECT_THROW(model(x), Error);
        continue;
      }
      const Tensor y = model(x).as_float("test");
      const Tensor ref = golden_tensor(r["y_ref_f64"]);
      const Tensor want = golden_tensor(r["y"]);
      double max_ref = 0;
      for (int64_t i = 0; i < ref.numel(); ++i)
        max_ref = std::max(max_ref, std::fabs(ref.data<double>()[i]));
      for (int64_t i = 0; i < want.numel(); ++i) {
        EXPECT_NEAR(y.data<float>()[i], want.data<float>()[i], 1e-5 * max_ref + 1e-30) << i;
      }
      const json& inferred = r["input_qparams_inferred"];
      EXPECT_EQ(q.last_input_qparams.scale, json_number(inferred["scale"]));
      EXPECT_EQ(q.last_input_qparams.zero_point, inferred["zero_point"].get<int64_t>());
      ++runs;
    }
  }
  EXPECT_GT(runs, 100);
}

// The three models of static_quant.json, as named sequences of modules.
std::shared_ptr<Sequential> build_static_model(const std::string& name) {
  auto m = std::make_shared<Sequential>();
  m->add("quant", make_module<QuantStub>());
  if (name == "lin_relu_lin") {
    m->add("fc1", make_module<Linear>(32, 16)).add("relu1", make_module<ReLU>());
    m->add("fc2", make_module<Linear>(16, 8));
  } else if (name == "conv_bn_relu_conv") {
    m->add("conv1", make_module<Conv>(2, ConvOptions{3, 8, {3}, {1}, {1}, {}, 1, true}));
    m->add("bn1", make_module<BatchNorm>(2, 8)).add("relu1", make_module<ReLU>());
    m->add("conv2", make_module<Conv>(2, ConvOptions{8, 4, {3}, {2}, {0}, {}, 1, true}));
  } else {
    m->add("conv1", make_module<Conv>(2, ConvOptions{1, 4, {3}, {1}, {0}, {}, 1, true}));
    m->add("relu1", make_module<ReLU>()).add("flatten", make_module<Flatten>(1));
    m->add("fc", make_module<Linear>(64, 10));
  }
  m->add("dequant", make_module<DeQuantStub>());
  return m;
}

std::map<std::string, Tensor> state_dict_of(const json& j) {
  std::map<std::string, Tensor> sd;
  for (auto it = j.begin(); it != j.end(); ++it) sd[it.key()] = golden_tensor(it.value());
  return sd;
}

TEST(golden, static_quant) {
  const json g = testing::load_golden("static_quant.json");
  int64_t exact = 0, within_one = 0, total = 0, scales_exact = 0, scales_total = 0;
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["id"].get<std::string>() + " " + c["model"].get<std::string>() + " " +
                 c["qconfig"].get<std::string>());
    auto model = build_static_model(c["model"]);
    model->load_state_dict(state_dict_of(c["float_state_dict"]));
    model->eval();
    const Tensor x = golden_tensor(c["x"]);
    const Tensor y_fp32 = (*model)(x).as_float("test");
    const Tensor want_fp32 = golden_tensor(c["y_fp32"]);
    for (int64_t i = 0; i < want_fp32.numel(); ++i) {
      EXPECT_NEAR(y_fp32.data<float>()[i], want_fp32.data<float>()[i], 1e-5);
    }
    fuse_modules(*model, c["fuse_modules"].get<std::vector<std::vector<std::string>>>());
    const auto fused_want = state_dict_of(c["fused_float_state_dict"]);
    const auto fused_got = model->state_dict();
    for (const auto& [name, t] : fused_want) {
      ASSERT_TRUE(fused_got.count(name)) << name;
      const Tensor& got = fused_got.at(name);
      for (int64_t i = 0; i < t.numel(); ++i) {
        EXPECT_NEAR(got.data<float>()[i], t.data<float>()[i],
                    1e-6 * std::fabs(t.data<float>()[i]) + 1e-9)
            << name << "[" << i << "]";
      }
    }
    set_quantized_engine(parse_quantized_engine(c["engine"]));
    model->qconfig = get_default_qconfig(backend_of(c["qconfig"]));
    prepare(*model);
    for (const json& b : c["calibration_batches"]) (*model)(golden_tensor(b));
    for (const json& o : c["activation_observers"]) {
      const std::string name = o["name"];
      const std::string module = name.substr(0, name.find(".activation_post_process"));
      const auto& obs = model->find(module).activation_post_process;
      ASSERT_NE(obs, nullptr) << module;
      // The input observer sees the test data itself: bit-exact. Later observers see float
      // layer outputs, whose last bits depend on the BLAS kernel's summation order.
      const double tol = module == "quant" ? 0.0 : 2e-6;
      const ObservedQParams q = obs->calculate_qparams();
      const float want_scale = golden_tensor(o["scale"]).data<float>()[0];
      EXPECT_NEAR(obs->min_val().data<float>()[0], golden_tensor(o["min_val"]).data<float>()[0],
                  tol * 10);
      EXPECT_NEAR(obs->max_val().data<float>()[0], golden_tensor(o["max_val"]).data<float>()[0],
                  tol * 10);
      EXPECT_NEAR(q.scale.data<float>()[0], want_scale, tol * want_scale) << module;
      EXPECT_EQ(q.zero_point_value(), int_at(golden_tensor(o["zero_point"]), 0)) << module;
      scales_exact += q.scale.data<float>()[0] == want_scale;
      ++scales_total;
    }
    convert(*model);
    for (const json& qm : c["quantized_modules"]) {
      if (!qm.contains("weight")) continue;
      Module& m = model->find(qm["name"]);
      const Int8Weight& w = m.type_name().find("Conv") != std::string::npos
                                ? static_cast<StaticQuantizedConv&>(m).weight
                                : static_cast<StaticQuantizedLinear&>(m).weight;
      const Tensor codes = golden_tensor(qm["weight"]["int_repr"]);
      for (int64_t i = 0; i < codes.numel(); ++i) {
        ASSERT_EQ(w.codes.data<int8_t>()[i], codes.data<int8_t>()[i]) << qm["name"] << i;
      }
      const OutputQParams out = m.type_name().find("Conv") != std::string::npos
                                    ? static_cast<StaticQuantizedConv&>(m).output
                                    : static_cast<StaticQuantizedLinear&>(m).output;
      EXPECT_NEAR(out.scale, json_number(qm["scale"]), 2e-6 * out.scale);
      EXPECT_EQ(out.zero_point, qm["zero_point"].get<int64_t>());
    }
    // Layer by layer, feeding our own outputs forward (the chain is sequential).
    Value h = x;
    size_t next = 0;
    const json& layers = c["layer_outputs"];
    for (const auto& [name, m] : model->children()) {
      h = (*m)(h);
      if (next >= layers.size() || layers[next]["name"] != name) continue;
      const json& want = layers[next++];
      if (!want.contains("output")) continue;
      const Tensor codes = golden_tensor(want["output"]["int_repr"]);
      ASSERT_TRUE(h.is_quantized()) << name;
      EXPECT_NEAR(h.scale(), json_number(want["output"]["scale"]), 2e-6 * h.scale()) << name;
      for (int64_t i = 0; i < codes.numel(); ++i) {
        const int64_t d = std::abs(int64_t{h.data().bytes()[i]} - int_at(codes, i));
        EXPECT_LE(d, 1) << name << "[" << i << "]";
        exact += d == 0;
        within_one += d <= 1;
        ++total;
      }
    }
    EXPECT_EQ(next, layers.size());
  }
  set_quantized_engine(QEngine::kOneDNN);
  std::printf("static_quant: %lld of %lld activation scales bit-exact\n",
              static_cast<long long>(scales_exact), static_cast<long long>(scales_total));
  std::printf("static_quant: %lld layer output codes, %.4f%% exact, %.4f%% within 1 LSB\n",
              static_cast<long long>(total),
              100.0 * static_cast<double>(exact) / static_cast<double>(total),
              100.0 * static_cast<double>(within_one) / static_cast<double>(total));
  EXPECT_GE(static_cast<double>(within_one), 0.999 * static_cast<double>(total));
}

}  // namespace
}  // namespace quantkit

// observers.json: every PyTorch observer, state after every batch and final qparams, bit-exact.
#include <gtest/gtest.h>

#include "golden_support.h"
#include "quantkit/quant/observer.h"

namespace quantkit {
namespace {

using testing::golden_tensor;
using testing::int_at;
using testing::json;
using testing::json_number;
using testing::same_float;

ObserverOptions options_from(const json& ctor, const std::string& observer) {
  ObserverOptions o;
  if (observer.find("PerChannel") != std::string::npos) {
    o = PerChannelMinMaxObserver::per_channel_defaults();
  }
  if (ctor.contains("dtype")) o.dtype = parse_torch_dtype(ctor["dtype"]);
  if (ctor.contains("qscheme")) o.qscheme = parse_torch_qscheme(ctor["qscheme"]);
  if (ctor.contains("reduce_range")) o.reduce_range = ctor["reduce_range"];
  if (ctor.contains("quant_min")) o.quant_min = ctor["quant_min"].get<int64_t>();
  if (ctor.contains("quant_max")) o.quant_max = ctor["quant_max"].get<int64_t>();
  if (ctor.contains("averaging_constant"))
    o.averaging_constant = json_number(ctor["averaging_constant"]);
  if (ctor.contains("ch_axis")) o.ch_axis = ctor["ch_axis"];
  if (ctor.contains("bins")) o.bins = ctor["bins"];
  if (ctor.contains("upsample_rate")) o.upsample_rate = ctor["upsample_rate"];
  if (ctor.contains("eps")) o.eps = static_cast<float>(json_number(ctor["eps"]));
  return o;
}

void expect_same_floats(const Tensor& got, const json& want, const std::string& what) {
  const Tensor w = golden_tensor(want);
  ASSERT_EQ(got.numel(), w.numel()) << what;
  int64_t bad = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    if (!same_float(got.data<float>()[i], w.data<float>()[i])) {
      if (bad++ < 3) {
        ADD_FAILURE() << what << "[" << i << "]: got " << got.data<float>()[i] << " want "
                      << w.data<float>()[i];
      }
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(golden, observers) {
  const json g = testing::load_golden("observers.json");
  ASSERT_TRUE(g.contains("cases"));
  int checked = 0;
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["id"].get<std::string>() + " " + c["name"].get<std::string>());
    const std::string cls = c["observer"];
    const ObserverOptions o = options_from(c["ctor"], cls);
    std::unique_ptr<Observer> obs = observer_factory(cls, o)();
    EXPECT_EQ(obs->quant_min(), c["derived"]["quant_min"].get<int64_t>());
    EXPECT_EQ(obs->quant_max(), c["derived"]["quant_max"].get<int64_t>());
    const json& batches = c["batches"];
    for (size_t b = 0; b < batches.size(); ++b) {
      obs->observe(golden_tensor(batches[b]));
      const json& st = c["states"][b];
      expect_same_floats(obs->min_val(), st["min_val"], "min_val after batch " + std::to_string(b));
      expect_same_floats(obs->max_val(), st["max_val"], "max_val after batch " + std::to_string(b));
      if (st.contains("histogram")) {
        const auto& h = static_cast<HistogramObserver&>(*obs).histogram();
        expect_same_floats(Tensor::from_floats(h, {static_cast<int64_t>(h.size())}),
                           st["histogram"], "histogram after batch " + std::to_string(b));
      }
    }
    if (!c["raises"].is_null()) {
      EXPECT_THROW(obs->calculate_qparams(), ValueError);
      ++checked;
      continue;
    }
    if (c.contains("search")) {
      const auto [lo, hi] = static_cast<HistogramObserver&>(*obs).search_range();
      expect_same_floats(Tensor::from_floats({lo}, {}), c["search"]["new_min"], "new_min");
      expect_same_floats(Tensor::from_floats({hi}, {}), c["search"]["new_max"], "new_max");
    }
    const ObservedQParams q = obs->calculate_qparams();
    expect_same_floats(q.scale, c["scale"], "scale");
    const Tensor zp = golden_tensor(c["zero_point"]);
    ASSERT_EQ(q.zero_point.numel(), zp.numel());
    for (int64_t i = 0; i < zp.numel(); ++i) {
      if (zp.dtype() == DType::kFloat32) {
        EXPECT_TRUE(same_float(q.zero_point.data<float>()[i], zp.data<float>()[i])) << i;
      } else {
        EXPECT_EQ(q.zero_point.data<int64_t>()[i], int_at(zp, i)) << i;
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 160);
}

TEST(observers, reject_bad_options_and_data) {
  ObserverOptions o;
  o.qscheme = TorchQScheme::kPerTensorSymmetric;
  o.reduce_range = true;
  EXPECT_THROW(MinMaxObserver{o}, ValueError);  // quint8 symmetric cannot reduce range
  EXPECT_THROW(observer_factory("NoSuchObserver", {}), ValueError);
  EXPECT_THROW(PerChannelMinMaxObserver{ObserverOptions{}}, ValueError);
  HistogramObserver h;
  EXPECT_THROW(h.observe(Tensor::from_floats({1.0f, NAN}, {2})), ValueError);
  MinMaxObserver m;
  EXPECT_FALSE(m.has_data());
  EXPECT_THROW(m.observe(Tensor::zeros({2}, DType::kInt32)), DTypeError);
}

TEST(observers, percentile_clips_outliers) {
  ObserverOptions o;
  o.percentile = 99.0;
  PercentileObserver p(o);
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) / 1000.0f;
  v[0] = -500.0f;
  v[999] = 500.0f;
  p.observe(Tensor::from_floats(v, {1000}));
  EXPECT_GT(p.min_val().data<float>()[0], -1.0f);
  EXPECT_LT(p.max_val().data<float>()[0], 1.0f);
  EXPECT_GT(p.max_val().data<float>()[0], 0.95f);
  MinMaxObserver m;
  m.observe(Tensor::from_floats(v, {1000}));
  EXPECT_LT(p.calculate_qparams().scale_value(), m.calculate_qparams().scale_value() / 100);
}

}  // namespace
}  // namespace quantkit

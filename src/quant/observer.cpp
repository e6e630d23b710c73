// Min/max observers and PyTorch's qparams formula. Every float operation is a separate float32
// operation in PyTorch's order (the build disables FMA contraction), which is what makes the
// results bit-exact.
#include "quantkit/quant/observer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace quantkit {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

bool is_symmetric(TorchQScheme q) {
  return q == TorchQScheme::kPerTensorSymmetric || q == TorchQScheme::kPerChannelSymmetric;
}

// torch.min / torch.max propagate NaN.
float nan_min(float a, float b) {
  return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b);
}
float nan_max(float a, float b) {
  return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b);
}

float moving_average(float old_value, float current, double averaging_constant) {
  const float c = static_cast<float>(averaging_constant);
  const float delta = current - old_value;
  const float step = c * delta;
  return old_value + step;
}

Tensor scalar_tensor(float v) {
  Tensor t = Tensor::empty({}, DType::kFloat32);
  t.data<float>()[0] = v;
  return t;
}

}  // namespace

std::string torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kUInt8:
      return "quint8";
    case DType::kInt8:
      return "qint8";
    case DType::kInt32:
      return "qint32";
    default:
      return std::string(dtype_name(dtype));
  }
}

DType parse_torch_dtype(const std::string& name) {
  if (name == "quint8") return DType::kUInt8;
  if (name == "qint8") return DType::kInt8;
  if (name == "qint32") return DType::kInt32;
  if (name == "float16") return DType::kFloat16;
  if (name == "float32") return DType::kFloat32;
  throw ValueError("unknown quantized dtype '" + name + "': use quint8, qint8 or qint32");
}

std::string torch_qscheme_name(TorchQScheme q) {
  switch (q) {
    case TorchQScheme::kPerTensorAffine:
      return "per_tensor_affine";
    case TorchQScheme::kPerTensorSymmetric:
      return "per_tensor_symmetric";
    case TorchQScheme::kPerChannelAffine:
      return "per_channel_affine";
    case TorchQScheme::kPerChannelSymmetric:
      return "per_channel_symmetric";
    case TorchQScheme::kPerChannelAffineFloatQParams:
      return "per_channel_affine_float_qparams";
  }
  return "?";
}

TorchQScheme parse_torch_qscheme(const std::string& name) {
  for (TorchQScheme q : {TorchQScheme::kPerTensorAffine, TorchQScheme::kPerTensorSymmetric,
                         TorchQScheme::kPerChannelAffine, TorchQScheme::kPerChannelSymmetric,
                         TorchQScheme::kPerChannelAffineFloatQParams}) {
    if (torch_qscheme_name(q) == name) return q;
  }
  throw ValueError("unknown qscheme '" + name +
                   "': use per_tensor_affine, per_tensor_symmetric, per_channel_affine, "
                   "per_channel_symmetric or per_channel_affine_float_qparams");
}

double ObservedQParams::scale_value() const {
  QK_CHECK(scale.numel() == 1, ValueError, "expected per-tensor qparams, got ", scale.numel(),
           " scales");
  return static_cast<double>(scale.data<float>()[0]);
}

int64_t ObservedQParams::zero_point_value() const {
  QK_CHECK(zero_point.numel() == 1 && zero_point.dtype() == DType::kInt64, ValueError,
           "expected one integer zero point");
  return zero_point.data<int64_t>()[0];
}

std::pair<int64_t, int64_t> observer_quant_range(const ObserverOptions& o) {
  QK_CHECK(o.quant_min.has_value() == o.quant_max.has_value(), ValueError,
           "give both quant_min and quant_max, or neither");
  QK_CHECK(o.dtype == DType::kUInt8 || o.dtype == DType::kInt8 || o.dtype == DType::kInt32,
           DTypeError, "observers support quint8, qint8 and qint32, not ", dtype_name(o.dtype));
  if (o.reduce_range && o.dtype == DType::kUInt8 && is_symmetric(o.qscheme)) {
    throw ValueError("cannot reduce range for symmetric quantization of quint8");
  }
  auto floor_half = [](int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  if (o.quant_min) {
    const int64_t lo = *o.quant_min, hi = *o.quant_max;
    QK_CHECK(lo <= 0 && 0 <= hi, ValueError, "custom quant range [", lo, ", ", hi,
             "] must include 0");
    const int64_t span = o.dtype == DType::kInt32 ? (int64_t{1} << 32) : 256;
    QK_CHECK(hi - lo + 1 <= span, ValueError, "custom quant range [", lo, ", ", hi,
             "] does not fit ", torch_dtype_name(o.dtype));
    if (o.reduce_range) return {floor_half(lo), floor_half(hi)};
    return {lo, hi};
  }
  switch (o.dtype) {
    case DType::kInt8:
      return o.reduce_range ? std::pair<int64_t, int64_t>{-64, 63}
                            : std::pair<int64_t, int64_t>{-128, 127};
    case DType::kUInt8:
      return o.reduce_range ? std::pair<int64_t, int64_t>{0, 127}
                            : std::pair<int64_t, int64_t>{0, 255};
    default:
      return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
  }
}

ObservedQParams calculate_qparams(const Tensor& min_val, const Tensor& max_val,
                                  const ObserverOptions& o) {
  const auto [qmin, qmax] = observer_quant_range(o);
  const int64_t n = min_val.numel();
  const float* mn = min_val.data<float>();
  const float* mx = max_val.data<float>();
  const bool float_zp = o.qscheme == TorchQScheme::kPerChannelAffineFloatQParams;
  ObservedQParams out;
  bool uninitialised = true;
  for (int64_t i = 0; i < n; ++i) uninitialised &= mn[i] == kInf && mx[i] == -kInf;
  if (n == 0 || uninitialised) {
    out.scale = Tensor::from_floats({1.0f}, {1});
    out.zero_point = Tensor::zeros({1}, DType::kInt64);
    return out;
  }
  for (int64_t i = 0; i < n; ++i) {
    QK_CHECK(mn[i] <= mx[i], ValueError, "observer statistics min ", mn[i],
             " should be less than max ", mx[i],
             " (a NaN in the observed data?): check the calibration inputs");
  }
  const Shape shape = {n};
  out.scale = Tensor::empty(shape, DType::kFloat32);
  out.zero_point = Tensor::empty(shape, float_zp ? DType::kFloat32 : DType::kInt64);
  float* scale = out.scale.data<float>();
  const bool custom = o.quant_min.has_value();
  for (int64_t i = 0; i < n; ++i) {
    const float min_neg = std::min(mn[i], 0.0f);
    float max_pos = std::max(mx[i], 0.0f);
    if (is_symmetric(o.qscheme)) {
      max_pos = std::max(-min_neg, max_pos);
      const float half_range = static_cast<float>(static_cast<double>(qmax - qmin) / 2);
      scale[i] = std::max(max_pos / half_range, o.eps);
      int64_t zp = 0;
      if (o.dtype == DType::kUInt8) zp = custom ? (qmin + qmax) / 2 : 128;
      out.zero_point.data<int64_t>()[i] = zp;
    } else if (float_zp) {
      const float s = (mx[i] - mn[i]) / static_cast<float>(qmax - qmin);
      scale[i] = s > o.eps ? s : 1.0f;
      // 0 - m/s equals -1 * m / s exactly, but gives +0 (as torch records) for m = 0.
      out.zero_point.data<float>()[i] = 0.0f - mn[i] / scale[i];
    } else {
      scale[i] = std::max((max_pos - min_neg) / static_cast<float>(qmax - qmin), o.eps);
      const float ratio = min_neg / scale[i];
      // A non-finite range (an observed inf) gives a NaN ratio: pin it instead of casting UB.
      const float rounded =
          std::isnan(ratio) ? 0.0f : std::clamp(std::nearbyint(ratio), -1e12f, 1e12f);
      const int64_t zp = qmin - static_cast<int64_t>(rounded);
      out.zero_point.data<int64_t>()[i] = std::clamp(zp, qmin, qmax);
    }
  }
  return out;
}

Observer::Observer(ObserverOptions options) : options_(std::move(options)) {
  std::tie(quant_min_, quant_max_) = observer_quant_range(options_);
  min_val_ = scalar_tensor(kInf);
  max_val_ = scalar_tensor(-kInf);
}

bool Observer::is_per_channel() const {
  return options_.qscheme == TorchQScheme::kPerChannelAffine ||
         options_.qscheme == TorchQScheme::kPerChannelSymmetric ||
         options_.qscheme == TorchQScheme::kPerChannelAffineFloatQParams;
}

std::string Observer::describe() const {
  std::ostringstream s;
  s << type_name() << "(" << torch_dtype_name(options_.dtype) << " "
    << torch_qscheme_name(options_.qscheme) << " " << quant_min_ << ".." << quant_max_;
  if (has_data_ && min_val_.numel() == 1) {
    s << ", min=" << min_val_.data<float>()[0] << ", max=" << max_val_.data<float>()[0];
  } else if (has_data_) {
    s << ", " << min_val_.numel() << " channels";
  } else {
    s << ", no data";
  }
  s << ")";
  return s.str();
}

// --- MinMax -----------------------------------------------------------------------------------

MinMaxObserver::MinMaxObserver(ObserverOptions options) : Observer(std::move(options)) {
  QK_CHECK(!is_per_channel(), ValueError, type_name(),
           " is per tensor: use PerChannelMinMaxObserver for ",
           torch_qscheme_name(options_.qscheme));
}

namespace {
std::pair<float, float> tensor_minmax(const Tensor& x) {
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError, "observers take float32 tensors, got ",
           dtype_name(x.dtype()));
  const float* p = x.data<float>();
  float lo = kInf, hi = -kInf;
  bool nan = false;
  for (int64_t i = 0; i < x.numel(); ++i) {
    nan |= std::isnan(p[i]);
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  if (nan) return {NAN, NAN};
  return {lo, hi};
}
}  // namespace

void MinMaxObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  const auto [lo, hi] = tensor_minmax(x);
  float& mn = min_val_.data<float>()[0];
  float& mx = max_val_.data<float>()[0];
  mn = nan_min(lo, mn);
  mx = nan_max(hi, mx);
  has_data_ = true;
}

ObservedQParams MinMaxObserver::calculate_qparams() const {
  return quantkit::calculate_qparams(min_val_, max_val_, options_);
}

std::unique_ptr<Observer> MinMaxObserver::clone_empty() const {
  return std::make_unique<MinMaxObserver>(options_);
}

MovingAverageMinMaxObserver::MovingAverageMinMaxObserver(ObserverOptions options)
    : MinMaxObserver(std::move(options)) {}

void MovingAverageMinMaxObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  const auto [lo, hi] = tensor_minmax(x);
  float& mn = min_val_.data<float>()[0];
  float& mx = max_val_.data<float>()[0];
  if (mn == kInf && mx == -kInf) {
    mn = lo;
    mx = hi;
  } else {
    mn = moving_average(mn, lo, options_.averaging_constant);
    mx = moving_average(mx, hi, options_.averaging_constant);
  }
  has_data_ = true;
}

std::unique_ptr<Observer> MovingAverageMinMaxObserver::clone_empty() const {
  return std::make_unique<MovingAverageMinMaxObserver>(options_);
}

// --- per channel ------------------------------------------------------------------------------

ObserverOptions PerChannelMinMaxObserver::per_channel_defaults() {
  ObserverOptions o;
  o.qscheme = TorchQScheme::kPerChannelAffine;
  return o;
}

PerChannelMinMaxObserver::PerChannelMinMaxObserver(ObserverOptions options)
    : Observer(std::move(options)) {
  QK_CHECK(is_per_channel(), ValueError, type_name(), " needs a per-channel qscheme, got ",
           torch_qscheme_name(options_.qscheme));
  min_val_ = Tensor::empty({0}, DType::kFloat32);
  max_val_ = Tensor::empty({0}, DType::kFloat32);
}

std::pair<Tensor, Tensor> PerChannelMinMaxObserver::batch_minmax(const Tensor& x) const {
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError, "observers take float32 tensors, got ",
           dtype_name(x.dtype()));
  int64_t axis = options_.ch_axis;
  if (axis < 0) axis += x.dim();
  QK_CHECK(axis >= 0 && axis < x.dim(), ShapeError, type_name(), ": ch_axis ", options_.ch_axis,
           " out of range for a tensor of shape ", shape_to_string(x.shape()));
  const int64_t channels = x.size(axis);
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < x.dim(); ++d) inner *= x.size(d);
  const int64_t outer = channels == 0 ? 0 : x.numel() / (channels * std::max<int64_t>(inner, 1));
  Tensor lo = Tensor::empty({channels}, DType::kFloat32);
  Tensor hi = Tensor::empty({channels}, DType::kFloat32);
  const float* p = x.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    float mn = kInf, mx = -kInf;
    bool nan = false;
    for (int64_t o = 0; o < outer; ++o) {
      const float* row = p + (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        nan |= std::isnan(row[i]);
        mn = std::min(mn, row[i]);
        mx = std::max(mx, row[i]);
      }
    }
    lo.data<float>()[c] = nan ? NAN : mn;
    hi.data<float>()[c] = nan ? NAN : mx;
  }
  return {lo, hi};
}

void PerChannelMinMaxObserver::observe(const Tensor& x) {
  update(x, false);
}

void PerChannelMinMaxObserver::update(const Tensor& x, bool moving_average) {
  if (x.numel() == 0) return;
  auto [lo, hi] = batch_minmax(x);
  if (min_val_.numel() == 0) {
    min_val_ = lo;
    max_val_ = hi;
  } else {
    QK_CHECK(lo.numel() == min_val_.numel(), ShapeError, type_name(), ": saw ", lo.numel(),
             " channels after ", min_val_.numel());
    for (int64_t c = 0; c < lo.numel(); ++c) {
      float& mn = min_val_.data<float>()[c];
      float& mx = max_val_.data<float>()[c];
      const float batch_lo = lo.data<float>()[c], batch_hi = hi.data<float>()[c];
      mn = moving_average ? quantkit::moving_average(mn, batch_lo, options_.averaging_constant)
                          : nan_min(batch_lo, mn);
      mx = moving_average ? quantkit::moving_average(mx, batch_hi, options_.averaging_constant)
                          : nan_max(batch_hi, mx);
    }
  }
  has_data_ = true;
}

ObservedQParams PerChannelMinMaxObserver::calculate_qparams() const {
  return quantkit::calculate_qparams(min_val_, max_val_, options_);
}

std::unique_ptr<Observer> PerChannelMinMaxObserver::clone_empty() const {
  return std::make_unique<PerChannelMinMaxObserver>(options_);
}

MovingAveragePerChannelMinMaxObserver::MovingAveragePerChannelMinMaxObserver(
    ObserverOptions options)
    : PerChannelMinMaxObserver(std::move(options)) {}

void MovingAveragePerChannelMinMaxObserver::observe(const Tensor& x) {
  update(x, true);
}

std::unique_ptr<Observer> MovingAveragePerChannelMinMaxObserver::clone_empty() const {
  return std::make_unique<MovingAveragePerChannelMinMaxObserver>(options_);
}

// --- placeholder and percentile ----------------------------------------------------------------

PlaceholderObserver::PlaceholderObserver(ObserverOptions options) : Observer(std::move(options)) {}

ObservedQParams PlaceholderObserver::calculate_qparams() const {
  throw ValueError(
      "calculate_qparams should not be called for PlaceholderObserver: it only carries the "
      "dtype of a dynamically quantized activation");
}

std::unique_ptr<Observer> PlaceholderObserver::clone_empty() const {
  return std::make_unique<PlaceholderObserver>(options_);
}

PercentileObserver::PercentileObserver(ObserverOptions options) : Observer(std::move(options)) {
  QK_CHECK(!is_per_channel(), ValueError, "PercentileObserver is per tensor");
  QK_CHECK(options_.percentile > 50 && options_.percentile <= 100, ValueError,
           "percentile must be in (50, 100], got ", options_.percentile);
}

void PercentileObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError, "observers take float32 tensors");
  std::vector<float> v(x.data<float>(), x.data<float>() + x.numel());
  for (float f : v) {
    QK_CHECK(std::isfinite(f), ValueError, "PercentileObserver: non-finite value ", f,
             " in the calibration data");
  }
  const double top = options_.percentile / 100.0 * static_cast<double>(v.size() - 1);
  const auto hi_index = static_cast<int64_t>(std::llround(top));
  const auto lo_index = static_cast<int64_t>(v.size() - 1) - hi_index;
  std::nth_element(v.begin(), v.begin() + hi_index, v.end());
  const float hi = v[hi_index];
  std::nth_element(v.begin(), v.begin() + lo_index, v.end());
  const float lo = v[lo_index];
  sum_low_ += lo;
  sum_high_ += hi;
  ++batches_;
  min_val_.data<float>()[0] = static_cast<float>(sum_low_ / static_cast<double>(batches_));
  max_val_.data<float>()[0] = static_cast<float>(sum_high_ / static_cast<double>(batches_));
  has_data_ = true;
}

ObservedQParams PercentileObserver::calculate_qparams() const {
  return quantkit::calculate_qparams(min_val_, max_val_, options_);
}

std::unique_ptr<Observer> PercentileObserver::clone_empty() const {
  return std::make_unique<PercentileObserver>(options_);
}

ObserverFactory observer_factory(const std::string& name, ObserverOptions o) {
  auto make = [o]<typename T>() -> ObserverFactory {
    T{o};  // validate the options now, not at the first prepare()
    return [o] { return std::make_unique<T>(o); };
  };
  if (name == "MinMaxObserver") return make.operator()<MinMaxObserver>();
  if (name == "MovingAverageMinMaxObserver") return make.operator()<MovingAverageMinMaxObserver>();
  if (name == "PerChannelMinMaxObserver") return make.operator()<PerChannelMinMaxObserver>();
  if (name == "MovingAveragePerChannelMinMaxObserver") {
    return make.operator()<MovingAveragePerChannelMinMaxObserver>();
  }
  if (name == "HistogramObserver") return make.operator()<HistogramObserver>();
  if (name == "PlaceholderObserver") return make.operator()<PlaceholderObserver>();
  if (name == "PercentileObserver") return make.operator()<PercentileObserver>();
  throw ValueError("unknown observer '" + name +
                   "': known are MinMaxObserver, MovingAverageMinMaxObserver, "
                   "PerChannelMinMaxObserver, MovingAveragePerChannelMinMaxObserver, "
                   "HistogramObserver, PlaceholderObserver, PercentileObserver");
}

}  // namespace quantkit

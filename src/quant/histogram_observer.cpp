// PyTorch 1.13's HistogramObserver, operation for operation (../shared/golden/README.md §5 and
// qref.HistRef): float32 where torch uses float32 tensors, double where it uses Python floats.
#include <algorithm>
#include <cmath>
#include <limits>

#include "quantkit/quant/observer.h"

namespace quantkit {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Python int(tensor): truncation toward zero (the 1.13 quirk applied to the histogram range).
double truncate_to_int(float v) {
  return std::trunc(static_cast<double>(v));
}

// torch.histc(x, bins, min=lo, max=hi) on float32 data.
std::vector<float> histc(const float* x, int64_t n, int64_t bins, double lo, double hi) {
  if (lo == hi && n > 0) {
    lo = *std::min_element(x, x + n);
    hi = *std::max_element(x, x + n);
  }
  if (lo == hi) {
    lo -= 1;
    hi += 1;
  }
  const float left = static_cast<float>(lo);
  const float right = static_cast<float>(hi);
  const float width = right - left;
  const float fbins = static_cast<float>(bins);
  std::vector<float> h(static_cast<size_t>(bins), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    if (!(x[i] >= left && x[i] <= right)) continue;
    const float shifted = x[i] - left;
    const float scaled = shifted * fbins;
    const float pos = scaled / width;
    int64_t b = static_cast<int64_t>(pos);
    if (b >= bins) b = bins - 1;
    if (b < 0) b = 0;
    h[static_cast<size_t>(b)] += 1.0f;
  }
  return h;
}

// numpy's float32 floor_divide (npy_divmodf): fmod based, so it agrees with Python's //.
float floor_divide(float a, float b) {
  float mod = std::fmod(a, b);
  if (b == 0.0f) return a / b;
  float div = (a - mod) / b;
  if (mod != 0.0f && ((b < 0) != (mod < 0))) div -= 1.0f;
  float floordiv;
  if (div != 0.0f) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5f) floordiv += 1.0f;
  } else {
    floordiv = std::copysign(0.0f, a / b);
  }
  return floordiv;
}

float l2_norm_term(float a, float b, float density) {
  const float bb = b * b;
  const float b3 = bb * b;
  const float aa = a * a;
  const float a3 = aa * a;
  const float diff = b3 - a3;
  const float norm = diff / 3.0f;
  return density * norm;
}

// numpy's pairwise float64 sum, which the reference uses for totals: the search compares against
// fractions of the total, so its last bits matter.
double pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double r = 0.0;
    for (int64_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t half = n / 2;
  half -= half % 8;
  return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

}  // namespace

HistogramObserver::HistogramObserver(ObserverOptions options) : Observer(std::move(options)) {
  QK_CHECK(!is_per_channel(), ValueError, "HistogramObserver is per tensor, got ",
           torch_qscheme_name(options_.qscheme));
  QK_CHECK(options_.bins > 0 && options_.bins <= (1 << 20), ValueError,
           "HistogramObserver: bins must be in [1, 2^20], got ", options_.bins);
  QK_CHECK(options_.upsample_rate > 0 && options_.upsample_rate <= 4096, ValueError,
           "HistogramObserver: upsample_rate must be in [1, 4096], got ", options_.upsample_rate);
  histogram_.assign(static_cast<size_t>(options_.bins), 0.0f);
  // torch: 2 ** torch.iinfo(dtype).bits, i.e. 256 for both 8-bit types whatever the range.
  dst_nbins_ = options_.dtype == DType::kInt32 ? (int64_t{1} << 32) : 256;
}

void HistogramObserver::observe(const Tensor& x) {
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError, "observers take float32 tensors, got ",
           dtype_name(x.dtype()));
  const int64_t n = x.numel();
  if (n == 0) return;
  const float* p = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    QK_CHECK(std::isfinite(p[i]), ValueError, "HistogramObserver: non-finite value ", p[i],
             " at element ", i, " of the calibration data");
  }
  const int64_t bins = options_.bins;
  float& min_val = min_val_.data<float>()[0];
  float& max_val = max_val_.data<float>()[0];
  const float x_min = *std::min_element(p, p + n);
  const float x_max = *std::max_element(p, p + n);
  const bool uninitialised = min_val == kInf && max_val == -kInf;
  has_data_ = true;
  if (uninitialised || min_val == max_val) {
    min_val = x_min;
    max_val = x_max;
    histogram_ = histc(p, n, bins, truncate_to_int(min_val), truncate_to_int(max_val));
    return;
  }
  const float combined_min = std::min(x_min, min_val);
  float combined_max = std::max(x_max, max_val);
  // _adjust_min_max: widen the new range to a whole number of old bins (downsample_rate).
  const float hist_bin_width =
      (max_val - min_val) / static_cast<float>(bins * options_.upsample_rate);
  const float old_span = static_cast<float>(bins) * hist_bin_width;
  const float combined_span = combined_max - combined_min;
  const double ratio = std::ceil(static_cast<double>(combined_span / old_span));
  QK_CHECK(ratio <= 1e7, ValueError, "HistogramObserver: the calibration range grew by a factor ",
           ratio / static_cast<double>(options_.upsample_rate),
           " in one batch; use MinMaxObserver for data of this spread");
  const auto downsample = static_cast<int64_t>(ratio);
  const float extra = static_cast<float>(downsample) * old_span - combined_span;
  combined_max = combined_max + extra;
  const auto start =
      static_cast<int64_t>(std::nearbyint((min_val - combined_min) / hist_bin_width));
  std::vector<float> combined =
      histc(p, n, bins, truncate_to_int(combined_min), truncate_to_int(combined_max));
  if (combined_min == min_val && combined_max == max_val) {
    for (int64_t i = 0; i < bins; ++i) combined[i] = combined[i] + histogram_[i];
  } else {
    // _combine_histograms: upsample the old histogram, place it at `start` in the new range,
    // integrate in double and take every downsample-th value. Zeros outside the placed span add
    // nothing to the running sum, so only the span is walked.
    const int64_t up = options_.upsample_rate;
    const int64_t span_end = std::min(start + bins * up, bins * downsample);
    std::vector<double> integral(static_cast<size_t>(bins));
    double running = 0.0;
    int64_t j = std::max<int64_t>(start, 0);
    for (int64_t i = 0; i < bins; ++i) {
      const int64_t until = std::min(i * downsample + downsample - 1, span_end - 1);
      for (; j <= until; ++j) running += static_cast<double>(histogram_[(j - start) / up]);
      integral[i] = running;
    }
    for (int64_t i = 0; i < bins; ++i) {
      const double shifted =
          i == 0 ? 0.0 : static_cast<double>(static_cast<float>(integral[i - 1]));
      const double interp = (integral[i] - shifted) / static_cast<double>(up);
      combined[i] = combined[i] + static_cast<float>(interp);
    }
  }
  histogram_ = std::move(combined);
  min_val = combined_min;
  max_val = combined_max;
}

double HistogramObserver::quantization_error(int64_t begin, int64_t end) const {
  const int64_t bins = options_.bins;
  const float min_val = min_val_.data<float>()[0];
  const float max_val = max_val_.data<float>()[0];
  const double bin_width =
      (static_cast<double>(max_val) - static_cast<double>(min_val)) / static_cast<double>(bins);
  const double dst_bin_width =
      bin_width * static_cast<double>(end - begin + 1) / static_cast<double>(dst_nbins_);
  if (dst_bin_width == 0.0) return 0.0;
  const float bw = static_cast<float>(bin_width);
  const float dbw = static_cast<float>(dst_bin_width);
  const float half = static_cast<float>(dst_bin_width / 2);
  const float neg_half = static_cast<float>(-dst_bin_width / 2);
  const float last_dst = static_cast<float>(dst_nbins_ - 1);
  std::vector<double> errors(static_cast<size_t>(bins));
  for (int64_t i = 0; i < bins; ++i) {
    const float src_begin = static_cast<float>(i - begin) * bw;
    const float src_end = src_begin + bw;
    const float dst_begin = std::clamp(floor_divide(src_begin, dbw), 0.0f, last_dst);
    const float dst_begin_center = (dst_begin + 0.5f) * dbw;
    const float dst_end = std::clamp(floor_divide(src_end, dbw), 0.0f, last_dst);
    const float density = histogram_[i] / bw;
    float norm = 0.0f;
    const float delta_begin = src_begin - dst_begin_center;
    norm = norm + l2_norm_term(delta_begin, half, density);
    const float middle = l2_norm_term(neg_half, half, density);
    const float inner = dst_end - dst_begin - 1.0f;
    norm = norm + inner * middle;
    const float dst_end_center = dst_end * dbw + half;
    const float delta_end = src_end - dst_end_center;
    norm = norm + l2_norm_term(neg_half, delta_end, density);
    errors[i] = static_cast<double>(norm);
  }
  return pairwise_sum(errors.data(), bins);
}

std::pair<float, float> HistogramObserver::search_range() const {
  const int64_t bins = options_.bins;
  const float min_val = min_val_.data<float>()[0];
  const float max_val = max_val_.data<float>()[0];
  const float bin_width = (max_val - min_val) / static_cast<float>(bins);
  std::vector<float> cumulative(static_cast<size_t>(bins));
  std::vector<double> counts(histogram_.begin(), histogram_.end());
  double running = 0.0;
  for (int64_t i = 0; i < bins; ++i) {
    running += counts[i];
    cumulative[i] = static_cast<float>(running);
  }
  const double total = pairwise_sum(counts.data(), bins);
  constexpr double kStep = 1e-5;
  double alpha = 0.0, beta = 1.0;
  int64_t start = 0, end = bins - 1;
  double norm_min = std::numeric_limits<double>::infinity();
  while (alpha < beta) {
    const double next_alpha = alpha + kStep;
    const double next_beta = beta - kStep;
    int64_t l = start, r = end;
    while (l < end && cumulative[l] < static_cast<float>(next_alpha * total)) ++l;
    while (r > start && cumulative[r] > static_cast<float>(next_beta * total)) --r;
    int64_t next_start = start, next_end = end;
    if (l - start > end - r) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start && next_end == end) continue;
    const double norm = quantization_error(next_start, next_end);
    if (norm > norm_min) break;
    norm_min = norm;
    start = next_start;
    end = next_end;
  }
  const float new_min = min_val + bin_width * static_cast<float>(start);
  const float new_max = min_val + bin_width * static_cast<float>(end + 1);
  return {new_min, new_max};
}

ObservedQParams HistogramObserver::calculate_qparams() const {
  if (!has_data_) return quantkit::calculate_qparams(min_val_, max_val_, options_);
  const auto [lo, hi] = search_range();
  return quantkit::calculate_qparams(Tensor::from_floats({lo}, {}), Tensor::from_floats({hi}, {}),
                                     options_);
}

std::unique_ptr<Observer> HistogramObserver::clone_empty() const {
  return std::make_unique<HistogramObserver>(options_);
}

}  // namespace quantkit

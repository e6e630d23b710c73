// Observers: statistics collected over calibration data, turned into quantization parameters.
// The PyTorch observers (torch.ao.quantization.observer) reproduce PyTorch 1.13's float32
// arithmetic exactly, so scales and zero points are bit-identical (see
// ../shared/golden/README.md §5); PercentileObserver is quantkit's own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "quantkit/quant/pytorch.h"

namespace quantkit {

/// Constructor arguments shared by every observer (PyTorch's keyword arguments).
struct ObserverOptions {
  DType dtype = DType::kUInt8;  // quint8 = kUInt8, qint8 = kInt8, qint32 = kInt32
  TorchQScheme qscheme = TorchQScheme::kPerTensorAffine;
  bool reduce_range = false;
  std::optional<int64_t> quant_min;  // both or neither: a customised integer range
  std::optional<int64_t> quant_max;
  float eps = 1.1920928955078125e-07f;  // torch.finfo(float32).eps
  double averaging_constant = 0.01;     // moving-average observers
  int64_t ch_axis = 0;                  // per-channel observers
  int64_t bins = 2048;                  // HistogramObserver
  int64_t upsample_rate = 128;          // HistogramObserver
  double percentile = 99.99;            // PercentileObserver: upper percentile, in percent
};

/// What calculate_qparams returns: float32 scales [1] or [C]; int64 zero points, or float32 ones
/// for per_channel_affine_float_qparams.
struct ObservedQParams {
  Tensor scale;
  Tensor zero_point;
  /// Per-tensor convenience: the one scale (as PyTorch's double q_scale()) and zero point.
  double scale_value() const;
  int64_t zero_point_value() const;
};

/// The PyTorch integer range of an observer: customised (halved with floor division under
/// reduce_range) or the dtype's full range (halved under reduce_range). Throws ValueError for a
/// custom range that does not contain 0 or does not fit the dtype.
std::pair<int64_t, int64_t> observer_quant_range(const ObserverOptions& options);

/// UniformQuantizationObserverBase._calculate_qparams on float32 min/max ([] or [C]).
ObservedQParams calculate_qparams(const Tensor& min_val, const Tensor& max_val,
                                  const ObserverOptions& options);

class Observer {
 public:
  explicit Observer(ObserverOptions options);
  virtual ~Observer() = default;
  /// PyTorch's class name ("MinMaxObserver").
  virtual std::string type_name() const = 0;
  /// Records `x` (float32); the forward pass of the observer module.
  virtual void observe(const Tensor& x) = 0;
  /// Scale and zero point from what was observed. Throws ValueError when the statistics hold a
  /// NaN, as PyTorch asserts. An observer that has seen nothing returns PyTorch's defaults
  /// (scale 1, zero point 0); workflows check has_data() first and name the observer.
  virtual ObservedQParams calculate_qparams() const = 0;
  /// A fresh observer with the same options (what a QConfig factory returns).
  virtual std::unique_ptr<Observer> clone_empty() const = 0;
  /// True once observe() has seen at least one element.
  bool has_data() const { return has_data_; }
  const ObserverOptions& options() const { return options_; }
  int64_t quant_min() const { return quant_min_; }
  int64_t quant_max() const { return quant_max_; }
  bool is_per_channel() const;
  /// Running statistics: float32 [] (per tensor) or [C] (per channel).
  const Tensor& min_val() const { return min_val_; }
  const Tensor& max_val() const { return max_val_; }
  /// "MinMaxObserver(quint8 per_tensor_affine 0..255, min=-1.2, max=3.4)"
  std::string describe() const;

 protected:
  ObserverOptions options_;
  int64_t quant_min_;
  int64_t quant_max_;
  Tensor min_val_;
  Tensor max_val_;
  bool has_data_ = false;
};

/// Running min and max (or their moving averages, averaging_constant > 0 and moving = true).
class MinMaxObserver : public Observer {
 public:
  explicit MinMaxObserver(ObserverOptions options = {});
  std::string type_name() const override { return "MinMaxObserver"; }
  void observe(const Tensor& x) override;
  ObservedQParams calculate_qparams() const override;
  std::unique_ptr<Observer> clone_empty() const override;
};

class MovingAverageMinMaxObserver : public MinMaxObserver {
 public:
  explicit MovingAverageMinMaxObserver(ObserverOptions options = {});
  std::string type_name() const override { return "MovingAverageMinMaxObserver"; }
  void observe(const Tensor& x) override;
  std::unique_ptr<Observer> clone_empty() const override;
};

/// Min and max per index of options.ch_axis (default qscheme: per_channel_affine).
class PerChannelMinMaxObserver : public Observer {
 public:
  explicit PerChannelMinMaxObserver(ObserverOptions options = per_channel_defaults());
  std::string type_name() const override { return "PerChannelMinMaxObserver"; }
  void observe(const Tensor& x) override;
  ObservedQParams calculate_qparams() const override;
  std::unique_ptr<Observer> clone_empty() const override;
  static ObserverOptions per_channel_defaults();

 protected:
  /// Per-channel min and max of one batch.
  std::pair<Tensor, Tensor> batch_minmax(const Tensor& x) const;
  /// Folds a batch into the running statistics: min/max, or their moving averages.
  void update(const Tensor& x, bool moving_average);
};

class MovingAveragePerChannelMinMaxObserver : public PerChannelMinMaxObserver {
 public:
  explicit MovingAveragePerChannelMinMaxObserver(ObserverOptions options = per_channel_defaults());
  std::string type_name() const override { return "MovingAveragePerChannelMinMaxObserver"; }
  void observe(const Tensor& x) override;
  std::unique_ptr<Observer> clone_empty() const override;
};

/// PyTorch's HistogramObserver: a running histogram of `bins` bins, and at calculate_qparams
/// the clipping range that minimises the L2 quantization error over it (with torch 1.13's quirk
/// of truncating the histogram range to integers).
class HistogramObserver : public Observer {
 public:
  explicit HistogramObserver(ObserverOptions options = {});
  std::string type_name() const override { return "HistogramObserver"; }
  void observe(const Tensor& x) override;
  ObservedQParams calculate_qparams() const override;
  std::unique_ptr<Observer> clone_empty() const override;
  const std::vector<float>& histogram() const { return histogram_; }
  /// The clipping range chosen by the L2 search (_non_linear_param_search).
  std::pair<float, float> search_range() const;

 private:
  double quantization_error(int64_t begin_bin, int64_t end_bin) const;
  std::vector<float> histogram_;
  int64_t dst_nbins_;
};

/// Records nothing; carries the dtype of a dynamically quantized activation
/// (default_dynamic_qconfig). calculate_qparams throws.
class PlaceholderObserver : public Observer {
 public:
  explicit PlaceholderObserver(ObserverOptions options = {});
  std::string type_name() const override { return "PlaceholderObserver"; }
  void observe(const Tensor&) override {}
  ObservedQParams calculate_qparams() const override;
  std::unique_ptr<Observer> clone_empty() const override;
};

/// Clips outliers: the range is the mean over batches of each batch's lower and upper
/// percentile (options.percentile and 100 - percentile), then PyTorch's qparams formula.
class PercentileObserver : public Observer {
 public:
  explicit PercentileObserver(ObserverOptions options = {});
  std::string type_name() const override { return "PercentileObserver"; }
  void observe(const Tensor& x) override;
  ObservedQParams calculate_qparams() const override;
  std::unique_ptr<Observer> clone_empty() const override;

 private:
  double sum_low_ = 0, sum_high_ = 0;
  int64_t batches_ = 0;
};

/// Builds a fresh observer; QConfig holds one per side (activation, weight).
using ObserverFactory = std::function<std::unique_ptr<Observer>()>;

/// Factories for a named observer class ("MinMaxObserver", "HistogramObserver", ...). Throws
/// ValueError naming the known classes for an unknown name.
ObserverFactory observer_factory(const std::string& class_name, ObserverOptions options);

/// "quint8" / "qint8" / "qint32" and "per_tensor_affine" ... as PyTorch spells them.
std::string torch_dtype_name(DType dtype);
DType parse_torch_dtype(const std::string& name);
std::string torch_qscheme_name(TorchQScheme qscheme);
TorchQScheme parse_torch_qscheme(const std::string& name);

}  // namespace quantkit

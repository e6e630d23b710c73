// FakeQuantize: an observer plus fake quantization with the observer's current qparams, as a
// module (PyTorch's FakeQuantize and FusedMovingAvgObsFakeQuantize), the building block of
// quantization-aware training. Each forward() first updates the statistics (when observation
// is enabled), recomputes scale and zero point, then fake-quantizes the input with them (when
// fake quantization is enabled).
#pragma once

#include "quantkit/nn/module.h"

namespace quantkit {

class FakeQuantize : public Module {
 public:
  /// fused = false: PyTorch's FakeQuantize, qparams from the observer's Python formula.
  /// fused = true: FusedMovingAvgObsFakeQuantize, qparams from the C++ ChooseQuantizationParams
  /// (symmetric schemes preserve sparsity: scale = max(|min| / 128, |max| / 127) for qint8).
  explicit FakeQuantize(ObserverFactory observer, bool fused = false);
  std::string type_name() const override {
    return fused_ ? "FusedMovingAvgObsFakeQuantize" : "FakeQuantize";
  }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;

  void enable_observer(bool on = true) { observer_enabled_ = on; }
  void enable_fake_quant(bool on = true) { fake_quant_enabled_ = on; }
  Observer& observer() { return *observer_; }
  /// Scale (float32 [1] or [C]) and integer zero point (int32) of the last forward().
  const Tensor& scale() const { return scale_; }
  const Tensor& zero_point() const { return zero_point_; }

 private:
  void update_qparams();
  std::unique_ptr<Observer> observer_;
  bool fused_;
  bool observer_enabled_ = true;
  bool fake_quant_enabled_ = true;
  Tensor scale_, zero_point_;
};

}  // namespace quantkit

#include "quantkit/nn/fake_quantize.h"

#include <sstream>

namespace quantkit {

FakeQuantize::FakeQuantize(ObserverFactory observer, bool fused)
    : observer_(observer()), fused_(fused) {
  scale_ = Tensor::from_floats({1.0f}, {1});
  zero_point_ = Tensor::zeros({1}, DType::kInt32);
  register_buffer("scale", &scale_);
  register_buffer("zero_point", &zero_point_);
}

std::string FakeQuantize::extra_repr() const {
  std::ostringstream s;
  s << "fake_quant_enabled=" << fake_quant_enabled_ << ", observer_enabled=" << observer_enabled_
    << ", observer=" << observer_->describe();
  return s.str();
}

void FakeQuantize::update_qparams() {
  const Observer& obs = *observer_;
  if (!fused_) {
    const ObservedQParams q = obs.calculate_qparams();
    scale_ = q.scale;
    zero_point_ = Tensor::empty(q.zero_point.shape(), DType::kInt32);
    for (int64_t i = 0; i < q.zero_point.numel(); ++i) {
      zero_point_.data<int32_t>()[i] = static_cast<int32_t>(q.zero_point.data<int64_t>()[i]);
    }
    return;
  }
  const bool symmetric = obs.options().qscheme == TorchQScheme::kPerTensorSymmetric ||
                         obs.options().qscheme == TorchQScheme::kPerChannelSymmetric;
  const int64_t n = obs.min_val().numel();
  scale_ = Tensor::empty({n}, DType::kFloat32);
  zero_point_ = Tensor::empty({n}, DType::kInt32);
  for (int64_t c = 0; c < n; ++c) {
    const DynamicQParams q =
        choose_qparams_dynamic(obs.min_val().data<float>()[c], obs.max_val().data<float>()[c],
                               obs.quant_min(), obs.quant_max(), symmetric);
    scale_.data<float>()[c] = static_cast<float>(q.scale);
    zero_point_.data<int32_t>()[c] = static_cast<int32_t>(q.zero_point);
  }
}

Value FakeQuantize::forward(const Value& value) {
  const Tensor& x = value.as_float(type_name());
  if (observer_enabled_) {
    observer_->observe(x);
    update_qparams();
  }
  if (!fake_quant_enabled_) return x;
  if (observer_->is_per_channel()) {
    return fake_quantize_per_channel_affine(x, scale_, zero_point_, observer_->options().ch_axis,
                                            observer_->quant_min(), observer_->quant_max())
        .output;
  }
  return fake_quantize_per_tensor_affine(x, scale_.data<float>()[0], zero_point_.data<int32_t>()[0],
                                         observer_->quant_min(), observer_->quant_max())
      .output;
}

}  // namespace quantkit

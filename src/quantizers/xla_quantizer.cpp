// Method "xla": the seed's torch_xla weight-only quantization (W8A16 / W4A16, per channel or
// blockwise, symmetric or with a float zero point, W = scale * w_int - zero_point), stored in
// torch_xla's own layout: NAME.weight int8 [N, K] (per channel) or [K/B, B, N] (blockwise),
// NAME.weight_scale and NAME.weight_zero_point float32 [N] or [K/B, N].
#include <cmath>

#include "quantkit/nn/layers.h"
#include "quantkit/nn/quantized_linear.h"
#include "quantkit/quantizers/quantizer.h"

namespace quantkit {
namespace {

// A Module around torch_xla's QuantizedLinear that keeps the layout tensors for saving.
class XlaLinear : public Module {
 public:
  XlaLinear(const Tensor& w_int, const Tensor& scale, const Tensor& zero_point, const Tensor& bias,
            int64_t in, int64_t out, int64_t block, bool int4)
      : w_int_(w_int),
        scale_(scale),
        zero_point_(zero_point),
        block_(block),
        int4_(int4),
        linear_(in, out, bias.defined(), block, int4) {
    linear_.load_quantized_weight(w_int, scale, zero_point);
    if (bias.defined()) linear_.set_bias(bias);
    bias_ = bias;
    register_parameter("bias", &bias_);
  }
  std::string type_name() const override { return "XlaQuantizedLinear"; }
  std::string extra_repr() const override {
    return std::string(int4_ ? "int4" : "int8") +
           (block_ > 0 ? ", block_size=" + std::to_string(block_) : ", per-channel") +
           (zero_point_.defined() ? ", zero_point" : ", symmetric");
  }
  Value forward(const Value& x) override { return linear_.forward(x.as_float(type_name())); }
  Tensor w_int_, scale_, zero_point_, bias_;
  int64_t block_;
  bool int4_;
  QuantizedLinear linear_;
};

// Quantizes W [N, K] into torch_xla's layout.
void quantize_xla(const Tensor& w, int64_t block, bool int4, bool symmetric, Tensor& w_int,
                  Tensor& scale, Tensor& zero_point) {
  const int64_t n = w.size(0), k = w.size(1), b = block > 0 ? block : k, blocks = k / b;
  const float qmax = int4 ? 7.0f : 127.0f, qmin = int4 ? -8.0f : -128.0f;
  w_int =
      block > 0 ? Tensor::empty({blocks, b, n}, DType::kInt8) : Tensor::empty({n, k}, DType::kInt8);
  const Shape qshape = block > 0 ? Shape{blocks, n} : Shape{n};
  scale = Tensor::empty(qshape, DType::kFloat32);
  zero_point = symmetric ? Tensor() : Tensor::empty(qshape, DType::kFloat32);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < blocks; ++g) {
      const float* src = w.data<float>() + r * k + g * b;
      float lo = src[0], hi = src[0];
      for (int64_t i = 0; i < b; ++i) lo = std::min(lo, src[i]), hi = std::max(hi, src[i]);
      float s, zp = 0.0f;
      if (symmetric) {
        s = std::max(std::fabs(lo), std::fabs(hi)) / qmax;
      } else {
        lo = std::min(lo, 0.0f);
        hi = std::max(hi, 0.0f);
        s = (hi - lo) / (qmax - qmin);
      }
      if (!(s > 0.0f)) s = 1.0f;
      if (!symmetric) zp = s * qmin - lo;  // W = s * q - zp maps qmin to lo
      const int64_t qi = block > 0 ? g * n + r : r;
      scale.data<float>()[qi] = s;
      if (!symmetric) zero_point.data<float>()[qi] = zp;
      for (int64_t i = 0; i < b; ++i) {
        const float q = std::clamp(std::nearbyint((src[i] + zp) / s), qmin, qmax);
        const int64_t at = block > 0 ? (g * b + i) * n + r : r * k + g * b + i;
        w_int.data<int8_t>()[at] = static_cast<int8_t>(q);
      }
    }
  }
}

class XlaQuantizer : public Quantizer {
 public:
  using Quantizer::Quantizer;
  bool requires_calibration() const override { return false; }
  bool is_serializable() const override { return true; }
  bool is_trainable() const override { return false; }
  bool int4() const { return config_.weights == "int4"; }
  int64_t block() const { return config_.group_size > 0 ? config_.group_size : -1; }

  void validate_environment(Module& model) const override {
    QK_CHECK(config_.weights == "int8" || config_.weights == "int4", ValueError,
             "method 'xla' takes int8 or int4 weights, got ", config_.weights);
    QK_CHECK(config_.activations == "none", ValueError,
             "method 'xla' is weight-only here; use dynamic_int8 for W8A8");
    const auto names = convertible_linears(model, config_.modules_to_not_convert);
    QK_CHECK(!names.empty(), ValueError, "method 'xla': the model has no Linear to convert");
    for (const auto& name : names) {
      const int64_t k = static_cast<Linear&>(model.find(name)).in_features;
      QK_CHECK(block() < 0 || k % block() == 0, ValueError, "method 'xla': '", name,
               "' has in_features ", k, ", not a multiple of block_size ", block(),
               " (torch_xla's blockwise layout needs whole blocks; use method 'linear' for "
               "partial groups)");
    }
  }
  void process_model_before_weight_loading(Module& model, bool) override {
    selected_ = convertible_linears(model, config_.modules_to_not_convert);
  }
  void process_model_after_weight_loading(Module& model) override {
    for (const auto& name : selected_) {
      const auto& l = static_cast<Linear&>(model.find(name));
      Tensor w_int, scale, zp;
      quantize_xla(l.weight, block(), int4(), config_.symmetric, w_int, scale, zp);
      model.replace(name, std::make_shared<XlaLinear>(w_int, scale, zp, l.bias, l.in_features,
                                                      l.out_features, block(), int4()));
    }
  }
  std::vector<std::string> load_pre_quantized(Module& model, const Checkpoint& ckpt) override {
    std::vector<std::string> used;
    for (const auto& name : selected_) {
      const auto& l = static_cast<Linear&>(model.find(name));
      const std::string w = name + ".weight", s = name + ".weight_scale",
                        z = name + ".weight_zero_point";
      const Tensor w_int = ckpt.tensor(w);
      QK_CHECK(w_int.dtype() == DType::kInt8, FormatError, "'", w, "' must be int8 (xla layout)");
      const Tensor zp = config_.symmetric ? Tensor() : ckpt.tensor(z);
      model.replace(name,
                    std::make_shared<XlaLinear>(w_int, ckpt.tensor(s), zp, l.bias, l.in_features,
                                                l.out_features, block(), int4()));
      used.insert(used.end(), {w, s});
      if (!config_.symmetric) used.push_back(z);
    }
    return used;
  }
  std::map<std::string, QTensor> quantized_tensors(Module&) const override { return {}; }
  std::map<std::string, Tensor> extra_tensors(Module& model) const override {
    std::map<std::string, Tensor> out;
    for (auto& [name, m] : model.named_modules()) {
      if (m->type_name() != "XlaQuantizedLinear") continue;
      const auto& x = static_cast<XlaLinear&>(*m);
      out[name + ".weight"] = x.w_int_;
      out[name + ".weight_scale"] = x.scale_;
      if (x.zero_point_.defined()) out[name + ".weight_zero_point"] = x.zero_point_;
    }
    return out;
  }
};

}  // namespace

std::unique_ptr<Quantizer> make_xla_quantizer(const QuantizationConfig& config) {
  return std::make_unique<XlaQuantizer>(config);
}

}  // namespace quantkit

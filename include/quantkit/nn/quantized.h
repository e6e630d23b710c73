// Quantized modules: what convert(), quantize_dynamic() and the weight-only workflow put in place
// of float modules. They are built from explicit weights and qparams; the workflows compute
// those from observers (workflows/quantize.h).
//
// Static int8 arithmetic (PyTorch's quantized Linear/Conv on x86 and oneDNN):
//   acc = sum (xq - x_zp) * (wq - w_zp[o])                      exact int32
//   y   = acc * (x_scale * w_scale[o]) + bias[o]                 float64
//   q   = clamp(round_half_even(y / out_scale) + out_zp, qmin, qmax), fused ReLU: max(q, out_zp)
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "quantkit/kernels/int8_gemm.h"
#include "quantkit/kernels/linear.h"
#include "quantkit/nn/layers.h"

namespace quantkit {

/// int8 weight with per-tensor or per-output-channel (axis 0) scales and zero points, plus its
/// int16 packing for the integer GEMM.
struct Int8Weight {
  Tensor codes;                      // int8, the float weight's shape
  std::vector<double> scales;        // 1 (per tensor) or out_channels
  std::vector<int64_t> zero_points;  // same length as scales
  Int16Rows packed;                  // [out, in * kernel volume], zero points subtracted
  /// Packs `codes` ([out, ...] int8). Throws on mismatched lengths or non-positive scales.
  Int8Weight(Tensor codes, std::vector<double> scales, std::vector<int64_t> zero_points);
  Int8Weight() = default;
  bool per_channel() const { return scales.size() > 1; }
  double scale(int64_t channel) const { return scales[per_channel() ? channel : 0]; }
  Tensor dequantize() const;
};

/// Output quantization of a static layer.
struct OutputQParams {
  double scale = 1.0;
  int64_t zero_point = 0;
  DType dtype = DType::kUInt8;  // quint8 or qint8
};

/// Float -> quantized (PyTorch's nnq.Quantize).
class Quantize : public Module {
 public:
  explicit Quantize(OutputQParams output) : qparams(output) {}
  std::string type_name() const override { return "Quantize"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  OutputQParams qparams;
};

/// Quantized -> float.
class DeQuantize : public Module {
 public:
  std::string type_name() const override { return "DeQuantize"; }
  Value forward(const Value& x) override { return Value(x.to_float()); }
};

/// Static int8 Linear (optionally with fused ReLU): quantized in, quantized out.
class StaticQuantizedLinear : public Module {
 public:
  StaticQuantizedLinear(Int8Weight weight, Tensor bias, OutputQParams output, bool relu);
  std::string type_name() const override {
    return relu ? "QuantizedLinearReLU" : "QuantizedLinear";
  }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  Int8Weight weight;
  Tensor bias;  // float32 [out] or undefined
  OutputQParams output;
  bool relu;
};

/// Static int8 Conv1d/2d/3d (optionally with fused ReLU): im2col on the codes (padding reads the
/// input zero point, i.e. real zero) + the integer GEMM.
class StaticQuantizedConv : public Module {
 public:
  StaticQuantizedConv(int dims, ConvOptions options, Int8Weight weight, Tensor bias,
                      OutputQParams output, bool relu);
  std::string type_name() const override;
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  int dims;
  ConvOptions options;
  Int8Weight weight;
  Tensor bias;
  OutputQParams output;
  bool relu;

 private:
  std::vector<Int16PairPanel> panels_;  // one per group
};

/// Dynamic int8 Linear (PyTorch's nnqd.Linear): float in, float out. Each call quantizes x to
/// quint8 per tensor from its min/max (reduce_range on the x86/oneDNN engines, not on QNNPACK),
/// then y = acc * ((float)x_scale * (float)w_scale[o]) + bias in float32.
class DynamicQuantizedLinear : public Module {
 public:
  DynamicQuantizedLinear(Int8Weight weight, Tensor bias, QEngine engine, bool relu = false);
  std::string type_name() const override {
    return relu ? "DynamicQuantizedLinearReLU" : "DynamicQuantizedLinear";
  }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  Int8Weight weight;
  Tensor bias;
  QEngine engine;
  bool relu;
  /// The input qparams chosen by the last forward() (for tests and debugging).
  DynamicQParams last_input_qparams{1.0, 0};
};

/// Weight-only (quanto QLinear): int8/int4/int2/fp8 weights packed for the weight-only kernels,
/// float activations, optionally fake-quantized to int8 or fp8 with a calibrated per-tensor
/// scale (activation_scale > 0) before the matmul, or quantized per token (row) to int8 on the
/// fly and multiplied with integer dot products (W8A8 / W4A8, linear_dynamic_int8).
enum class ActivationQuant { kNone, kInt8, kFloat8E4M3, kInt8DynamicPerToken };
class WeightOnlyLinear : public Module {
 public:
  WeightOnlyLinear(const QTensor& weight, Tensor bias, ActivationQuant activations);
  std::string type_name() const override { return "QLinear"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  QTensor weight;
  PackedLinearWeight packed;
  Tensor bias;
  ActivationQuant activations;
  /// float32 [1]: the calibrated activation scale; 0 = not calibrated yet (activations pass
  /// unquantized). A buffer, so it is saved and loaded with the model.
  Tensor activation_scale;
  /// Undefined, or float32 [in_features] multiplying each input feature before anything else
  /// (AWQ stores 1/s here and the weight columns times s). A buffer like activation_scale.
  Tensor input_scale;
  /// While true, forward() records the input's absolute maximum (calibration).
  bool calibrating = false;
  float observed_absmax = 0.0f;
};

/// Runs modules that all take the same input x and returns their outputs (float32) in order:
/// a layer's q/k/v or gate/up projections. When every one is a plain QLinear (no input scaling,
/// not calibrating, no output observer) with the same activations, weight-only or dynamic
/// per-token int8, they run together through linear_weight_only_shared_input or
/// linear_dynamic_int8_shared_input, bit-identical to running each; otherwise each runs its own
/// forward.
std::vector<Tensor> forward_shared_input(const std::vector<Module*>& modules, const Tensor& x);

/// Elementwise function on a quantized input, requantized to fixed output qparams through a
/// 256-entry table built for the input's qparams (quantized Hardswish, Sigmoid, Tanh, GELU, ...).
class QuantizedActivation : public Module {
 public:
  QuantizedActivation(ActivationKind kind, OutputQParams output);
  std::string type_name() const override;
  Value forward(const Value& x) override;
  ActivationKind kind;
  OutputQParams output;

 private:
  std::vector<uint8_t> table_;
  double table_scale_ = 0;
  int64_t table_zero_point_ = 0;
  DType table_dtype_ = DType::kUInt8;
};

/// FloatFunctional for quantized values (PyTorch's QFunctional): every op dequantizes its inputs,
/// computes in float and requantizes to the observed output qparams.
class QuantizedFunctional : public FloatFunctional {
 public:
  explicit QuantizedFunctional(OutputQParams out) : output(out) {}
  std::string type_name() const override { return "QFunctional"; }
  Value add(const Value& a, const Value& b) override;
  Value add_relu(const Value& a, const Value& b) override;
  Value mul(const Value& a, const Value& b) override;
  Value cat(const std::vector<Value>& values, int64_t dim = 0) override;
  OutputQParams output;
};

/// Quantizes float `x` to per-tensor codes with PyTorch's rounding (x * (1/scale), half to even).
Value quantize_value(const Tensor& x, const OutputQParams& qparams);

}  // namespace quantkit

// PyTorch's quantization API on top of the affine primitive: qschemes and dtypes as presets, and
// the torch.* quantize / fake-quantize functions with PyTorch's exact CPU numerics (see
// ../shared/golden/README.md). quint8 = DType::kUInt8, qint8 = DType::kInt8, qint32 =
// DType::kInt32.
#pragma once

#include <cstdint>

#include "quantkit/quant/qtensor.h"

namespace quantkit {

enum class TorchQScheme {
  kPerTensorAffine,
  kPerTensorSymmetric,
  kPerChannelAffine,
  kPerChannelSymmetric,
  kPerChannelAffineFloatQParams,  // embeddings: float zero point
};

/// PyTorch's quantized engines; they differ in whether reduce_range is honoured.
enum class QEngine { kX86, kOneDNN, kQNNPACK };

/// The AffineSpec that PyTorch's observers use for `dtype` (quint8/qint8/qint32) and `qscheme`.
/// Per-channel schemes quantize along `ch_axis` and keep float64 scales, as torch does.
AffineSpec torch_spec(DType dtype, TorchQScheme qscheme, int64_t ch_axis = 0,
                      bool reduce_range = false);

/// torch.quantize_per_tensor(x, scale, zero_point, dtype).
QTensor quantize_per_tensor(const Tensor& x, double scale, int64_t zero_point, DType dtype);
/// torch.quantize_per_channel(x, scales, zero_points, axis, dtype); scales float64 or float32
/// [C], zero points int64 or int32 [C], C = x.size(axis).
QTensor quantize_per_channel(const Tensor& x, const Tensor& scales, const Tensor& zero_points,
                             int64_t axis, DType dtype);

/// Result of PyTorch's C++ ChooseQuantizationParams (double scale, as q_scale() reports it).
struct DynamicQParams {
  double scale;
  int64_t zero_point;
};
/// quant_utils::ChooseQuantizationParams for the range [min, max] and integer range [qmin, qmax]
/// (already reduced if reduce_range applies). preserve_sparsity makes a symmetric range, as the
/// fused QAT observers do. Throws ValueError for NaN, Inf or min > max.
DynamicQParams choose_qparams_dynamic(float min, float max, int64_t qmin, int64_t qmax,
                                      bool preserve_sparsity = false);
/// torch.quantize_per_tensor_dynamic(x, dtype, reduce_range) under `engine` (QNNPACK ignores
/// reduce_range). `chosen`, if given, receives the double scale and the zero point.
QTensor quantize_per_tensor_dynamic(const Tensor& x, DType dtype, bool reduce_range,
                                    QEngine engine = QEngine::kOneDNN,
                                    DynamicQParams* chosen = nullptr);

/// torch.fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max); `mask`
/// gives the backward pass (fake_quantize_backward).
FakeQuantized fake_quantize_per_tensor_affine(const Tensor& x, double scale, int64_t zero_point,
                                              int64_t quant_min, int64_t quant_max);
/// torch.fake_quantize_per_channel_affine; zero_point int32 (rounded domain) or float32 (not
/// rounded, x*inv+zp fused into one FMA as PyTorch's CPU kernel does).
FakeQuantized fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale,
                                               const Tensor& zero_point, int64_t axis,
                                               int64_t quant_min, int64_t quant_max);

/// Learnable (LSQ) fake quantization: forward output and gradients w.r.t. x, scale, zero point.
struct LearnableFakeQuantGrads {
  Tensor output;
  Tensor grad_input;
  Tensor grad_scale;       // float32, shape of scale
  Tensor grad_zero_point;  // float32, shape of zero_point
};
/// torch._fake_quantize_learnable_per_tensor_affine forward + backward for upstream grad `dy`.
LearnableFakeQuantGrads fake_quantize_learnable_per_tensor_affine(
    const Tensor& x, float scale, float zero_point, int64_t quant_min, int64_t quant_max,
    double grad_factor, const Tensor& dy);
/// torch._fake_quantize_learnable_per_channel_affine forward + backward.
LearnableFakeQuantGrads fake_quantize_learnable_per_channel_affine(
    const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis, int64_t quant_min,
    int64_t quant_max, double grad_factor, const Tensor& dy);

}  // namespace quantkit

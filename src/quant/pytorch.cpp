#include "quantkit/quant/pytorch.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "block_walk.h"
#include "element_ops.h"

namespace quantkit {
namespace {

void check_torch_dtype(DType dtype, const char* fn) {
  QK_CHECK(dtype == DType::kUInt8 || dtype == DType::kInt8 || dtype == DType::kInt32, DTypeError,
           fn, ": dtype must be quint8 (uint8), qint8 (int8) or qint32 (int32), got ",
           dtype_name(dtype));
}

void check_scale(double scale, const char* fn) {
  QK_CHECK(std::isfinite(scale) && scale > 0.0, ValueError, fn,
           ": scale must be positive and finite, got ", scale);
}

/// A spec whose dtype can hold [qmin, qmax]; fake quantization only needs the range.
AffineSpec spec_for_range(int64_t qmin, int64_t qmax, Granularity g, const char* fn) {
  QK_CHECK(qmin < qmax, ValueError, fn, ": quant_min (", qmin, ") must be smaller than quant_max (",
           qmax, ")");
  QK_CHECK(
      qmin >= std::numeric_limits<int32_t>::min() && qmax <= std::numeric_limits<int32_t>::max(),
      ValueError, fn, ": range [", qmin, ", ", qmax, "] does not fit int32");
  DType dtype = DType::kInt32;
  if (qmin >= -128 && qmax <= 127)
    dtype = DType::kInt8;
  else if (qmin >= 0 && qmax <= 255)
    dtype = DType::kUInt8;
  AffineSpec spec = AffineSpec::for_dtype(dtype, std::move(g));
  spec.quant_min = qmin;
  spec.quant_max = qmax;
  spec.mapping = MappingType::kAsymmetric;
  spec.zero_point_domain = ZeroPointDomain::kInt;
  return spec;
}

Tensor to_int32_tensor(const Tensor& t, const char* fn, const char* what) {
  if (t.dtype() == DType::kInt32) return t;
  QK_CHECK(t.dtype() == DType::kInt64, DTypeError, fn, ": ", what, " must be int64 or int32, got ",
           dtype_name(t.dtype()));
  Tensor out = Tensor::empty(t.shape(), DType::kInt32);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int64_t v = t.data<int64_t>()[i];
    QK_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(),
             ValueError, fn, ": ", what, "[", i, "] = ", v, " does not fit int32");
    out.data<int32_t>()[i] = static_cast<int32_t>(v);
  }
  return out;
}

void check_channels(const Tensor& x, const Tensor& params, int64_t axis, const char* fn,
                    const char* what) {
  const int64_t channels = x.size(axis);
  QK_CHECK(params.dim() == 1 && params.numel() == channels, ShapeError, fn, ": ", what,
           " has shape ", shape_to_string(params.shape()), " but x has ", channels,
           " channels along axis ", axis);
}

}  // namespace

AffineSpec torch_spec(DType dtype, TorchQScheme qscheme, int64_t ch_axis, bool reduce_range) {
  check_torch_dtype(dtype, "torch_spec");
  const bool per_channel =
      qscheme != TorchQScheme::kPerTensorAffine && qscheme != TorchQScheme::kPerTensorSymmetric;
  AffineSpec spec = AffineSpec::for_dtype(
      dtype, per_channel ? Granularity::per_axis(ch_axis) : Granularity::per_tensor());
  spec.reduce_range = reduce_range;
  spec.scale_dtype = per_channel ? DType::kFloat64 : DType::kFloat32;
  switch (qscheme) {
    case TorchQScheme::kPerTensorAffine:
    case TorchQScheme::kPerChannelAffine:
      spec.mapping = MappingType::kAsymmetric;
      spec.zero_point_domain = ZeroPointDomain::kInt;
      break;
    case TorchQScheme::kPerTensorSymmetric:
    case TorchQScheme::kPerChannelSymmetric:
      spec.mapping = MappingType::kSymmetric;
      spec.zero_point_domain = ZeroPointDomain::kInt;
      break;
    case TorchQScheme::kPerChannelAffineFloatQParams:
      spec.mapping = MappingType::kAsymmetric;
      spec.zero_point_domain = ZeroPointDomain::kFloat;
      spec.scale_dtype = DType::kFloat32;
      break;
  }
  return spec;
}

QTensor quantize_per_tensor(const Tensor& x, double scale, int64_t zero_point, DType dtype) {
  check_torch_dtype(dtype, "quantize_per_tensor");
  check_scale(scale, "quantize_per_tensor");
  AffineSpec spec = AffineSpec::for_dtype(dtype);
  QK_CHECK(zero_point >= spec.quant_min && zero_point <= spec.quant_max, ValueError,
           "quantize_per_tensor: zero_point ", zero_point, " is outside the range of ",
           dtype_name(dtype), " [", spec.quant_min, ", ", spec.quant_max, "]");
  QParams qp{Tensor::from_floats({static_cast<float>(scale)}, {}),
             Tensor::from_values<int32_t>(std::vector<int32_t>{static_cast<int32_t>(zero_point)},
                                          {}, DType::kInt32)};
  // Scalars broadcast: reshape the 0-d qparams to the per-tensor block grid of x.
  const Shape grid(x.shape().size(), 1);
  qp.scale = qp.scale.reshape(grid);
  qp.zero_point = qp.zero_point.reshape(grid);
  return quantize(x, spec, qp);
}

QTensor quantize_per_channel(const Tensor& x, const Tensor& scales, const Tensor& zero_points,
                             int64_t axis, DType dtype) {
  check_torch_dtype(dtype, "quantize_per_channel");
  QK_CHECK(x.dim() >= 1, ShapeError, "quantize_per_channel: x must have rank >= 1");
  check_channels(x, scales, axis, "quantize_per_channel", "scales");
  check_channels(x, zero_points, axis, "quantize_per_channel", "zero_points");
  AffineSpec spec = torch_spec(dtype, TorchQScheme::kPerChannelAffine, axis);
  QParams qp{scales.to(DType::kFloat64),
             to_int32_tensor(zero_points, "quantize_per_channel", "zero_points")};
  Shape grid(x.shape().size(), 1);
  grid[static_cast<size_t>(axis < 0 ? axis + x.dim() : axis)] = scales.numel();
  qp.scale = qp.scale.reshape(grid);
  qp.zero_point = qp.zero_point.reshape(grid);
  for (int64_t c = 0; c < scales.numel(); ++c)
    check_scale(qp.scale.data<double>()[c], "quantize_per_channel");
  return quantize(x, spec, qp);
}

DynamicQParams choose_qparams_dynamic(float min, float max, int64_t qmin, int64_t qmax,
                                      bool preserve_sparsity) {
  QK_CHECK(!std::isnan(min) && !std::isnan(max), ValueError,
           "In ChooseQuantizationParams, min should be less than or equal to max (the input "
           "contains NaN)");
  QK_CHECK(std::isfinite(min) && std::isfinite(max), ValueError,
           "ChooseQuantizationParams: the range [", min, ", ", max,
           "] is not finite; clamp or remove Inf values before dynamic quantization");
  QK_CHECK(min <= max, ValueError,
           "In ChooseQuantizationParams, min should be less than or equal to max, got ", min, " > ",
           max);
  QK_CHECK(qmin < qmax, ValueError, "ChooseQuantizationParams: qmin ", qmin, " must be below qmax ",
           qmax);
  const bool symmetric = min < 0 && max > 0 && preserve_sparsity;
  if (symmetric) {
    const int64_t sym_qmin = -((qmax - qmin) / 2 + 1);
    const int64_t sym_qmax = (qmax - qmin) / 2;
    const double max_scale = std::max(std::fabs(min / static_cast<float>(sym_qmin)),
                                      std::fabs(max / static_cast<float>(sym_qmax)));
    min = static_cast<float>(max_scale * static_cast<double>(sym_qmin));
    max = static_cast<float>(max_scale * static_cast<double>(sym_qmax));
  }
  min = std::min(min, 0.0f);
  max = std::max(max, 0.0f);
  const auto range = static_cast<double>(qmax - qmin);
  double scale = (static_cast<double>(max) - min) / range;
  if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale)))
    scale = 0.1;
  constexpr float kSmallScale = 6.1e-5f;
  if (scale < static_cast<double>(kSmallScale)) {
    const auto original = static_cast<float>(scale);
    scale = kSmallScale;
    if (min == 0.0f) {
      max = kSmallScale * static_cast<float>(range);
    } else if (max == 0.0f) {
      min = -kSmallScale * static_cast<float>(range);
    } else {
      const float amplifier = kSmallScale / original;
      min *= amplifier;
      max *= amplifier;
    }
  }
  const double zp_from_min = static_cast<double>(qmin) - min / scale;
  const double zp_from_max = static_cast<double>(qmax) - max / scale;
  const double err_min = std::fabs(static_cast<double>(qmin)) - std::fabs(min / scale);
  const double err_max = std::fabs(static_cast<double>(qmax)) - std::fabs(max / scale);
  double zp = err_min < err_max ? zp_from_min : zp_from_max;
  if (symmetric) zp = static_cast<double>(qmin + qmax) / 2.0;
  int64_t nudged;
  if (zp < static_cast<double>(qmin)) {
    nudged = qmin;
  } else if (zp > static_cast<double>(qmax)) {
    nudged = qmax;
  } else {
    nudged = static_cast<int64_t>(std::nearbyint(zp));
  }
  return {scale, nudged};
}

QTensor quantize_per_tensor_dynamic(const Tensor& x, DType dtype, bool reduce_range, QEngine engine,
                                    DynamicQParams* chosen) {
  QK_CHECK(dtype == DType::kUInt8 || dtype == DType::kInt8, DTypeError,
           "quantize_per_tensor_dynamic: dtype must be quint8 or qint8, got ", dtype_name(dtype));
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError,
           "quantize_per_tensor_dynamic: x must be float32, got ", dtype_name(x.dtype()));
  const DTypeInfo& info = dtype_info(dtype);
  int64_t qmin = info.int_min, qmax = info.int_max;
  if (reduce_range && engine != QEngine::kQNNPACK) {
    qmin /= 2;  // C++ integer division, as PyTorch: -128 -> -64, 255 -> 127
    qmax /= 2;
  }
  float mn = 0.0f, mx = 0.0f;
  if (x.numel() > 0) {
    const Shape block = Granularity::per_tensor().block_size_for(x.shape());
    auto [mins, maxs] = block_minmax(x, block);
    mn = mins.data<float>()[0];
    mx = maxs.data<float>()[0];
  }
  const DynamicQParams qp = choose_qparams_dynamic(mn, mx, qmin, qmax);
  if (chosen != nullptr) *chosen = qp;
  return quantize_per_tensor(x, qp.scale, qp.zero_point, dtype);
}

FakeQuantized fake_quantize_per_tensor_affine(const Tensor& x, double scale, int64_t zero_point,
                                              int64_t quant_min, int64_t quant_max) {
  check_scale(scale, "fake_quantize_per_tensor_affine");
  AffineSpec spec = spec_for_range(quant_min, quant_max, Granularity::per_tensor(),
                                   "fake_quantize_per_tensor_affine");
  QK_CHECK(zero_point >= quant_min && zero_point <= quant_max, ValueError,
           "fake_quantize_per_tensor_affine: zero_point ", zero_point,
           " must be between quant_min and quant_max");
  const Shape grid(x.shape().size(), 1);
  QParams qp{Tensor::from_floats({static_cast<float>(scale)}, grid),
             Tensor::from_values<int32_t>(std::vector<int32_t>{static_cast<int32_t>(zero_point)},
                                          grid, DType::kInt32)};
  return fake_quantize(x, spec, qp);
}

FakeQuantized fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale,
                                               const Tensor& zero_point, int64_t axis,
                                               int64_t quant_min, int64_t quant_max) {
  const char* fn = "fake_quantize_per_channel_affine";
  QK_CHECK(x.dim() >= 1, ShapeError, fn, ": x must have rank >= 1");
  check_channels(x, scale, axis, fn, "scale");
  check_channels(x, zero_point, axis, fn, "zero_point");
  QK_CHECK(scale.dtype() == DType::kFloat32, DTypeError, fn, ": scale must be float32, got ",
           dtype_name(scale.dtype()));
  AffineSpec spec = spec_for_range(quant_min, quant_max, Granularity::per_axis(axis), fn);
  Shape grid(x.shape().size(), 1);
  grid[static_cast<size_t>(axis < 0 ? axis + x.dim() : axis)] = scale.numel();
  QParams qp{scale.reshape(grid), Tensor()};
  if (zero_point.dtype() == DType::kFloat32) {
    spec.zero_point_domain = ZeroPointDomain::kFloat;
    qp.zero_point = zero_point.reshape(grid);
  } else {
    QK_CHECK(zero_point.dtype() == DType::kInt32, DTypeError, fn,
             ": zero_point must be int32 or float32, got ", dtype_name(zero_point.dtype()));
    qp.zero_point = zero_point.reshape(grid);
    for (int64_t c = 0; c < zero_point.numel(); ++c) {
      const int32_t z = zero_point.data<int32_t>()[c];
      QK_CHECK(z >= quant_min && z <= quant_max, ValueError, fn, ": zero_point[", c, "] = ", z,
               " must be between quant_min and quant_max");
    }
  }
  return fake_quantize(x, spec, qp);
}

namespace {

/// Element-wise LSQ backward (shared by the per-tensor and per-channel variants; they differ
/// only in how the zero point is rounded, which the caller does).
struct LsqElement {
  float dx, dscale, dzero;
};

LsqElement lsq_element(float x, float dy, float s, float inv, float zp, int64_t qmin, int64_t qmax,
                       float gf) {
  const int64_t q = detail::to_int64_saturating(detail::round_half_even(std::fma(x, inv, zp)));
  const bool inside = q >= qmin && q <= qmax;
  const int64_t clamped = q < qmin ? qmin : (q > qmax ? qmax : q);
  const float xfq = (static_cast<float>(clamped) - zp) * s;
  LsqElement e{};
  e.dx = inside ? dy : 0.0f;
  if (inside) {
    e.dscale = ((dy * (xfq - x)) * inv) * gf;
    e.dzero = 0.0f;
  } else {
    const float edge = q < qmin ? static_cast<float>(qmin) - zp : static_cast<float>(qmax) - zp;
    e.dscale = (dy * edge) * gf;
    e.dzero = ((dy * -1.0f) * s) * gf;
  }
  return e;
}

LearnableFakeQuantGrads lsq(const Tensor& x, const Tensor& scale, const Tensor& zp_forward,
                            const Tensor& zp_backward, const Shape& block, const AffineSpec& spec,
                            double grad_factor, const Tensor& dy) {
  QK_CHECK(dy.shape() == x.shape() && dy.dtype() == DType::kFloat32, ShapeError,
           "learnable fake quantize: dy must be float32 with the shape of x ",
           shape_to_string(x.shape()));
  LearnableFakeQuantGrads out;
  out.output = fake_quantize(x, spec, QParams{scale, zp_forward}).output;
  out.grad_input = Tensor::empty(x.shape(), DType::kFloat32);
  std::vector<double> dscale(static_cast<size_t>(scale.numel()), 0.0), dzero(dscale.size(), 0.0);
  const float gf = static_cast<float>(grad_factor);
  const float* xs = x.data<float>();
  const float* dys = dy.data<float>();
  float* dx = out.grad_input.data<float>();
  detail::for_each_block_run(x.shape(), block, [&](int64_t offset, int64_t n, int64_t b) {
    const float s = scale.data<float>()[b];
    const float inv = 1.0f / s;
    const float zp = zp_backward.data<float>()[b];
    for (int64_t i = offset; i < offset + n; ++i) {
      const LsqElement e =
          lsq_element(xs[i], dys[i], s, inv, zp, spec.quant_min, spec.quant_max, gf);
      dx[i] = e.dx;
      dscale[static_cast<size_t>(b)] += e.dscale;
      dzero[static_cast<size_t>(b)] += e.dzero;
    }
  });
  out.grad_scale = Tensor::empty(scale.shape(), DType::kFloat32);
  out.grad_zero_point = Tensor::empty(scale.shape(), DType::kFloat32);
  for (size_t b = 0; b < dscale.size(); ++b) {
    out.grad_scale.data<float>()[b] = static_cast<float>(dscale[b]);
    out.grad_zero_point.data<float>()[b] = static_cast<float>(dzero[b]);
  }
  return out;
}

}  // namespace

LearnableFakeQuantGrads fake_quantize_learnable_per_tensor_affine(
    const Tensor& x, float scale, float zero_point, int64_t quant_min, int64_t quant_max,
    double grad_factor, const Tensor& dy) {
  const char* fn = "fake_quantize_learnable_per_tensor_affine";
  check_scale(scale, fn);
  QK_CHECK(std::isfinite(zero_point), ValueError, fn, ": zero_point must be finite, got ",
           zero_point);
  AffineSpec spec = spec_for_range(quant_min, quant_max, Granularity::per_tensor(), fn);
  const Shape grid(x.shape().size(), 1);
  const auto qmin = static_cast<float>(quant_min), qmax = static_cast<float>(quant_max);
  // PyTorch rounds the zero point differently in the two passes: half-to-even forward,
  // +0.5 and truncation backward.
  const int32_t zp_fwd = static_cast<int32_t>(std::clamp(std::nearbyint(zero_point), qmin, qmax));
  const float zp_bwd = std::trunc(std::clamp(zero_point + 0.5f, qmin, qmax));
  return lsq(x, Tensor::from_floats({scale}, grid),
             Tensor::from_values<int32_t>(std::vector<int32_t>{zp_fwd}, grid, DType::kInt32),
             Tensor::from_floats({zp_bwd}, grid), spec.granularity.block_size_for(x.shape()), spec,
             grad_factor, dy);
}

LearnableFakeQuantGrads fake_quantize_learnable_per_channel_affine(
    const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis, int64_t quant_min,
    int64_t quant_max, double grad_factor, const Tensor& dy) {
  const char* fn = "fake_quantize_learnable_per_channel_affine";
  check_channels(x, scale, axis, fn, "scale");
  check_channels(x, zero_point, axis, fn, "zero_point");
  QK_CHECK(scale.dtype() == DType::kFloat32 && zero_point.dtype() == DType::kFloat32, DTypeError,
           fn, ": scale and zero_point must be float32");
  AffineSpec spec = spec_for_range(quant_min, quant_max, Granularity::per_axis(axis), fn);
  Shape grid(x.shape().size(), 1);
  grid[static_cast<size_t>(axis < 0 ? axis + x.dim() : axis)] = scale.numel();
  Tensor zp_int = Tensor::empty(grid, DType::kInt32);
  Tensor zp_float = Tensor::empty(grid, DType::kFloat32);
  for (int64_t c = 0; c < scale.numel(); ++c) {
    check_scale(scale.data<float>()[c], fn);
    const float z = std::clamp(std::nearbyint(zero_point.data<float>()[c]),
                               static_cast<float>(quant_min), static_cast<float>(quant_max));
    zp_int.data<int32_t>()[c] = static_cast<int32_t>(z);
    zp_float.data<float>()[c] = z;
  }
  const Shape block = spec.granularity.block_size_for(x.shape());
  return lsq(x, scale.reshape(grid), zp_int, zp_float, block, spec, grad_factor, dy);
}

}  // namespace quantkit

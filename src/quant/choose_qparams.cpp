#include <algorithm>
#include <cmath>
#include <limits>

#include "../kernels/quant_rows.h"
#include "block_qparams.h"
#include "block_walk.h"
#include "quantkit/core/float_convert.h"
#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"

namespace quantkit {

std::pair<Tensor, Tensor> block_minmax(const Tensor& x, const Shape& block_size) {
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError,
           "block_minmax: expected a float32 tensor, got ", dtype_name(x.dtype()));
  const Shape grid = blocks_shape(x.shape(), block_size);
  Tensor mins = Tensor::empty(grid, DType::kFloat32);
  Tensor maxs = Tensor::empty(grid, DType::kFloat32);
  float* mn = mins.data<float>();
  float* mx = maxs.data<float>();
  std::fill(mn, mn + mins.numel(), std::numeric_limits<float>::infinity());
  std::fill(mx, mx + maxs.numel(), -std::numeric_limits<float>::infinity());
  const float* xs = x.data<float>();
  const auto minmax = kernels::quant_row_kernels().minmax;
  detail::for_each_block_run(x.shape(), block_size, [&](int64_t offset, int64_t n, int64_t b) {
    float lo = mn[b], hi = mx[b];
    // NaN/Inf poison the block's range (checked by the caller) instead of being skipped silently.
    float poison = 0.0f;
    minmax(xs + offset, n, &lo, &hi, &poison);
    mn[b] = lo + poison;
    mx[b] = hi + poison;
  });
  return {mins, maxs};
}

namespace detail {

float stored_scale(float scale, const AffineSpec& spec) {
  if (spec.scale_dtype != DType::kFloat16) return scale;
  constexpr float kF16Max = 65504.0f, kF16MinSubnormal = 5.9604645e-8f;
  QK_CHECK(scale <= kF16Max, ValueError, "choose_qparams: scale ", scale,
           " exceeds the float16 range (65504); use scale_dtype float32 for values this large");
  return std::max(f16_bits_to_float(float_to_f16_bits(scale)), kF16MinSubnormal);
}

BlockQParams qparams_for_range(float mn, float mx, const AffineSpec& spec) {
  const auto qmin = static_cast<float>(spec.effective_min());
  const auto qmax = static_cast<float>(spec.effective_max());
  const float min_neg = std::min(mn, 0.0f);
  const float max_pos = std::max(mx, 0.0f);
  if (is_float8(spec.dtype)) {
    const float fmax = spec.dtype == DType::kFloat8E4M3 ? kE4M3Max : kE5M2Max;
    const float amax = std::max(-min_neg, max_pos);
    return {stored_scale(std::max(amax / fmax, spec.eps), spec), 0.0f};
  }
  switch (spec.mapping) {
    case MappingType::kSymmetric: {
      const float amax = std::max(-min_neg, max_pos);
      const float scale = stored_scale(std::max(amax / ((qmax - qmin) / 2.0f), spec.eps), spec);
      // Signed ranges centre on 0; unsigned ones on the middle code (128 for 0..255).
      const float zp = spec.effective_min() < 0 ? 0.0f : std::floor((qmin + qmax + 1.0f) / 2.0f);
      return {scale, zp};
    }
    case MappingType::kSymmetricNoClippingError: {
      const float scale = stored_scale(std::max({min_neg / qmin, max_pos / qmax, spec.eps}), spec);
      return {scale, 0.0f};
    }
    case MappingType::kAsymmetric:
      if (spec.zero_point_domain == ZeroPointDomain::kFloat) {
        const float range_scale = (mx - mn) / (qmax - qmin);
        const float scale = stored_scale(range_scale > spec.eps ? range_scale : 1.0f, spec);
        // x ~ (q - zp) * s with min -> qmin: zp = qmin - min / s (PyTorch's -min / s for
        // its unsigned float-qparams range, where qmin = 0).
        if (qmin == 0.0f) return {scale, -1.0f * mn / scale};
        return {scale, qmin - mn / scale};
      } else {
        const float scale =
            stored_scale(std::max((max_pos - min_neg) / (qmax - qmin), spec.eps), spec);
        const float zp = qmin - std::nearbyint(min_neg / scale);
        return {scale, std::clamp(zp, qmin, qmax)};
      }
  }
  throw ValueError("choose_qparams: unknown mapping type");
}

}  // namespace detail

QParams choose_qparams_from_minmax(const Tensor& min_val, const Tensor& max_val,
                                   const AffineSpec& spec) {
  spec.validate();
  QK_CHECK(min_val.dtype() == DType::kFloat32 && max_val.dtype() == DType::kFloat32, DTypeError,
           "choose_qparams: min/max must be float32, got ", dtype_name(min_val.dtype()), " and ",
           dtype_name(max_val.dtype()));
  QK_CHECK(min_val.shape() == max_val.shape(), ShapeError, "choose_qparams: min shape ",
           shape_to_string(min_val.shape()), " differs from max shape ",
           shape_to_string(max_val.shape()));
  QParams qp;
  qp.scale = Tensor::empty(min_val.shape(),
                           spec.scale_dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32);
  const bool int_zp = spec.zero_point_domain == ZeroPointDomain::kInt;
  if (spec.zero_point_domain != ZeroPointDomain::kNone) {
    qp.zero_point = Tensor::empty(min_val.shape(), int_zp ? DType::kInt32 : DType::kFloat32);
  }
  const float* mn = min_val.data<float>();
  const float* mx = max_val.data<float>();
  for (int64_t b = 0; b < min_val.numel(); ++b) {
    QK_CHECK(std::isfinite(mn[b]) && std::isfinite(mx[b]), ValueError, "choose_qparams: block ", b,
             " has range [", mn[b], ", ", mx[b],
             "]; NaN or Inf in the input gives no usable scale (replace or clamp non-finite values "
             "first)");
    QK_CHECK(mn[b] <= mx[b], ValueError, "choose_qparams: block ", b, " has min ", mn[b], " > max ",
             mx[b]);
    const detail::BlockQParams p = detail::qparams_for_range(mn[b], mx[b], spec);
    if (spec.scale_dtype == DType::kFloat64) {
      qp.scale.data<double>()[b] = p.scale;
    } else {
      qp.scale.data<float>()[b] = p.scale;
    }
    if (int_zp) qp.zero_point.data<int32_t>()[b] = static_cast<int32_t>(p.zero_point);
    if (spec.zero_point_domain == ZeroPointDomain::kFloat)
      qp.zero_point.data<float>()[b] = p.zero_point;
  }
  return qp;
}

QParams choose_qparams(const Tensor& x, const AffineSpec& spec) {
  spec.validate();
  const Shape block = spec.granularity.block_size_for(x.shape());
  auto [mins, maxs] = block_minmax(x, block);
  return choose_qparams_from_minmax(mins, maxs, spec);
}

}  // namespace quantkit

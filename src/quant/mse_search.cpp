// Clipping search for choose_qparams: min/max quantization spends the grid on the extreme
// values of a block; shrinking the range trades clipping error on the few outliers for rounding
// error on everything else. Per block, keep the candidate with the smallest squared error.
#include <limits>
#include <vector>

#include "block_walk.h"
#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"

namespace quantkit {

QParams choose_qparams_mse(const Tensor& x, const AffineSpec& spec, int steps) {
  spec.validate();
  QK_CHECK(steps >= 0 && steps <= 200, ValueError, "choose_qparams_mse: steps must be in [0, 200]");
  const Shape block = spec.granularity.block_size_for(x.shape());
  const auto [mins, maxs] = block_minmax(x, block);
  QParams best = choose_qparams_from_minmax(mins, maxs, spec);
  if (steps == 0) return best;
  const int64_t blocks = mins.numel();
  std::vector<double> best_err(static_cast<size_t>(blocks),
                               std::numeric_limits<double>::infinity());
  const float* xs = x.data<float>();
  for (int i = 0; i <= steps; ++i) {
    const float ratio = 1.0f - 0.5f * static_cast<float>(i) / static_cast<float>(steps);
    Tensor lo = mins.clone(), hi = maxs.clone();
    for (int64_t b = 0; b < blocks; ++b) {
      lo.data<float>()[b] *= ratio;
      hi.data<float>()[b] *= ratio;
    }
    const QParams qp = choose_qparams_from_minmax(lo, hi, spec);
    const Tensor back = quantize(x, spec, qp).dequantize();
    std::vector<double> err(static_cast<size_t>(blocks), 0.0);
    const float* ys = back.data<float>();
    detail::for_each_block_run(x.shape(), block, [&](int64_t offset, int64_t n, int64_t b) {
      double e = 0;
      for (int64_t k = 0; k < n; ++k) {
        const double d = static_cast<double>(xs[offset + k]) - ys[offset + k];
        e += d * d;
      }
      err[static_cast<size_t>(b)] += e;
    });
    // Keep, per block, the qparams of the best candidate so far.
    for (int64_t b = 0; b < blocks; ++b) {
      if (err[static_cast<size_t>(b)] >= best_err[static_cast<size_t>(b)]) continue;
      best_err[static_cast<size_t>(b)] = err[static_cast<size_t>(b)];
      if (best.scale.dtype() == DType::kFloat64) {
        best.scale.data<double>()[b] = qp.scale.data<double>()[b];
      } else {
        best.scale.data<float>()[b] = qp.scale.data<float>()[b];
      }
      if (best.zero_point.defined()) {
        if (best.zero_point.dtype() == DType::kInt32) {
          best.zero_point.data<int32_t>()[b] = qp.zero_point.data<int32_t>()[b];
        } else {
          best.zero_point.data<float>()[b] = qp.zero_point.data<float>()[b];
        }
      }
    }
  }
  return best;
}

}  // namespace quantkit

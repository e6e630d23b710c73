// GPTQ (Frantar et al., 2022, "Accurate Post-Training Quantization for Generative Pre-trained
// Transformers"): weights are rounded one input column at a time, and each column's rounding
// error is spread over the columns not rounded yet, weighted by the inverse Hessian of the
// layer's inputs, H = 2/T * sum_t x_t x_t^T. This minimises ||X W^T - X What^T|| column by
// column instead of ||W - What||, which is what round-to-nearest minimises.
#pragma once

#include <cstdint>
#include <vector>

#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"

namespace quantkit {

struct GptqOptions {
  /// Added to the diagonal of H, as a fraction of its mean diagonal, before inversion: keeps H
  /// positive definite when calibration rows are few or inputs are correlated.
  double damp_percent = 0.01;
  /// Columns updated together before the trailing columns receive the block's error (a matrix
  /// product); the result does not depend on it beyond float rounding.
  int64_t block_size = 128;
  /// Each group's scale (and zero point) by choose_qparams_mse instead of min/max.
  bool mse_search = false;
  /// Rounds columns in order of decreasing Hessian diagonal (the inputs with the most energy
  /// first, so the columns rounded late, which absorb the error, matter least). Group qparams
  /// are then chosen from the original weights before any column is rounded ("static groups"),
  /// which keeps the stored layout: contiguous groups along K.
  bool act_order = false;
};

/// Accumulates sum_t x_t x_t^T (double) over the rows of a layer's input, and sum_t |x_t| (AWQ's
/// channel statistic).
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t features);
  /// rows: [count, features] float32, row-major. NaN/Inf raise ValueError.
  void add(const float* rows, int64_t count);
  int64_t features() const { return k_; }
  int64_t samples() const { return samples_; }
  /// H = 2 / samples * sum x x^T, K x K row-major (symmetric). Needs samples() > 0.
  std::vector<double> hessian() const;
  /// mean_t |x_t| per feature [K]. Needs samples() > 0.
  std::vector<double> mean_abs() const;

 private:
  int64_t k_;
  int64_t samples_ = 0;
  std::vector<double> upper_;    // sum x x^T, upper triangle filled (dsyrk)
  std::vector<double> abs_sum_;  // sum |x| per feature
};

/// Quantizes `weight` [N, K] (float32) with `spec`, which must quantize per output row: per
/// channel (per_axis(0)) or per group along K (the last group may be partial); any mapping and
/// zero-point domain of the integer dtypes. `hessian` is K x K (HessianAccumulator::hessian()).
/// Columns whose Hessian diagonal is 0 (inputs always zero) are rounded from zero weights:
/// whatever they dequantize to is multiplied by zero. A group's
/// qparams come from the error-updated weights when its first column is reached. With H a
/// multiple of the identity the result equals quantize(weight, spec).
/// Throws ShapeError/ValueError for mismatched shapes, float8 dtypes, or an H that is not
/// positive definite after damping.
QTensor gptq_quantize(const Tensor& weight, const std::vector<double>& hessian,
                      const AffineSpec& spec, const GptqOptions& options = {});

}  // namespace quantkit

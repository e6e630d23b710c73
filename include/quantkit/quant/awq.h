// AWQ (Lin et al., 2023, "Activation-aware Weight Quantization"): a few input channels carry
// much larger activations than the rest, and their weights matter most. Scaling weight column k
// up by s_k before rounding (and the input down by s_k at run time) gives those columns finer
// steps relative to their size, at the expense of the quiet columns. s = mean|x|^alpha, with
// alpha searched per layer to minimise the layer's output error on the calibration inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "quantkit/quant/affine.h"
#include "quantkit/quant/gptq.h"
#include "quantkit/quant/qtensor.h"

namespace quantkit {

struct AwqOptions {
  /// alpha is tried at 0, 1/grid, ..., (grid-1)/grid; alpha = 0 is plain rounding, so the
  /// search never does worse than round-to-nearest on the calibration inputs.
  int64_t grid = 20;
  /// Round the scaled weight with GPTQ (on the Hessian of the scaled inputs) once alpha is
  /// chosen, instead of round-to-nearest.
  bool gptq_rounding = false;
  GptqOptions gptq;
  /// Each group's scale (and zero point) by choose_qparams_mse instead of min/max.
  bool mse_search = false;
};

struct AwqResult {
  /// The quantized weight * diag(s), [N, K].
  QTensor weight;
  /// float32 [K], 1 / s: the layer computes (x * input_scale) . dequant(weight)^T.
  Tensor input_scale;
  double alpha = 0.0;
  /// Output error tr(dW H dW^T) of the chosen alpha and of plain rounding (alpha = 0).
  double error = 0.0, error_rtn = 0.0;
};

/// Quantizes `weight` [N, K] (float32) with `spec` (per channel or per group along K, integer
/// dtypes), choosing the per-input-channel scale from `mean_abs_input` [K] (mean |x| per
/// feature) and the input Hessian [K, K] (HessianAccumulator::hessian(), which measures the
/// output error). Channels that never fired (mean |x| = 0) keep s = 1 relative to the others.
/// Throws ShapeError/ValueError/DTypeError for mismatched shapes, non-finite statistics or a
/// float8 spec.
AwqResult awq_quantize(const Tensor& weight, const std::vector<double>& hessian,
                       const std::vector<double>& mean_abs_input, const AffineSpec& spec,
                       const AwqOptions& options = {});

}  // namespace quantkit

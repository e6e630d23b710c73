#include "quantkit/quant/awq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "rounding_checks.h"

namespace quantkit {

namespace {

/// tr(dW H dW^T) for dW = dequant(q) * diag(1 / s) - W: the summed squared output error over the
/// calibration inputs (up to the 2 / T in H).
double output_error(const Tensor& weight, const QTensor& q, const std::vector<double>& s,
                    const std::vector<double>& hessian) {
  const int64_t n = weight.size(0), k = weight.size(1);
  const Tensor dq = q.dequantize();
  std::vector<double> dw(static_cast<size_t>(n * k)), t(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const int64_t i = r * k + c;
      dw[static_cast<size_t>(i)] = dq.data<float>()[i] / s[static_cast<size_t>(c)] -
                                   static_cast<double>(weight.data<float>()[i]);
    }
  }
  cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, static_cast<int>(n), static_cast<int>(k), 1.0,
              hessian.data(), static_cast<int>(k), dw.data(), static_cast<int>(k), 0.0, t.data(),
              static_cast<int>(k));
  double e = 0.0;
  for (size_t i = 0; i < dw.size(); ++i) e += dw[i] * t[i];
  return e;
}

Tensor scale_columns(const Tensor& weight, const std::vector<double>& s) {
  const int64_t n = weight.size(0), k = weight.size(1);
  Tensor out = Tensor::empty({n, k}, DType::kFloat32);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      out.data<float>()[r * k + c] =
          static_cast<float>(weight.data<float>()[r * k + c] * s[static_cast<size_t>(c)]);
    }
  }
  return out;
}

QTensor round_to_nearest(const Tensor& w, const AffineSpec& spec, bool mse) {
  return mse ? quantize(w, spec, choose_qparams_mse(w, spec)) : quantize(w, spec);
}

}  // namespace

AwqResult awq_quantize(const Tensor& weight, const std::vector<double>& hessian,
                       const std::vector<double>& mean_abs_input, const AffineSpec& spec,
                       const AwqOptions& options) {
  check_rounding_args("awq_quantize", weight, hessian, spec);
  const int64_t k = weight.size(1);
  QK_CHECK(static_cast<int64_t>(mean_abs_input.size()) == k, ShapeError,
           "awq_quantize: mean_abs_input has ", mean_abs_input.size(), " entries, the weight has ",
           k, " input features");
  QK_CHECK(options.grid >= 1 && options.grid <= 1000, ValueError,
           "awq_quantize: grid must be in [1, 1000], got ", options.grid);
  double largest = 0.0;
  for (const double m : mean_abs_input) {
    QK_CHECK(std::isfinite(m) && m >= 0.0, ValueError,
             "awq_quantize: mean |x| must be finite and >= 0, got ", m);
    largest = std::max(largest, m);
  }
  // Quiet channels are floored so that s stays finite and their steps do not explode.
  const double floor = largest > 0.0 ? 1e-4 * largest : 1.0;

  AwqResult best;
  best.error = std::numeric_limits<double>::infinity();
  std::vector<double> best_s;
  for (int64_t step = 0; step < options.grid; ++step) {
    const double alpha = static_cast<double>(step) / static_cast<double>(options.grid);
    std::vector<double> s(static_cast<size_t>(k));
    double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
    for (int64_t c = 0; c < k; ++c) {
      s[static_cast<size_t>(c)] = std::pow(std::max(mean_abs_input[c], floor), alpha);
      lo = std::min(lo, s[static_cast<size_t>(c)]);
      hi = std::max(hi, s[static_cast<size_t>(c)]);
    }
    const double centre = std::sqrt(lo * hi);  // keeps the scaled weights near their range
    for (double& v : s) v /= centre;
    QTensor q = round_to_nearest(scale_columns(weight, s), spec, options.mse_search);
    const double e = output_error(weight, q, s, hessian);
    if (step == 0) best.error_rtn = e;
    if (step == 0 || e < best.error) {  // step 0 always counts: a NaN error cannot leave none
      best.error = e;
      best.alpha = alpha;
      best.weight = std::move(q);
      best_s = s;
    }
  }
  if (options.gptq_rounding) {
    // The layer sees x / s, whose Hessian is diag(1/s) H diag(1/s).
    std::vector<double> hs(hessian.size());
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j)
        hs[static_cast<size_t>(i * k + j)] = hessian[i * k + j] / (best_s[i] * best_s[j]);
    }
    GptqOptions g = options.gptq;
    g.mse_search = g.mse_search || options.mse_search;
    best.weight = gptq_quantize(scale_columns(weight, best_s), hs, spec, g);
    best.error = output_error(weight, best.weight, best_s, hessian);
  }
  best.input_scale = Tensor::empty({k}, DType::kFloat32);
  for (int64_t c = 0; c < k; ++c)
    best.input_scale.data<float>()[c] = static_cast<float>(1.0 / best_s[static_cast<size_t>(c)]);
  return best;
}

}  // namespace quantkit

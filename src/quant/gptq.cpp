#include "quantkit/quant/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "quantkit/core/packing.h"
#include "rounding_checks.h"

namespace quantkit {

HessianAccumulator::HessianAccumulator(int64_t features)
    : k_(features),
      upper_(static_cast<size_t>(features * features), 0.0),
      abs_sum_(static_cast<size_t>(features), 0.0) {
  QK_CHECK(features > 0, ValueError, "HessianAccumulator: need at least one feature, got ",
           features);
}

void HessianAccumulator::add(const float* rows, int64_t count) {
  QK_CHECK(count >= 0, ValueError, "HessianAccumulator::add: negative row count ", count);
  constexpr int64_t kRowsPerBlock = 256;
  std::vector<double> block(static_cast<size_t>(std::min(count, kRowsPerBlock) * k_));
  for (int64_t r0 = 0; r0 < count; r0 += kRowsPerBlock) {
    const int64_t rows_here = std::min(kRowsPerBlock, count - r0);
    for (int64_t r = 0; r < rows_here; ++r) {
      for (int64_t c = 0; c < k_; ++c) {
        const float v = rows[(r0 + r) * k_ + c];
        QK_CHECK(std::isfinite(v), ValueError, "calibration: input row ", r0 + r,
                 " holds NaN or Inf at feature ", c);
        block[static_cast<size_t>(r * k_ + c)] = v;
        abs_sum_[static_cast<size_t>(c)] += std::fabs(v);
      }
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(k_),
                static_cast<int>(rows_here), 1.0, block.data(), static_cast<int>(k_), 1.0,
                upper_.data(), static_cast<int>(k_));
  }
  samples_ += count;
}

std::vector<double> HessianAccumulator::hessian() const {
  QK_CHECK(samples_ > 0, ValueError,
           "GPTQ: the layer saw no calibration rows; run calibration batches first");
  std::vector<double> h(upper_.size());
  const double f = 2.0 / static_cast<double>(samples_);
  for (int64_t i = 0; i < k_; ++i) {
    for (int64_t j = i; j < k_; ++j) {
      h[static_cast<size_t>(i * k_ + j)] = h[static_cast<size_t>(j * k_ + i)] =
          f * upper_[static_cast<size_t>(i * k_ + j)];
    }
  }
  return h;
}

std::vector<double> HessianAccumulator::mean_abs() const {
  QK_CHECK(samples_ > 0, ValueError,
           "the layer saw no calibration rows; run calibration batches first");
  std::vector<double> m(abs_sum_);
  for (double& v : m) v /= static_cast<double>(samples_);
  return m;
}

namespace {

/// In-place lower Cholesky factor of the symmetric positive definite a [k, k] (upper part
/// left as is). Returns false when a pivot is not positive.
bool cholesky_lower(std::vector<double>& a, int64_t k) {
  for (int64_t j = 0; j < k; ++j) {
    double d = a[static_cast<size_t>(j * k + j)];
    for (int64_t p = 0; p < j; ++p) d -= a[static_cast<size_t>(j * k + p)] * a[j * k + p];
    if (!(d > 0.0)) return false;
    d = std::sqrt(d);
    a[static_cast<size_t>(j * k + j)] = d;
    for (int64_t i = j + 1; i < k; ++i) {
      double s = a[static_cast<size_t>(i * k + j)];
      for (int64_t p = 0; p < j; ++p) s -= a[static_cast<size_t>(i * k + p)] * a[j * k + p];
      a[static_cast<size_t>(i * k + j)] = s / d;
    }
  }
  return true;
}

/// U upper triangular with U^T U = H^{-1} (what GPTQ's column loop reads), from H.
std::vector<double> inverse_hessian_factor(std::vector<double> h, int64_t k) {
  QK_CHECK(cholesky_lower(h, k), ValueError,
           "GPTQ: the damped Hessian is not positive definite; raise damp_percent or calibrate "
           "with more (and more varied) rows");
  // L^{-1} by forward substitution, then H^{-1} = L^{-T} L^{-1}.
  std::vector<double> linv(static_cast<size_t>(k * k), 0.0);
  for (int64_t c = 0; c < k; ++c) {
    linv[static_cast<size_t>(c * k + c)] = 1.0 / h[static_cast<size_t>(c * k + c)];
    for (int64_t i = c + 1; i < k; ++i) {
      double s = 0.0;
      for (int64_t p = c; p < i; ++p) s += h[static_cast<size_t>(i * k + p)] * linv[p * k + c];
      linv[static_cast<size_t>(i * k + c)] = -s / h[static_cast<size_t>(i * k + i)];
    }
  }
  std::vector<double> hinv(static_cast<size_t>(k * k));
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(k), static_cast<int>(k),
              static_cast<int>(k), 1.0, linv.data(), static_cast<int>(k), linv.data(),
              static_cast<int>(k), 0.0, hinv.data(), static_cast<int>(k));
  QK_CHECK(cholesky_lower(hinv, k), ValueError,
           "GPTQ: the inverse Hessian lost positive definiteness to rounding; raise damp_percent");
  std::vector<double> u(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) u[static_cast<size_t>(j * k + i)] = hinv[i * k + j];
  }
  return u;
}

}  // namespace

QTensor gptq_quantize(const Tensor& weight, const std::vector<double>& hessian,
                      const AffineSpec& spec, const GptqOptions& options) {
  check_rounding_args("gptq_quantize", weight, hessian, spec);
  const int64_t n = weight.size(0), k = weight.size(1);
  QK_CHECK(options.damp_percent >= 0.0 && options.block_size > 0, ValueError,
           "gptq_quantize: damp_percent must be >= 0 and block_size > 0");
  const Shape block = spec.granularity.block_size_for(weight.shape());
  QK_CHECK(block[0] == 1, ShapeError, "gptq_quantize: the spec must quantize per output row ",
           "(per channel or per group along K), got block ", shape_to_string(block));
  const int64_t group = std::min(block[1], k), groups = (k + group - 1) / group;

  std::vector<double> w(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n * k; ++i) w[static_cast<size_t>(i)] = weight.data<float>()[i];
  std::vector<double> h = hessian;
  double mean_diag = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    double& d = h[static_cast<size_t>(i * k + i)];
    if (d == 0.0) {  // a dead input: its weights cannot matter; round zeros, spread nothing
      d = 1.0;
      for (int64_t r = 0; r < n; ++r) w[static_cast<size_t>(r * k + i)] = 0.0;
    }
    mean_diag += d / static_cast<double>(k);
  }
  for (int64_t i = 0; i < k; ++i)
    h[static_cast<size_t>(i * k + i)] += options.damp_percent * mean_diag;

  AffineSpec row_spec = spec;  // qparams per row of a [N, columns] slice
  row_spec.granularity = Granularity::per_axis(0);
  std::vector<QParams> group_qparams(static_cast<size_t>(groups));
  auto choose_group = [&](int64_t g) {  // from the columns of group g as they are in w now
    const int64_t first = g * group, width = std::min(group, k - first);
    Tensor slice = Tensor::empty({n, width}, DType::kFloat32);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < width; ++c)
        slice.data<float>()[r * width + c] = static_cast<float>(w[r * k + first + c]);
    }
    QParams p =
        options.mse_search ? choose_qparams_mse(slice, row_spec) : choose_qparams(slice, row_spec);
    p.scale = p.scale.to(DType::kFloat32);
    group_qparams[static_cast<size_t>(g)] = p;
  };
  // Column order: as stored, or by decreasing Hessian diagonal (act order). Act order needs
  // every group's qparams before any column moves ("static groups"), so the stored layout stays
  // contiguous groups along K.
  std::vector<int64_t> order(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) order[static_cast<size_t>(i)] = i;
  if (options.act_order) {
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return h[static_cast<size_t>(a * k + a)] > h[static_cast<size_t>(b * k + b)];
    });
    for (int64_t g = 0; g < groups; ++g) choose_group(g);
    std::vector<double> wp(w.size()), hp(h.size());
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t i = 0; i < k; ++i) wp[r * k + i] = w[r * k + order[i]];
    }
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) hp[i * k + j] = h[order[i] * k + order[j]];
    }
    w.swap(wp);
    h.swap(hp);
  }
  const std::vector<double> u = inverse_hessian_factor(std::move(h), k);

  std::vector<int32_t> codes(static_cast<size_t>(n * k));
  Tensor column = Tensor::empty({n, 1}, DType::kFloat32);
  const int64_t bs = options.block_size;
  std::vector<double> err(static_cast<size_t>(n * bs));

  for (int64_t i1 = 0; i1 < k; i1 += bs) {
    const int64_t i2 = std::min(k, i1 + bs);
    for (int64_t i = i1; i < i2; ++i) {
      const int64_t original = order[static_cast<size_t>(i)];
      // In stored order a group's qparams come from its weights as updated so far.
      if (!options.act_order && i % group == 0) choose_group(i / group);
      const QParams& qparams = group_qparams[static_cast<size_t>(original / group)];
      for (int64_t r = 0; r < n; ++r)
        column.data<float>()[r] = static_cast<float>(w[static_cast<size_t>(r * k + i)]);
      const QTensor q = quantize(column, row_spec, qparams);
      const Tensor dq = q.dequantize(), q_codes = q.int_repr();
      const double pivot = u[static_cast<size_t>(i * k + i)];
      for (int64_t r = 0; r < n; ++r) {
        codes[static_cast<size_t>(r * k + original)] = q_codes.dtype() == DType::kInt8
                                                           ? q_codes.data<int8_t>()[r]
                                                           : q_codes.data<uint8_t>()[r];
        const double e = (w[static_cast<size_t>(r * k + i)] - dq.data<float>()[r]) / pivot;
        err[static_cast<size_t>(r * bs + (i - i1))] = e;
        // The rest of this block takes the error now; later blocks take it in one product.
        const double* urow = u.data() + i * k;
        double* wrow = w.data() + r * k;
        for (int64_t j = i + 1; j < i2; ++j) wrow[j] -= e * urow[j];
      }
    }
    if (i2 < k) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                  static_cast<int>(k - i2), static_cast<int>(i2 - i1), -1.0, err.data(),
                  static_cast<int>(bs), u.data() + i1 * k + i2, static_cast<int>(k), 1.0,
                  w.data() + i2, static_cast<int>(k));
    }
  }

  Tensor scales = Tensor::empty({n, groups}, DType::kFloat32);
  Tensor zero_points;
  if (spec.zero_point_domain == ZeroPointDomain::kInt)
    zero_points = Tensor::empty({n, groups}, DType::kInt32);
  if (spec.zero_point_domain == ZeroPointDomain::kFloat)
    zero_points = Tensor::empty({n, groups}, DType::kFloat32);
  for (int64_t g = 0; g < groups; ++g) {
    const QParams& p = group_qparams[static_cast<size_t>(g)];
    for (int64_t r = 0; r < n; ++r) {
      scales.data<float>()[r * groups + g] = p.scale.data<float>()[r];
      if (spec.zero_point_domain == ZeroPointDomain::kInt)
        zero_points.data<int32_t>()[r * groups + g] = p.zero_point.data<int32_t>()[r];
      if (spec.zero_point_domain == ZeroPointDomain::kFloat)
        zero_points.data<float>()[r * groups + g] = p.zero_point.data<float>()[r];
    }
  }
  Tensor data = Tensor::empty({n, k}, spec.dtype);
  pack_integers(codes, spec.dtype, data.bytes());
  const QScheme scheme{spec.dtype,    spec.effective_min(),   spec.effective_max(),
                       {1, block[1]}, spec.zero_point_domain, spec.mapping};
  return QTensor(data, scales, zero_points, scheme);
}

}  // namespace quantkit

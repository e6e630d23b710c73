// Clipping search for choose_qparams: min/max quantization spends the grid on the extreme
// values of a block; shrinking the range trades clipping error on the few outliers for rounding
// error on everything else. Per block, keep the candidate with the smallest squared error.
// Integer codes then get two refinements that min/max cannot express: the two ends of an
// asymmetric range shrink independently (skewed blocks), and the scale (and offset) is refitted
// by least squares to the codes the best candidate chose, which moves the grid off the range's
// ends onto the bulk of the values (as llama.cpp's make_qkx and HQQ do, without weights).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "block_qparams.h"
#include "block_walk.h"
#include "element_ops.h"
#include "quantkit/core/float_convert.h"
#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"

namespace quantkit {
namespace {

/// The elements of every block, stored contiguously: a block may span several rows.
struct BlockValues {
  std::vector<float> values;
  std::vector<int64_t> begin;  // block b is values[begin[b], begin[b + 1])
};

BlockValues gather_blocks(const Tensor& x, const Shape& block, int64_t blocks) {
  BlockValues out;
  out.begin.assign(static_cast<size_t>(blocks + 1), 0);
  detail::for_each_block_run(x.shape(), block, [&](int64_t, int64_t n, int64_t b) {
    out.begin[static_cast<size_t>(b + 1)] += n;
  });
  for (size_t b = 1; b < out.begin.size(); ++b) out.begin[b] += out.begin[b - 1];
  out.values.resize(static_cast<size_t>(out.begin.back()));
  std::vector<int64_t> cursor(out.begin.begin(), out.begin.end() - 1);
  const float* xs = x.data<float>();
  detail::for_each_block_run(x.shape(), block, [&](int64_t offset, int64_t n, int64_t b) {
    std::copy(xs + offset, xs + offset + n, out.values.begin() + cursor[static_cast<size_t>(b)]);
    cursor[static_cast<size_t>(b)] += n;
  });
  return out;
}

/// One block's search: its values, the spec, and the best qparams found so far.
class BlockSearch {
 public:
  BlockSearch(const float* w, int64_t n, const AffineSpec& spec)
      : w_(w),
        n_(n),
        spec_(spec),
        qmin_(static_cast<float>(spec.effective_min())),
        qmax_(static_cast<float>(spec.effective_max())) {}

  /// Keeps c when its round trip beats the best so far; true when it did.
  bool consider(const detail::BlockQParams& c) {
    const double e = error(c);
    if (!(e < best_error_)) return false;
    best_error_ = e;
    best_ = c;
    return true;
  }

  /// Least-squares refits of the scale (and, for an asymmetric range, the offset) to the codes
  /// of c, repeated while the round trip improves on the best so far.
  void refit(detail::BlockQParams c, int rounds) {
    for (int round = 0; round < rounds; ++round) {
      if (!fit_codes(c) || !consider(c)) return;
    }
  }

  const detail::BlockQParams& best() const { return best_; }

 private:
  /// Replaces c by the least-squares fit of w ~ scale (q - zp) over the codes q that c gives;
  /// false when the fit is degenerate.
  bool fit_codes(detail::BlockQParams& c) const {
    const float inv = 1.0f / c.scale;
    double sq = 0, sqq = 0, sw = 0, swq = 0;
    for (int64_t i = 0; i < n_; ++i) {
      const double q = code(w_[i], inv, c.zero_point);
      sq += q;
      sqq += q * q;
      sw += w_[i];
      swq += w_[i] * q;
    }
    const auto n = static_cast<double>(n_);
    double zp = c.zero_point;
    if (spec_.mapping == MappingType::kAsymmetric) {  // w ~ a q + b: scale a, zero point -b / a
      const double det = n * sqq - sq * sq;
      if (!(det > 0)) return false;
      const double a = (n * swq - sw * sq) / det;
      if (!(a > 0)) return false;
      zp = -((sw - a * sq) / n) / a;
      if (spec_.zero_point_domain == ZeroPointDomain::kInt)
        zp = std::clamp(std::nearbyint(zp), static_cast<double>(qmin_), static_cast<double>(qmax_));
    }
    // With the zero point fixed: scale = sum w (q - zp) / sum (q - zp)^2.
    const double den = sqq - 2 * zp * sq + zp * zp * n;
    const double scale = (swq - zp * sw) / den;
    if (!(den > 0) || !(scale > 0) || !std::isfinite(scale)) return false;
    if (spec_.scale_dtype == DType::kFloat16 && scale > 65504.0)
      return false;  // stored_scale throws
    c = {detail::stored_scale(std::max(static_cast<float>(scale), spec_.eps), spec_),
         static_cast<float>(zp)};
    return true;
  }

  /// The code quantize() gives w (element_ops.h), as a float.
  float code(float w, float inv, float zp) const {
    const float t = spec_.zero_point_domain == ZeroPointDomain::kFloat
                        ? detail::round_half_even(std::fma(w, inv, zp))
                        : zp + detail::round_half_even(w * inv);
    return t > qmax_ ? qmax_ : (t >= qmin_ ? t : qmin_);
  }

  double error(const detail::BlockQParams& c) const {
    double e = 0;
    if (is_float8(spec_.dtype)) {
      const bool e4m3 = spec_.dtype == DType::kFloat8E4M3;
      const float fmax = e4m3 ? kE4M3Max : kE5M2Max;
      for (int64_t i = 0; i < n_; ++i) {
        const float v = std::clamp(w_[i] / c.scale, -fmax, fmax);
        const float back = e4m3 ? e4m3_bits_to_float(float_to_e4m3_bits(v))
                                : e5m2_bits_to_float(float_to_e5m2_bits(v));
        const double d = static_cast<double>(w_[i]) - static_cast<double>(back) * c.scale;
        e += d * d;
      }
      return e;
    }
    const float inv = 1.0f / c.scale;
    for (int64_t i = 0; i < n_; ++i) {
      const double d =
          static_cast<double>(w_[i]) -
          (static_cast<double>(code(w_[i], inv, c.zero_point)) - c.zero_point) * c.scale;
      e += d * d;
    }
    return e;
  }

  const float* w_;
  int64_t n_;
  const AffineSpec& spec_;
  float qmin_, qmax_;
  detail::BlockQParams best_{1.0f, 0.0f};
  double best_error_ = std::numeric_limits<double>::infinity();
};

float shrink_ratio(int i, int steps) {
  return 1.0f - 0.5f * static_cast<float>(i) / static_cast<float>(steps);
}

}  // namespace

QParams choose_qparams_mse(const Tensor& x, const AffineSpec& spec, int steps) {
  spec.validate();
  QK_CHECK(steps >= 0 && steps <= 200, ValueError, "choose_qparams_mse: steps must be in [0, 200]");
  const Shape block = spec.granularity.block_size_for(x.shape());
  const auto [mins, maxs] = block_minmax(x, block);
  QParams best = choose_qparams_from_minmax(mins, maxs, spec);
  if (steps == 0) return best;
  const int64_t blocks = mins.numel();
  const BlockValues values = gather_blocks(x, block, blocks);
  const float* mn = mins.data<float>();
  const float* mx = maxs.data<float>();
  const bool integer = !is_float8(spec.dtype);
  const bool asymmetric = spec.mapping == MappingType::kAsymmetric;
#pragma omp parallel for schedule(dynamic, 64) if (values.values.size() > (1u << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const auto begin = values.begin[static_cast<size_t>(b)];
    BlockSearch search(values.values.data() + begin,
                       values.begin[static_cast<size_t>(b + 1)] - begin, spec);
    // Both ends shrink together; the first candidate (ratio 1) is min/max itself.
    int best_i = 0;
    for (int i = 0; i <= steps; ++i) {
      const float r = shrink_ratio(i, steps);
      if (search.consider(detail::qparams_for_range(mn[b] * r, mx[b] * r, spec))) best_i = i;
    }
    if (integer && asymmetric) {  // then each end on its own, the other held at its best
      int lo_i = best_i;
      for (int i = 0; i <= steps; ++i) {
        const float lo = mn[b] * shrink_ratio(i, steps), hi = mx[b] * shrink_ratio(best_i, steps);
        if (search.consider(detail::qparams_for_range(lo, hi, spec))) lo_i = i;
      }
      for (int i = 0; i <= steps; ++i) {
        const float lo = mn[b] * shrink_ratio(lo_i, steps), hi = mx[b] * shrink_ratio(i, steps);
        search.consider(detail::qparams_for_range(lo, hi, spec));
      }
    }
    if (integer) search.refit(search.best(), 4);
    const detail::BlockQParams& p = search.best();
    if (best.scale.dtype() == DType::kFloat64) {
      best.scale.data<double>()[b] = p.scale;
    } else {
      best.scale.data<float>()[b] = p.scale;
    }
    if (!best.zero_point.defined()) continue;
    if (best.zero_point.dtype() == DType::kInt32) {
      best.zero_point.data<int32_t>()[b] = static_cast<int32_t>(p.zero_point);
    } else {
      best.zero_point.data<float>()[b] = p.zero_point;
    }
  }
  return best;
}

}  // namespace quantkit

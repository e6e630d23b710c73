// Dynamic W8A8 / W4A8 linear: per-token int8 activations times int8 or 4-bit weights.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "amx_int8.h"
#include "gemv.h"
#include "linear_internal.h"
#include "quant_rows.h"
#include "quantkit/kernels/isa.h"

namespace quantkit {
namespace {

constexpr int64_t kChunk = 32;

/// Per-row symmetric int8 codes (zero-padded to a multiple of 128), scales, and the exact sum of
/// the codes of every group of `group_size` elements ([m, groups] as float; none for 0).
struct TokenQuantized {
  std::unique_ptr<int8_t[]> codes;  // uninitialised storage: each row is written whole below
  std::vector<float> scales;
  std::vector<float> group_sums;
  int64_t stride = 0;
};

TokenQuantized quantize_tokens(const float* x, int64_t m, int64_t k, int64_t group_size) {
  TokenQuantized t;
  // Whole steps of the avx512 W4A8 row kernel (4 chunks), zero past K.
  constexpr int64_t kStep = 4 * kChunk;
  t.stride = (k + kStep - 1) / kStep * kStep;
  t.codes.reset(new int8_t[static_cast<size_t>(m * t.stride)]);
  t.scales.resize(static_cast<size_t>(m));
  const int64_t groups = group_size > 0 ? (k + group_size - 1) / group_size : 0;
  t.group_sums.resize(static_cast<size_t>(m * groups));
  // The row kernels round x * (127 / amax) half-to-even and clamp to +-127 exactly as
  // nearbyint + clamp would, at the active ISA level.
  const kernels::QuantRowKernels& rows = kernels::quant_row_kernels();
  int64_t bad_row = -1;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (m * k > 65536)
  for (int64_t r = 0; r < m; ++r) {
    int8_t* codes = t.codes.get() + r * t.stride;
    std::memset(codes + k, 0, static_cast<size_t>(t.stride - k));
    if (!rows.quantize_token_int8(x + r * k, k, group_size, codes,
                                  &t.scales[static_cast<size_t>(r)],
                                  t.group_sums.data() + r * groups)) {
#pragma omp critical
      bad_row = bad_row < 0 ? r : std::min(bad_row, r);
    }
  }
  QK_CHECK(bad_row < 0, ValueError, "dynamic int8 linear: row ", bad_row,
           " of the activations holds NaN or Inf; per-token scales need finite inputs");
  return t;
}

bool has_int8_kernel(DType dtype, int64_t group_size, int64_t in_features) {
  const bool signed_int8 = dtype == DType::kInt8;
  const bool four_bit = dtype == DType::kInt4 || dtype == DType::kUInt4;
  return (signed_int8 || four_bit) && (group_size % kChunk == 0 || group_size >= in_features);
}

bool has_int8_kernel(const PackedLinearWeight& p) {
  return has_int8_kernel(p.dtype, p.group_size, p.in_features);
}

}  // namespace

CodeLayout dynamic_int8_code_layout(DType dtype, int64_t group_size, int64_t in_features) {
  const bool tiles =
      kernels::gemv_kernels_for(active_isa()).i8_reads_channel_tiles && active_isa() != Isa::kAmx;
  return tiles && has_int8_kernel(dtype, group_size, in_features) ? CodeLayout::kChannelTiles
                                                                  : CodeLayout::kRows;
}

Tensor fake_quantize_per_token_int8(const Tensor& x) {
  QK_CHECK(x.defined() && x.dtype() == DType::kFloat32 && x.dim() >= 1, DTypeError,
           "fake_quantize_per_token_int8: x must be a float32 tensor of rank >= 1");
  const int64_t k = x.size(-1), m = k ? x.numel() / k : 0;
  const TokenQuantized t = quantize_tokens(x.data<float>(), m, k, 0);
  Tensor out = Tensor::empty(x.shape(), DType::kFloat32);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (m * k > 65536)
  for (int64_t r = 0; r < m; ++r) {
    const float scale = t.scales[static_cast<size_t>(r)];
    const int8_t* codes = t.codes.get() + r * t.stride;
    float* dst = out.data<float>() + r * k;
    for (int64_t i = 0; i < k; ++i) dst[i] = scale * static_cast<float>(codes[i]);
  }
  return out;
}

namespace {

void check_dynamic_input(const Tensor& x, const PackedLinearWeight& p) {
  QK_CHECK(x.defined() && x.dtype() == DType::kFloat32, DTypeError,
           "dynamic int8 linear: x must be float32, got ",
           x.defined() ? dtype_name(x.dtype()) : "undefined");
  QK_CHECK(x.dim() >= 1 && x.size(-1) == p.in_features, ShapeError,
           "dynamic int8 linear: x has shape ", shape_to_string(x.shape()),
           " but the weight takes ", p.in_features, " input features");
}

/// Tokens per run of the integer kernels over the whole weight. Each slice of weight rows meets
/// every token of a run, so the run's int8 rows should stay in L2 beside the slice's tiles:
/// runs of at most half the L2, split evenly and rounded up to whole passes of 8 tokens.
/// Emerald Rapids (2 MiB L2), 4096^2 in cache, M = 512 in one run -> two: W8A8 per channel 1
/// thread 635-642 -> 668-670 GOPS, 2 threads 1308-1314 -> 1319-1332; W4A8 group 32 1 thread
/// 441 -> 449-452, per channel level.
int64_t tokens_per_run(int64_t m, int64_t stride) {
  static const int64_t budget = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return (l2 > 0 ? static_cast<int64_t>(l2) : int64_t{1} << 21) / 2;
  }();
  if (m * stride <= budget) return std::max<int64_t>(m, 1);
  const int64_t runs = (m * stride + budget - 1) / budget;
  return ((m + runs - 1) / runs + 7) / 8 * 8;
}

/// y = x W^T (+ bias) from x's quantized tokens t (group sums at p's group size), shaped like x
/// with N last.
Tensor product_of_tokens(const TokenQuantized& t, const Shape& x_shape, int64_t m,
                         const PackedLinearWeight& weight, const Tensor* bias) {
  const bool amx =
      active_isa() == Isa::kAmx && kernels::amx_takes(weight) && m >= kernels::kAmxMinTokens;
  const kernels::GemvKernels& table = kernels::gemv_kernels_for(active_isa());
  PackedLinearWeight converted;
  const PackedLinearWeight& p =
      !amx && table.i8_reads_channel_tiles ? weight : in_rows(weight, converted);
  Shape out_shape = x_shape;
  out_shape.back() = p.out_features;
  Tensor y = Tensor::empty(out_shape, DType::kFloat32);
  if (m == 0 || p.out_features == 0) return y;
  const float* sums = t.group_sums.data();  // per token and group, exact
  if (amx) {
    kernels::amx_linear_int8(
        {&p, t.codes.get(), t.stride, t.scales.data(), sums, m, y.data<float>()}, num_threads());
  } else {
    const kernels::GemvWeights w = gemv_weights(p, y.data<float>());
    std::vector<int32_t> code_sums(t.group_sums.size());
    for (size_t i = 0; i < code_sums.size(); ++i)
      code_sums[i] = static_cast<int32_t>(w.code_bias) * static_cast<int32_t>(sums[i]);
    const int64_t groups = m > 0 ? static_cast<int64_t>(t.group_sums.size()) / m : 0;
    const int64_t run = tokens_per_run(m, t.stride);
    for (int64_t r0 = 0; r0 < m; r0 += run) {
      const int64_t rows = std::min(run, m - r0);
      kernels::GemvWeights wb = w;
      wb.y = w.y + r0 * w.y_stride;
      run_row_slices(
          p,
          kernels::GemvInt8Args{t.codes.get() + r0 * t.stride, t.stride, t.scales.data() + r0,
                                sums + r0 * groups, rows, wb, code_sums.data() + r0 * groups},
          p.dtype == DType::kInt8 ? table.i8_w8 : table.i8_w4, num_threads(),
          kernels::int8_kernel_reads_compact(rows, dtype_bits(p.dtype), p.layout),
          kernels::int8_kernel_slice_rows(rows));
    }
  }
  add_bias(bias, m, y);
  return y;
}

}  // namespace

Tensor linear_dynamic_int8(const Tensor& x, const PackedLinearWeight& p, const Tensor* bias) {
  check_dynamic_input(x, p);
  check_bias(bias, p);
  if (active_isa() == Isa::kReference || !has_int8_kernel(p)) {
    // int8 codes times the token scale are exact in float32: keep them so.
    return linear_weight_only(fake_quantize_per_token_int8(x), p, bias, GemvActivations::kFloat32);
  }
  const int64_t m = x.numel() / std::max<int64_t>(p.in_features, 1);
  const TokenQuantized t = quantize_tokens(x.data<float>(), m, p.in_features, p.group_size);
  return product_of_tokens(t, x.shape(), m, p, bias);
}

std::vector<Tensor> linear_dynamic_int8_shared_input(
    const Tensor& x, const std::vector<const PackedLinearWeight*>& weights,
    const std::vector<const Tensor*>& biases) {
  check_shared_weights("linear_dynamic_int8_shared_input", weights, biases);
  auto bias_of = [&](size_t i) { return biases.empty() ? nullptr : biases[i]; };
  const PackedLinearWeight& first = *weights.front();
  bool shared = active_isa() != Isa::kReference;
  for (size_t i = 0; i < weights.size(); ++i) {
    check_dynamic_input(x, *weights[i]);
    check_bias(bias_of(i), *weights[i]);
    shared = shared && has_int8_kernel(*weights[i]) && weights[i]->group_size == first.group_size;
  }
  std::vector<Tensor> ys;
  if (!shared) {
    for (size_t i = 0; i < weights.size(); ++i)
      ys.push_back(linear_dynamic_int8(x, *weights[i], bias_of(i)));
    return ys;
  }
  const int64_t m = x.numel() / std::max<int64_t>(first.in_features, 1);
  const TokenQuantized t = quantize_tokens(x.data<float>(), m, first.in_features, first.group_size);
  for (size_t i = 0; i < weights.size(); ++i)
    ys.push_back(product_of_tokens(t, x.shape(), m, *weights[i], bias_of(i)));
  return ys;
}

}  // namespace quantkit

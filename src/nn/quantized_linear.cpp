#include "quantkit/nn/quantized_linear.h"

#include <algorithm>
#include <cmath>

namespace quantkit {
namespace {

/// Converts torch_xla's weight layout to [N, K] codes and [N, groups] scales/offsets and packs.
PackedLinearWeight pack_xla(const Tensor& w, const Tensor& scale, const Tensor& zero_point,
                            int64_t block_size, bool int4_weight, int64_t* in_features) {
  QK_CHECK(w.defined() && w.dtype() == DType::kInt8, DTypeError,
           "quantized_matmul: w must be an int8 tensor, got ",
           w.defined() ? w.summary() : "undefined",
           int4_weight ? " (int4 values are passed unpacked in int8)" : "");
  QK_CHECK(scale.defined() && scale.dtype() == DType::kFloat32, DTypeError,
           "quantized_matmul: scale must be float32, got ",
           scale.defined() ? scale.summary() : "undefined");
  QK_CHECK(!zero_point.defined() || zero_point.dtype() == DType::kFloat32, DTypeError,
           "quantized_matmul: zero_point must be float32 (a real-domain offset), got ",
           zero_point.summary());
  const DType dtype = int4_weight ? DType::kInt4 : DType::kInt8;
  if (block_size == -1) {
    QK_CHECK(w.dim() == 2, ShapeError, "quantized_matmul: per-channel w must be [out, in], got ",
             shape_to_string(w.shape()));
    const int64_t n = w.size(0), k = w.size(1);
    QK_CHECK(scale.dim() == 1 && scale.size(0) == n, ShapeError,
             "quantized_matmul: scale must be [", n, "], got ", shape_to_string(scale.shape()));
    QK_CHECK(!zero_point.defined() || zero_point.shape() == scale.shape(), ShapeError,
             "quantized_matmul: zero_point must have the shape of scale ",
             shape_to_string(scale.shape()), ", got ", shape_to_string(zero_point.shape()));
    *in_features = k;
    Tensor offsets;
    if (zero_point.defined()) {
      offsets = Tensor::empty({n, 1}, DType::kFloat32);
      for (int64_t i = 0; i < n; ++i) offsets.data<float>()[i] = -zero_point.data<float>()[i];
    }
    return pack_linear_weight_affine(w, dtype, std::max<int64_t>(k, 1), scale.reshape({n, 1}),
                                     offsets);
  }
  QK_CHECK(block_size > 0, ValueError, "quantized_matmul: block_size must be -1 or positive, got ",
           block_size);
  QK_CHECK(w.dim() == 3 && w.size(1) == block_size, ShapeError,
           "quantized_matmul: blockwise w must be [in/", block_size, ", ", block_size,
           ", out], got ", shape_to_string(w.shape()));
  const int64_t blocks = w.size(0), n = w.size(2), k = blocks * block_size;
  QK_CHECK(scale.dim() == 2 && scale.size(0) == blocks && scale.size(1) == n, ShapeError,
           "quantized_matmul: blockwise scale must be [", blocks, ", ", n, "], got ",
           shape_to_string(scale.shape()));
  QK_CHECK(!zero_point.defined() || zero_point.shape() == scale.shape(), ShapeError,
           "quantized_matmul: zero_point must have the shape of scale ",
           shape_to_string(scale.shape()), ", got ", shape_to_string(zero_point.shape()));
  *in_features = k;
  Tensor codes = Tensor::empty({n, k}, DType::kInt8);
  Tensor s = Tensor::empty({n, blocks}, DType::kFloat32);
  Tensor offsets = zero_point.defined() ? Tensor::empty({n, blocks}, DType::kFloat32) : Tensor();
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t c = 0; c < block_size; ++c) {
      for (int64_t o = 0; o < n; ++o)
        codes.data<int8_t>()[o * k + b * block_size + c] =
            w.data<int8_t>()[(b * block_size + c) * n + o];
    }
    for (int64_t o = 0; o < n; ++o) {
      s.data<float>()[o * blocks + b] = scale.data<float>()[b * n + o];
      if (zero_point.defined())
        offsets.data<float>()[o * blocks + b] = -zero_point.data<float>()[b * n + o];
    }
  }
  return pack_linear_weight_affine(codes, dtype, block_size, s, offsets);
}

Tensor as_float(const Tensor& x) {
  QK_CHECK(x.defined() && (x.dtype() == DType::kFloat32 || x.dtype() == DType::kBFloat16),
           DTypeError, "quantized_matmul: x must be float32 or bfloat16, got ",
           x.defined() ? x.summary() : "undefined");
  return x.to(DType::kFloat32);
}

}  // namespace

Tensor quantized_matmul(const Tensor& x, const Tensor& w, const Tensor& scale,
                        const Tensor& zero_point, int64_t block_size, bool int4_weight,
                        bool quantize_activation) {
  QK_CHECK(!quantize_activation || block_size == -1, ValueError,
           "quantized_matmul: quantize_activation is supported with per-channel weights only "
           "(block_size -1)");
  int64_t k = 0;
  const PackedLinearWeight p = pack_xla(w, scale, zero_point, block_size, int4_weight, &k);
  const Tensor xf = as_float(x);
  return quantize_activation ? linear_dynamic_int8(xf, p)
                             : linear_weight_only(xf, p, nullptr, GemvActivations::kFloat32);
}

QuantizedLinear::QuantizedLinear(int64_t in_features, int64_t out_features, bool bias,
                                 int64_t block_size, bool int4_weight, bool quantize_activation)
    : in_features_(in_features),
      out_features_(out_features),
      block_size_(block_size),
      has_bias_(bias),
      int4_weight_(int4_weight),
      quantize_activation_(quantize_activation) {
  QK_CHECK(in_features > 0 && out_features > 0, ShapeError,
           "QuantizedLinear: features must be positive, got ", in_features, " x ", out_features);
  QK_CHECK(block_size == -1 || (block_size > 0 && in_features % block_size == 0), ValueError,
           "QuantizedLinear: in_features ", in_features, " is not divisible by block_size ",
           block_size);
  QK_CHECK(!quantize_activation || block_size == -1, ValueError,
           "QuantizedLinear: quantize_activation needs per-channel weights (block_size -1)");
}

void QuantizedLinear::load_quantized_weight(const Tensor& weight, const Tensor& scale,
                                            const Tensor& zero_point) {
  int64_t k = 0;
  PackedLinearWeight p = pack_xla(weight, scale, zero_point, block_size_, int4_weight_, &k);
  QK_CHECK(k == in_features_ && p.out_features == out_features_, ShapeError,
           "QuantizedLinear: weight is ", p.out_features, " x ", k, " but the module is ",
           out_features_, " x ", in_features_);
  packed_ = std::move(p);
  loaded_ = true;
}

void QuantizedLinear::set_bias(const Tensor& bias) {
  QK_CHECK(has_bias_, ValueError, "QuantizedLinear: constructed without bias");
  QK_CHECK(bias.dtype() == DType::kFloat32 && bias.numel() == out_features_, ShapeError,
           "QuantizedLinear: bias must be float32 [", out_features_, "], got ", bias.summary());
  bias_ = bias.clone();
}

Tensor QuantizedLinear::forward(const Tensor& x) const {
  QK_CHECK(loaded_, ValueError, "QuantizedLinear: call load_quantized_weight before forward");
  QK_CHECK(!has_bias_ || bias_.defined(), ValueError,
           "QuantizedLinear: bias enabled but not set (set_bias)");
  const Tensor xf = as_float(x);
  const Tensor* bias = has_bias_ ? &bias_ : nullptr;
  return quantize_activation_ ? linear_dynamic_int8(xf, packed_, bias)
                              : linear_weight_only(xf, packed_, bias, GemvActivations::kFloat32);
}

}  // namespace quantkit

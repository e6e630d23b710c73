// torch_xla's weight-only quantized matmul and its module, on quantkit's kernels.
#pragma once

#include <optional>

#include "quantkit/kernels/linear.h"

namespace quantkit {

/// torch_xla quantized_matmul(x, w, scale, zero_point, block_size, int4_weight,
/// quantize_activation): y = x . W^T with W = scale * w - zero_point (zero_point is a float offset
/// in the real domain, not torch.ao's integer zero point; undefined = symmetric).
///   per-channel (block_size == -1): w int8 [N, K], scale/zero_point float32 [N];
///   blockwise (block_size = B):     w int8 [K/B, B, N], scale/zero_point float32 [K/B, N].
/// int4_weight: w holds int4 values in [-8, 7] (unpacked, one per byte). quantize_activation:
/// x is quantized per row to symmetric int8 first (W8A8; per-channel only, as torch_xla).
/// x is float32 or bfloat16 [..., K]; the result is float32 [..., N]. Without
/// quantize_activation the activations stay float32 (torch_xla's numerics), whatever
/// gemv_activations() says.
Tensor quantized_matmul(const Tensor& x, const Tensor& w, const Tensor& scale,
                        const Tensor& zero_point = Tensor(), int64_t block_size = -1,
                        bool int4_weight = false, bool quantize_activation = false);

/// The XlaQuantizedLinear analog: holds prepacked weights and an optional bias.
class QuantizedLinear {
 public:
  QuantizedLinear(int64_t in_features, int64_t out_features, bool bias = false,
                  int64_t block_size = -1, bool int4_weight = false,
                  bool quantize_activation = false);

  /// Takes weights in the torch_xla layout (see quantized_matmul) and packs them once.
  void load_quantized_weight(const Tensor& weight, const Tensor& scale,
                             const Tensor& zero_point = Tensor());
  void set_bias(const Tensor& bias);
  Tensor forward(const Tensor& x) const;

  const PackedLinearWeight& packed_weight() const { return packed_; }

 private:
  int64_t in_features_, out_features_, block_size_;
  bool has_bias_, int4_weight_, quantize_activation_;
  bool loaded_ = false;
  PackedLinearWeight packed_;
  Tensor bias_;
};

}  // namespace quantkit

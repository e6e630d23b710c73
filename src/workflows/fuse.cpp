// fuse_modules with PyTorch's eval-mode BatchNorm folding (fuse_conv_bn_weights /
// fuse_linear_bn_weights, the same float32 operations in the same order).
#include <cmath>

#include "quantkit/workflows/quantize.h"

namespace quantkit {
namespace {

// 1 / sqrt(var + eps), as torch.rsqrt on float32.
std::vector<float> bn_rsqrt(const BatchNorm& bn) {
  std::vector<float> r(static_cast<size_t>(bn.num_features));
  for (int64_t c = 0; c < bn.num_features; ++c) {
    r[c] = 1.0f / std::sqrt(bn.running_var.data<float>()[c] + static_cast<float>(bn.eps));
  }
  return r;
}

// Folds `bn` into a copy of `weight` ([C, ...]) and `bias` ([C] or undefined).
// linear_style: PyTorch's linear variant multiplies (b - mean) by (w * rsqrt) in one factor.
std::pair<Tensor, Tensor> fold_bn(const Tensor& weight, const Tensor& bias, const BatchNorm& bn,
                                  bool linear_style, const std::string& who) {
  const int64_t channels = weight.size(0);
  QK_CHECK(bn.num_features == channels, ShapeError, "cannot fuse ", who, ": ", channels,
           " output channels but BatchNorm has ", bn.num_features, " features");
  const std::vector<float> rsqrt = bn_rsqrt(bn);
  const float* gamma = bn.weight.data<float>();
  const float* beta = bn.bias.data<float>();
  const float* mean = bn.running_mean.data<float>();
  Tensor w = weight.clone();
  Tensor b = Tensor::empty({channels}, DType::kFloat32);
  const int64_t per_channel = weight.numel() / channels;
  for (int64_t c = 0; c < channels; ++c) {
    const float factor = gamma[c] * rsqrt[c];
    for (int64_t i = 0; i < per_channel; ++i) w.data<float>()[c * per_channel + i] *= factor;
    const float b0 = bias.defined() ? bias.data<float>()[c] : 0.0f;
    const float centred = b0 - mean[c];
    b.data<float>()[c] =
        linear_style ? centred * factor + beta[c] : centred * rsqrt[c] * gamma[c] + beta[c];
  }
  return {w, b};
}

ModulePtr folded_conv(const Conv& conv, const BatchNorm& bn) {
  ConvOptions o = conv.options;
  o.bias = true;
  auto fused = std::make_shared<Conv>(conv.dims, o);
  std::tie(fused->weight, fused->bias) = fold_bn(conv.weight, conv.bias, bn, false, "conv");
  fused->train(conv.is_training());
  return fused;
}

ModulePtr folded_linear(const Linear& linear, const BatchNorm& bn) {
  auto fused = std::make_shared<Linear>(linear.in_features, linear.out_features, true);
  std::tie(fused->weight, fused->bias) = fold_bn(linear.weight, linear.bias, bn, true, "linear");
  fused->train(linear.is_training());
  return fused;
}

bool is_conv(const std::string& t) {
  return t == "Conv1d" || t == "Conv2d" || t == "Conv3d";
}
bool is_bn(const std::string& t) {
  return t == "BatchNorm1d" || t == "BatchNorm2d" || t == "BatchNorm3d";
}

}  // namespace

void fuse_modules(Module& model, const std::vector<std::vector<std::string>>& groups) {
  for (const auto& group : groups) {
    QK_CHECK(group.size() == 2 || group.size() == 3, ValueError,
             "fuse_modules: a group has 2 or 3 modules, got ", group.size());
    std::vector<ModulePtr> mods;
    std::string types;
    for (const auto& name : group) {
      mods.push_back(model.find_ptr(name));
      types += (types.empty() ? "" : ", ") + mods.back()->type_name();
    }
    const std::string t0 = mods[0]->type_name(), t1 = mods[1]->type_name();
    const std::string t2 = group.size() == 3 ? mods[2]->type_name() : "";
    auto needs_eval = [&](const Module& bn) {
      QK_CHECK(!bn.is_training(), ValueError, "fuse_modules: folding BatchNorm '", group[1],
               "' needs eval mode: call model.eval() first");
    };
    ModulePtr fused;
    if (is_conv(t0) && is_bn(t1) && (t2.empty() || t2 == "ReLU")) {
      needs_eval(*mods[1]);
      const auto& conv = static_cast<const Conv&>(*mods[0]);
      ModulePtr folded = folded_conv(conv, static_cast<const BatchNorm&>(*mods[1]));
      fused = t2.empty() ? folded
                         : std::make_shared<Fused>("ConvReLU" + std::to_string(conv.dims) + "d",
                                                   std::vector<ModulePtr>{folded, mods[2]});
    } else if (is_conv(t0) && t1 == "ReLU" && t2.empty()) {
      const auto& conv = static_cast<const Conv&>(*mods[0]);
      fused = std::make_shared<Fused>("ConvReLU" + std::to_string(conv.dims) + "d",
                                      std::vector<ModulePtr>{mods[0], mods[1]});
    } else if (t0 == "Linear" && t1 == "ReLU" && t2.empty()) {
      fused = std::make_shared<Fused>("LinearReLU", std::vector<ModulePtr>{mods[0], mods[1]});
    } else if (t0 == "Linear" && t1 == "BatchNorm1d" && t2.empty()) {
      needs_eval(*mods[1]);
      fused = folded_linear(static_cast<const Linear&>(*mods[0]),
                            static_cast<const BatchNorm&>(*mods[1]));
    } else if (is_bn(t0) && t1 == "ReLU" && t2.empty() && t0 != "BatchNorm1d") {
      fused = std::make_shared<Fused>("BNReLU" + t0.substr(9),
                                      std::vector<ModulePtr>{mods[0], mods[1]});
    } else {
      throw ValueError("fuse_modules: cannot fuse [" + types +
                       "]; supported: [Conv, BatchNorm], [Conv, BatchNorm, ReLU], [Conv, ReLU], "
                       "[Linear, ReLU], [Linear, BatchNorm1d], [BatchNorm2d/3d, ReLU]");
    }
    fused->train(mods[0]->is_training());
    model.replace(group[0], fused);
    for (size_t i = 1; i < group.size(); ++i) model.replace(group[i], make_module<Identity>());
  }
}

}  // namespace quantkit

// Float modules with PyTorch semantics (eval-mode inference). Modules that only move or compare
// values (ReLU, ReLU6, MaxPool2d, Flatten, Identity, Dropout) also run on quantized values,
// keeping the input's scale and zero point, as PyTorch's quantized tensors allow. Others throw a
// DTypeError naming the module when handed a quantized value.
#pragma once

#include <cstdint>
#include <vector>

#include "quantkit/nn/module.h"

namespace quantkit {

/// y = x W^T + b; weight [out, in], bias [out] (OpenBLAS sgemm).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  std::string type_name() const override { return "Linear"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  int64_t in_features, out_features;
  Tensor weight;  // float32 [out, in], zero-initialised
  Tensor bias;    // float32 [out] or undefined
};

/// Conv1d/2d/3d geometry; vectors have one entry per spatial dimension.
struct ConvOptions {
  int64_t in_channels = 1, out_channels = 1;
  std::vector<int64_t> kernel_size;
  std::vector<int64_t> stride;    // default 1
  std::vector<int64_t> padding;   // default 0 (zeros)
  std::vector<int64_t> dilation;  // default 1
  int64_t groups = 1;
  bool bias = true;
  /// Fills defaults and checks everything against `spatial_dims`; throws ValueError.
  void resolve(int spatial_dims);
  /// Output extent of each spatial dimension for the given input extents.
  std::vector<int64_t> output_size(const std::vector<int64_t>& input_size) const;
};

/// Cross-correlation over 1, 2 or 3 spatial dimensions, NC[D][H]W layout, im2col + sgemm.
class Conv : public Module {
 public:
  Conv(int spatial_dims, ConvOptions options);
  std::string type_name() const override { return "Conv" + std::to_string(dims) + "d"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  int dims;
  ConvOptions options;
  Tensor weight;  // [out, in/groups, k...]
  Tensor bias;    // [out] or undefined
};

/// BatchNorm1d/2d/3d in eval mode: y = (x - mean) / sqrt(var + eps) * weight + bias per channel
/// (dimension 1). Training-mode statistics are not computed: train() models are not supported
/// by quantkit's inference modules, and forward() in training mode throws.
class BatchNorm : public Module {
 public:
  BatchNorm(int spatial_dims, int64_t num_features, double eps = 1e-5);
  std::string type_name() const override { return "BatchNorm" + std::to_string(dims) + "d"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  int dims;
  int64_t num_features;
  double eps;
  Tensor weight, bias, running_mean, running_var;  // [C]; weight 1, bias 0, mean 0, var 1
};

enum class ActivationKind { kReLU, kReLU6, kGELU, kSiLU, kHardswish, kSigmoid, kTanh };
const char* activation_name(ActivationKind kind);
/// The float function of an activation, element by element (PyTorch's formulas; GELU exact erf).
float apply_activation(ActivationKind kind, float x);

class Activation : public Module {
 public:
  explicit Activation(ActivationKind activation) : kind(activation) {}
  std::string type_name() const override { return activation_name(kind); }
  Value forward(const Value& x) override;
  ActivationKind kind;
};
struct ReLU : Activation {
  ReLU() : Activation(ActivationKind::kReLU) {}
};
struct ReLU6 : Activation {
  ReLU6() : Activation(ActivationKind::kReLU6) {}
};
struct GELU : Activation {
  GELU() : Activation(ActivationKind::kGELU) {}
};
struct SiLU : Activation {
  SiLU() : Activation(ActivationKind::kSiLU) {}
};
struct Hardswish : Activation {
  Hardswish() : Activation(ActivationKind::kHardswish) {}
};
struct Sigmoid : Activation {
  Sigmoid() : Activation(ActivationKind::kSigmoid) {}
};
struct Tanh : Activation {
  Tanh() : Activation(ActivationKind::kTanh) {}
};

/// Normalises over the last len(normalized_shape) dimensions (float64 statistics).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  std::string type_name() const override { return "LayerNorm"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  Shape normalized_shape;
  double eps;
  Tensor weight, bias;
};

/// Token embedding table: weight [num_embeddings, dim]. Called with token ids (lookup()), not
/// through forward().
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim);
  std::string type_name() const override { return "Embedding"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  /// Rows of `ids` -> float32 [ids.size(), dim]; throws ValueError for an id out of range.
  Tensor lookup(const std::vector<int64_t>& ids) const;
  int64_t num_embeddings, dim;
  Tensor weight;
};

/// RMSNorm (Llama): y = x * rsqrt(mean(x^2) + eps) * weight over the last dimension.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6);
  std::string type_name() const override { return "RMSNorm"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  int64_t dim;
  double eps;
  Tensor weight;
};

/// A container of children "0", "1", ... that a parent iterates itself (no forward()).
class ModuleList : public Module {
 public:
  std::string type_name() const override { return "ModuleList"; }
  Value forward(const Value&) override;
  ModuleList& add(ModulePtr module);
  int64_t size() const { return static_cast<int64_t>(children().size()); }
  Module& at(int64_t i) const { return *children()[static_cast<size_t>(i)].second; }
};

/// Identity in eval mode; training-mode dropout is not part of an inference runtime.
class Dropout : public Module {
 public:
  explicit Dropout(double probability = 0.5) : p(probability) {}
  std::string type_name() const override { return "Dropout"; }
  Value forward(const Value& x) override { return x; }
  std::string extra_repr() const override;
  double p;
};

class Identity : public Module {
 public:
  std::string type_name() const override { return "Identity"; }
  Value forward(const Value& x) override { return x; }
};

/// Flattens dimensions start_dim..end_dim (PyTorch defaults 1..-1).
class Flatten : public Module {
 public:
  explicit Flatten(int64_t first = 1, int64_t last = -1) : start_dim(first), end_dim(last) {}
  std::string type_name() const override { return "Flatten"; }
  Value forward(const Value& x) override;
  int64_t start_dim, end_dim;
};

/// Max pooling over H and W of NCHW input, no padding, dilation 1 (float or quantized).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0);  // stride 0 = kernel_size
  std::string type_name() const override { return "MaxPool2d"; }
  Value forward(const Value& x) override;
  std::string extra_repr() const override;
  int64_t kernel_size, stride;
};

/// Children "0", "1", ... run in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> modules);
  std::string type_name() const override { return "Sequential"; }
  Value forward(const Value& x) override;
  /// Appends a child named by its index.
  Sequential& add(ModulePtr module);
  /// Appends a named child (PyTorch's Sequential(OrderedDict(...))).
  Sequential& add(const std::string& name, ModulePtr module);
};

/// Marks where float values enter the quantized region; identity until convert() turns it into
/// Quantize with the observed qparams.
class QuantStub : public Module {
 public:
  std::string type_name() const override { return "QuantStub"; }
  Value forward(const Value& x) override { return x; }
};

/// Marks where values leave the quantized region; convert() turns it into DeQuantize.
class DeQuantStub : public Module {
 public:
  std::string type_name() const override { return "DeQuantStub"; }
  Value forward(const Value& x) override { return Value(x.to_float()); }
};

/// Float tensor ops as a module, so prepare() can observe their outputs and convert() can swap
/// them for requantizing versions (PyTorch's FloatFunctional). forward() is not used.
class FloatFunctional : public Module {
 public:
  std::string type_name() const override { return "FloatFunctional"; }
  Value forward(const Value&) override;
  virtual Value add(const Value& a, const Value& b);
  virtual Value add_relu(const Value& a, const Value& b);
  virtual Value mul(const Value& a, const Value& b);
  virtual Value cat(const std::vector<Value>& values, int64_t dim = 0);
};

// --- fused modules (fuse_modules builds them; children "0" (conv/linear/bn), "1" (relu)) ---

/// A fused float sequence that quantizes as one unit: ConvReLU1d/2d/3d, LinearReLU,
/// BNReLU2d/3d. BatchNorm is folded into the conv/linear weights before these are built.
class Fused : public Sequential {
 public:
  Fused(std::string type, std::vector<ModulePtr> modules);
  std::string type_name() const override { return type_; }
  bool is_quantization_leaf() const override { return true; }

 private:
  std::string type_;
};

}  // namespace quantkit

// Module: the tree every model is built from (PyTorch's nn.Module). A module has named
// children, named parameters and buffers, a train/eval mode, and forward(). Workflows walk the
// tree by fully qualified names ("encoder.layer.3.attention.query") and swap children.
//
// Models written by users subclass Module, register children in the constructor and call them
// by name in forward(), so that a child swapped by prepare/convert is the one that runs:
//
//   class Net : public Module {
//    public:
//     Net() { register_module("fc", std::make_shared<Linear>(4, 2)); }
//     std::string type_name() const override { return "Net"; }
//     Value forward(const Value& x) override { return call("fc", x); }
//   };
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "quantkit/nn/value.h"
#include "quantkit/quant/observer.h"

namespace quantkit {

class Module;
using ModulePtr = std::shared_ptr<Module>;
struct QConfig;

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;  // parameters are registered by address
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  /// PyTorch's class name ("Linear", "ConvReLU2d", "QuantizedLinear").
  virtual std::string type_name() const = 0;
  virtual Value forward(const Value& x) = 0;
  /// forward(), then the output observer if one is attached (prepare() attaches them).
  Value operator()(const Value& x);
  /// (*child(name))(x): how a parent calls its children.
  Value call(const std::string& name, const Value& x);

  // --- children ---
  /// Adds a child; names must be unique and free of dots.
  ModulePtr register_module(const std::string& name, ModulePtr module);
  /// The direct child `name`; throws ValueError listing the children when absent.
  const ModulePtr& child(const std::string& name) const;
  const std::vector<std::pair<std::string, ModulePtr>>& children() const { return children_; }
  /// Replaces the direct child `name` (which must exist).
  void replace_child(const std::string& name, ModulePtr module);
  /// The module at a dotted path relative to this one ("" is this module).
  Module& find(const std::string& qualified_name);
  ModulePtr find_ptr(const std::string& qualified_name);
  /// Replaces the module at a dotted path (not this module itself).
  void replace(const std::string& qualified_name, ModulePtr module);
  /// This module and every descendant, pre-order, with dotted names ("" for this one).
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");

  // --- parameters and buffers ---
  /// Parameters and buffers of this module and its descendants, by dotted name.
  std::map<std::string, Tensor> state_dict(const std::string& prefix = "");
  /// Loads tensors by dotted name. strict: every registered tensor must be given and nothing
  /// else. Every problem (missing, unexpected, wrong shape or dtype) is listed in one ValueError.
  void load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict = true);
  const std::vector<std::pair<std::string, Tensor*>>& parameters() const { return parameters_; }

  // --- mode, printing ---
  bool is_training() const { return training_; }
  /// Sets training mode on this module and all descendants (eval() = train(false)).
  void train(bool on = true);
  void eval() { train(false); }
  /// One line of attributes, as PyTorch's extra_repr ("in_features=4, out_features=2").
  virtual std::string extra_repr() const { return ""; }
  /// The tree as PyTorch prints it.
  std::string to_string() const;

  // --- quantization state (set by workflows) ---
  /// The QConfig assigned by prepare(); null = leave float.
  std::shared_ptr<const QConfig> qconfig;
  /// Observes the output of operator() (and of FloatFunctional ops).
  std::shared_ptr<Observer> activation_post_process;
  /// Leaf for quantization purposes: prepare/convert do not descend into it (fused modules).
  virtual bool is_quantization_leaf() const { return children_.empty(); }

 protected:
  void register_parameter(const std::string& name, Tensor* tensor);
  void register_buffer(const std::string& name, Tensor* tensor);
  /// Observes a float output if an observer is attached; returns it unchanged.
  Value observe_output(const Value& y);

 private:
  void print(std::string& out, int indent) const;
  std::vector<std::pair<std::string, ModulePtr>> children_;
  std::vector<std::pair<std::string, Tensor*>> parameters_;  // buffers included
  bool training_ = true;
};

/// Shorthand for std::make_shared<T>(args...) as a ModulePtr.
template <typename T, typename... Args>
ModulePtr make_module(Args&&... args) {
  return std::make_shared<T>(std::forward<Args>(args)...);
}

}  // namespace quantkit

#include "quantkit/nn/module.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "quantkit/quant/affine.h"
#include "quantkit/quant/pytorch.h"

namespace quantkit {

// --- Value -------------------------------------------------------------------------------------

Value::Value(Tensor t) : data_(std::move(t)) {
  QK_CHECK(!data_.defined() || data_.dtype() == DType::kFloat32, DTypeError,
           "a float module value must be float32, got ", dtype_name(data_.dtype()),
           ": use Value::quantized for codes");
}

Value Value::quantized(Tensor codes, double scale, int64_t zero_point) {
  QK_CHECK(codes.dtype() == DType::kUInt8 || codes.dtype() == DType::kInt8, DTypeError,
           "quantized values hold quint8 or qint8 codes, got ", dtype_name(codes.dtype()));
  QK_CHECK(scale > 0 && std::isfinite(scale), ValueError, "quantized value scale must be > 0, got ",
           scale);
  Value v;
  v.data_ = std::move(codes);
  v.quantized_ = true;
  v.scale_ = scale;
  v.zero_point_ = zero_point;
  return v;
}

const Tensor& Value::as_float(const std::string& who) const {
  QK_CHECK(!quantized_, DTypeError, who, " expects a float tensor but got a quantized one (",
           dtype_name(data_.dtype()), ", scale ", scale_,
           "): put a DeQuantStub in front of it, or quantize it too");
  return data_;
}

const Tensor& Value::codes(const std::string& who) const {
  QK_CHECK(quantized_, DTypeError, who,
           " expects a quantized tensor but got a float one: put a QuantStub in front of it "
           "(or leave the module float)");
  return data_;
}

Tensor Value::to_float() const {
  if (!quantized_) return data_;
  Tensor out = Tensor::empty(data_.shape(), DType::kFloat32);
  float* y = out.data<float>();
  const auto s = static_cast<float>(scale_);
  const int64_t n = data_.numel();
  if (data_.dtype() == DType::kUInt8) {
    const uint8_t* q = data_.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(q[i] - zero_point_) * s;
  } else {
    const int8_t* q = data_.data<int8_t>();
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(q[i] - zero_point_) * s;
  }
  return out;
}

Value Value::reshape(Shape shape) const {
  Value v = *this;
  v.data_ = data_.reshape(std::move(shape));
  return v;
}

// --- Module ------------------------------------------------------------------------------------

Value Module::operator()(const Value& x) {
  return observe_output(forward(x));
}

Value Module::observe_output(const Value& y) {
  if (activation_post_process && !y.is_quantized()) activation_post_process->observe(y.data());
  return y;
}

Value Module::call(const std::string& name, const Value& x) {
  return (*child(name))(x);
}

ModulePtr Module::register_module(const std::string& name, ModulePtr module) {
  QK_CHECK(module != nullptr, ValueError, "register_module('", name, "'): null module");
  QK_CHECK(!name.empty() && name.find('.') == std::string::npos, ValueError, "module name '", name,
           "' must be non-empty and contain no '.'");
  for (const auto& [n, m] : children_) {
    QK_CHECK(n != name, ValueError, "a child named '", name, "' already exists in ", type_name());
  }
  children_.emplace_back(name, module);
  return module;
}

const ModulePtr& Module::child(const std::string& name) const {
  for (const auto& entry : children_) {
    if (entry.first == name) return entry.second;
  }
  std::string known;
  for (const auto& [n, m] : children_) known += (known.empty() ? "" : ", ") + n;
  throw ValueError(type_name() + " has no child '" + name +
                   "' (children: " + (known.empty() ? "none" : known) + ")");
}

void Module::replace_child(const std::string& name, ModulePtr module) {
  QK_CHECK(module != nullptr, ValueError, "replace_child('", name, "'): null module");
  for (auto& entry : children_) {
    if (entry.first == name) {
      entry.second = std::move(module);
      return;
    }
  }
  child(name);  // throws with the list of children
}

ModulePtr Module::find_ptr(const std::string& qualified_name) {
  QK_CHECK(!qualified_name.empty(), ValueError, "find_ptr needs a non-empty name");
  Module* parent = this;
  std::string rest = qualified_name;
  for (;;) {
    const size_t dot = rest.find('.');
    const ModulePtr& c = parent->child(rest.substr(0, dot));
    if (dot == std::string::npos) return c;
    parent = c.get();
    rest = rest.substr(dot + 1);
  }
}

Module& Module::find(const std::string& qualified_name) {
  return qualified_name.empty() ? *this : *find_ptr(qualified_name);
}

void Module::replace(const std::string& qualified_name, ModulePtr module) {
  const size_t dot = qualified_name.rfind('.');
  Module& parent = dot == std::string::npos ? *this : find(qualified_name.substr(0, dot));
  parent.replace_child(qualified_name.substr(dot == std::string::npos ? 0 : dot + 1),
                       std::move(module));
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
  for (const auto& [name, m] : children_) {
    auto sub = m->named_modules(prefix.empty() ? name : prefix + "." + name);
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

void Module::register_parameter(const std::string& name, Tensor* tensor) {
  parameters_.emplace_back(name, tensor);
}

void Module::register_buffer(const std::string& name, Tensor* tensor) {
  parameters_.emplace_back(name, tensor);
}

std::map<std::string, Tensor> Module::state_dict(const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (const auto& [path, m] : named_modules(prefix)) {
    for (const auto& [name, t] : m->parameters_) {
      if (t->defined()) out[path.empty() ? name : path + "." + name] = *t;
    }
  }
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict) {
  std::vector<std::string> problems;
  std::set<std::string> used;
  for (const auto& [path, m] : named_modules()) {
    for (const auto& [name, t] : m->parameters_) {
      const std::string full = path.empty() ? name : path + "." + name;
      const auto it = tensors.find(full);
      if (it == tensors.end()) {
        if (strict && t->defined()) problems.push_back("missing '" + full + "'");
        continue;
      }
      used.insert(full);
      const Tensor& src = it->second;
      if (t->defined() && (src.shape() != t->shape() || src.dtype() != t->dtype())) {
        problems.push_back("'" + full + "' is " + std::string(dtype_name(src.dtype())) +
                           shape_to_string(src.shape()) + ", the module expects " +
                           std::string(dtype_name(t->dtype())) + shape_to_string(t->shape()));
        continue;
      }
      *t = src;
    }
  }
  if (strict) {
    for (const auto& [name, t] : tensors) {
      if (!used.count(name)) problems.push_back("unexpected '" + name + "'");
    }
  }
  if (!problems.empty()) {
    std::string msg = "load_state_dict into " + type_name() + ": ";
    for (size_t i = 0; i < problems.size() && i < 20; ++i) msg += (i ? "; " : "") + problems[i];
    if (problems.size() > 20) msg += "; and " + std::to_string(problems.size() - 20) + " more";
    throw ValueError(msg);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, m] : children_) m->train(on);
}

void Module::print(std::string& out, int indent) const {
  out += type_name() + "(" + extra_repr();
  if (!children_.empty()) {
    out += "\n";
    for (const auto& [name, m] : children_) {
      out += std::string(static_cast<size_t>(indent + 2), ' ') + "(" + name + "): ";
      m->print(out, indent + 2);
      out += "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ');
  }
  out += ")";
}

std::string Module::to_string() const {
  std::string out;
  print(out, 0);
  return out;
}

}  // namespace quantkit

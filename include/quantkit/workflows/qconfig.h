// QConfig: how to observe a module's activations and weights; QConfigMapping: which modules get
// which QConfig (PyTorch's qconfig attribute / qconfig_dict / QConfigMapping); the quantized
// engine setting.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "quantkit/quant/observer.h"

namespace quantkit {

struct QConfig {
  std::string name;            // "get_default_qconfig('x86')", for printing
  ObserverFactory activation;  // observer of the module's output
  ObserverFactory weight;      // observer run on the weight at convert()
};
using QConfigPtr = std::shared_ptr<const QConfig>;

/// PyTorch's get_default_qconfig(backend) for "x86", "fbgemm", "qnnpack", "onednn" (the
/// observers and ranges recorded in ../shared/golden/qconfigs.json). Throws ValueError naming the
/// known backends otherwise.
QConfigPtr get_default_qconfig(const std::string& backend);
/// default_dynamic_qconfig: PlaceholderObserver quint8 (dynamic), MinMax qint8 per-tensor
/// symmetric weights.
QConfigPtr default_dynamic_qconfig();
/// per_channel_dynamic_qconfig: per-channel symmetric qint8 weights.
QConfigPtr per_channel_dynamic_qconfig();

/// Which QConfig each module gets. Precedence, as PyTorch's eager mode: module name (exact,
/// then the first matching pattern) > module type > the parent's QConfig > global. A null
/// QConfig means "leave this module float".
class QConfigMapping {
 public:
  QConfigMapping& set_global(QConfigPtr qconfig);
  /// Type as Module::type_name() spells it ("Linear", "Conv2d", "LinearReLU").
  QConfigMapping& set_object_type(const std::string& type, QConfigPtr qconfig);
  /// Exact fully qualified name ("encoder.layer.0.attention.query").
  QConfigMapping& set_module_name(const std::string& name, QConfigPtr qconfig);
  /// ECMAScript regular expression matched against the whole name ("encoder\\..*\\.query").
  QConfigMapping& set_module_name_regex(const std::string& pattern, QConfigPtr qconfig);

  bool has_global() const { return has_global_; }
  const QConfigPtr& global() const { return global_; }
  /// The QConfig for module `name` of `type` whose parent got `parent`.
  QConfigPtr resolve(const std::string& name, const std::string& type,
                     const QConfigPtr& parent) const;
  /// Types given to set_object_type (prepare checks that each can be quantized).
  std::vector<std::string> object_types() const;

 private:
  bool has_global_ = false;
  QConfigPtr global_;
  std::map<std::string, QConfigPtr> types_;
  std::map<std::string, QConfigPtr> names_;
  struct Pattern;  // a compiled std::regex, kept out of this header
  std::vector<std::pair<std::shared_ptr<const Pattern>, QConfigPtr>> patterns_;
};

/// get_default_qconfig(backend) as the global QConfig.
QConfigMapping get_default_qconfig_mapping(const std::string& backend);

/// The quantized engine (torch.backends.quantized.engine): decides whether dynamic layers honour
/// reduce_range (x86/oneDNN do, QNNPACK does not). Default: oneDNN, as PyTorch 1.13 on x86.
QEngine quantized_engine();
void set_quantized_engine(QEngine engine);
/// "x86" | "fbgemm" (= x86) | "onednn" | "qnnpack"; throws ValueError otherwise.
QEngine parse_quantized_engine(const std::string& name);

}  // namespace quantkit

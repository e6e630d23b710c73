// GCC 12 reports a false -Wmaybe-uninitialized inside libstdc++'s regex compiler under
// -O3 with sanitizers; the warning is about std::function internals, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "quantkit/workflows/qconfig.h"

#include <atomic>
#include <regex>

namespace quantkit {
namespace {

ObserverOptions options(DType dtype, TorchQScheme qscheme, bool reduce_range) {
  ObserverOptions o;
  o.dtype = dtype;
  o.qscheme = qscheme;
  o.reduce_range = reduce_range;
  return o;
}

std::atomic<QEngine>& engine_setting() {
  static std::atomic<QEngine> engine{QEngine::kOneDNN};
  return engine;
}

}  // namespace

QConfigPtr get_default_qconfig(const std::string& backend) {
  auto qc = std::make_shared<QConfig>();
  qc->name = "get_default_qconfig('" + backend + "')";
  if (backend == "x86" || backend == "fbgemm") {
    qc->activation = observer_factory("HistogramObserver",
                                      options(DType::kUInt8, TorchQScheme::kPerTensorAffine, true));
    qc->weight = observer_factory("PerChannelMinMaxObserver",
                                  options(DType::kInt8, TorchQScheme::kPerChannelSymmetric, false));
  } else if (backend == "onednn") {
    qc->activation = observer_factory(
        "HistogramObserver", options(DType::kUInt8, TorchQScheme::kPerTensorAffine, false));
    qc->weight = observer_factory("PerChannelMinMaxObserver",
                                  options(DType::kInt8, TorchQScheme::kPerChannelSymmetric, false));
  } else if (backend == "qnnpack") {
    qc->activation = observer_factory(
        "HistogramObserver", options(DType::kUInt8, TorchQScheme::kPerTensorAffine, false));
    qc->weight = observer_factory("MinMaxObserver",
                                  options(DType::kInt8, TorchQScheme::kPerTensorSymmetric, false));
  } else {
    throw ValueError("unknown quantization backend '" + backend +
                     "': use x86, fbgemm, onednn or qnnpack");
  }
  return qc;
}

QConfigPtr default_dynamic_qconfig() {
  auto qc = std::make_shared<QConfig>();
  qc->name = "default_dynamic_qconfig";
  qc->activation = observer_factory("PlaceholderObserver",
                                    options(DType::kUInt8, TorchQScheme::kPerTensorAffine, false));
  qc->weight = observer_factory("MinMaxObserver",
                                options(DType::kInt8, TorchQScheme::kPerTensorSymmetric, false));
  return qc;
}

QConfigPtr per_channel_dynamic_qconfig() {
  auto qc = std::make_shared<QConfig>();
  qc->name = "per_channel_dynamic_qconfig";
  qc->activation = observer_factory("PlaceholderObserver",
                                    options(DType::kUInt8, TorchQScheme::kPerTensorAffine, false));
  qc->weight = observer_factory("PerChannelMinMaxObserver",
                                options(DType::kInt8, TorchQScheme::kPerChannelSymmetric, false));
  return qc;
}

QConfigMapping& QConfigMapping::set_global(QConfigPtr qconfig) {
  has_global_ = true;
  global_ = std::move(qconfig);
  return *this;
}

QConfigMapping& QConfigMapping::set_object_type(const std::string& type, QConfigPtr qconfig) {
  types_[type] = std::move(qconfig);
  return *this;
}

QConfigMapping& QConfigMapping::set_module_name(const std::string& name, QConfigPtr qconfig) {
  names_[name] = std::move(qconfig);
  return *this;
}

struct QConfigMapping::Pattern {
  std::regex re;
};

QConfigMapping& QConfigMapping::set_module_name_regex(const std::string& pattern,
                                                      QConfigPtr qconfig) {
  try {
    auto compiled = std::make_shared<Pattern>(Pattern{std::regex(pattern, std::regex::ECMAScript)});
    patterns_.emplace_back(std::move(compiled), std::move(qconfig));
  } catch (const std::regex_error& e) {
    throw ValueError("set_module_name_regex: '" + pattern + "' is not a valid regex: " + e.what());
  }
  return *this;
}

QConfigPtr QConfigMapping::resolve(const std::string& name, const std::string& type,
                                   const QConfigPtr& parent) const {
  if (const auto it = names_.find(name); it != names_.end()) return it->second;
  for (const auto& [pattern, qc] : patterns_) {
    if (std::regex_match(name, pattern->re)) return qc;
  }
  if (const auto it = types_.find(type); it != types_.end()) return it->second;
  return parent;
}

std::vector<std::string> QConfigMapping::object_types() const {
  std::vector<std::string> out;
  for (const auto& [type, qc] : types_) {
    if (qc != nullptr) out.push_back(type);
  }
  return out;
}

QConfigMapping get_default_qconfig_mapping(const std::string& backend) {
  QConfigMapping m;
  m.set_global(get_default_qconfig(backend));
  return m;
}

QEngine quantized_engine() {
  return engine_setting().load();
}
void set_quantized_engine(QEngine engine) {
  engine_setting().store(engine);
}

QEngine parse_quantized_engine(const std::string& name) {
  if (name == "x86" || name == "fbgemm") return QEngine::kX86;
  if (name == "onednn") return QEngine::kOneDNN;
  if (name == "qnnpack") return QEngine::kQNNPACK;
  throw ValueError("unknown quantized engine '" + name + "': use x86, fbgemm, onednn or qnnpack");
}

}  // namespace quantkit

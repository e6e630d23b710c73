#include "quantkit/kernels/isa.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "activation.h"
#include "attention.h"
#include "quant_rows.h"
#include "quantkit/core/error.h"

namespace quantkit {
namespace kernels {
const QuantRowKernels& quant_row_kernels_reference();
const QuantRowKernels& quant_row_kernels_avx2();
const QuantRowKernels& quant_row_kernels_avx512();
}  // namespace kernels

namespace {

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();  // may run from a static initialiser, before libgcc's own
  switch (isa) {
    case Isa::kReference:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return isa == Isa::kReference;
#endif
}

Isa parse_isa(std::string_view name) {
  if (name == "reference") return Isa::kReference;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw ValueError(
      detail::concat("QUANTKIT_ISA='", name, "' is not one of reference, avx2, avx512"));
}

Isa initial_isa() {
  if (const char* env = std::getenv("QUANTKIT_ISA"); env != nullptr && *env != '\0') {
    const Isa forced = parse_isa(env);
    QK_CHECK(cpu_supports(forced), ValueError, "QUANTKIT_ISA=", env,
             " but this CPU does not support it");
    return forced;
  }
  return supported_isas().back();
}

std::atomic<Isa>& current() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kReference:
      return "reference";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kReference, Isa::kAvx2, Isa::kAvx512}) {
    if (cpu_supports(isa)) out.push_back(isa);
  }
  return out;
}

Isa active_isa() {
  return current().load(std::memory_order_relaxed);
}

void set_active_isa(Isa isa) {
  QK_CHECK(cpu_supports(isa), ValueError, "this CPU does not support ", isa_name(isa));
  current().store(isa, std::memory_order_relaxed);
}

namespace kernels {

const QuantRowKernels& quant_row_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return quant_row_kernels_avx2();
    case Isa::kAvx512:
      return quant_row_kernels_avx512();
    case Isa::kReference:
      break;
  }
  return quant_row_kernels_reference();
}

const ActivationKernels& activation_kernels_for(Isa isa) {
  return isa == Isa::kReference ? reference::kActivationTable : avx2::kActivationTable;
}

const AttentionKernels& attention_kernels_for(Isa isa) {
  return isa == Isa::kReference ? reference::kAttentionTable : avx2::kAttentionTable;
}

const AttentionKernels& attention_kernels() {
  return attention_kernels_for(active_isa());
}

const ActivationKernels& activation_kernels() {
  return activation_kernels_for(active_isa());
}

const QuantRowKernels& quant_row_kernels() {
  return quant_row_kernels_for(active_isa());
}

}  // namespace kernels
}  // namespace quantkit

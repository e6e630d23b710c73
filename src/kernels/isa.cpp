#include "quantkit/kernels/isa.h"

#include <atomic>
#include <cstdlib>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "activation.h"
#include "attention.h"
#include "gemv.h"
#include "quant_rows.h"
#include "quantkit/core/error.h"

namespace quantkit {
namespace kernels {
const QuantRowKernels& quant_row_kernels_reference();
const QuantRowKernels& quant_row_kernels_avx2();
const QuantRowKernels& quant_row_kernels_avx512();
}  // namespace kernels

namespace {

#if defined(__x86_64__)
/// AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25), and Linux's permission to use the
/// tile data state, which a process must ask for once (arch_prctl ARCH_REQ_XCOMP_PERM).
bool amx_int8_usable() {
  static const bool usable = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
    if ((edx & (1u << 24)) == 0 || (edx & (1u << 25)) == 0) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}
#elif defined(__i386__)
bool amx_int8_usable() {
  return false;  // no tile state in 32-bit mode
}
#endif

#if defined(__x86_64__) || defined(__i386__)
/// AVX-VNNI: CPUID leaf 7 sub-leaf 1, EAX bit 4 (GCC 12's __builtin_cpu_supports does not know
/// it). The ymm state it needs is the one avx2 already checks.
bool avx_vnni_supported() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) != 0 && (eax & (1u << 4)) != 0;
}
#endif

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();  // may run from a static initialiser, before libgcc's own
  switch (isa) {
    case Isa::kReference:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx2Vnni:
      return cpu_supports(Isa::kAvx2) && avx_vnni_supported();
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("gfni");
    case Isa::kAmx:
      return cpu_supports(Isa::kAvx512) && amx_int8_usable();
  }
  return false;
#else
  return isa == Isa::kReference;
#endif
}

Isa parse_isa(std::string_view name) {
  if (name == "reference") return Isa::kReference;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx2_vnni") return Isa::kAvx2Vnni;
  if (name == "avx512") return Isa::kAvx512;
  if (name == "amx") return Isa::kAmx;
  throw ValueError(detail::concat("QUANTKIT_ISA='", name,
                                  "' is not one of reference, avx2, avx2_vnni, avx512, amx"));
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
    case Isa::kAvx2Vnni:
      return "avx2_vnni";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAmx:
      return "amx";
  }
  return "?";
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kReference, Isa::kAvx2, Isa::kAvx2Vnni, Isa::kAvx512, Isa::kAmx}) {
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

DecodeTuning decode_tuning_for_this_cpu() {
  bool amd = false;
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // Vendor string "AuthenticAMD" in EBX, EDX, ECX of leaf 0.
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) != 0)
    amd = ebx == 0x68747541u && edx == 0x69746e65u && ecx == 0x444d4163u;
#endif
  // AMD without the avx512 level (Zen 3 measured) streams better with the L1 prefetch, as Intel
  // does; Zen 5 without it (gemv.h).
  if (amd && !cpu_supports(Isa::kAvx512)) return DecodeTuning{8192, 1024, true, true};
  return amd ? DecodeTuning{8192, 0, true, true} : DecodeTuning{8192, 1024, true, false};
}

DecodeTuning decode_tuning = decode_tuning_for_this_cpu();

const QuantRowKernels& quant_row_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
    case Isa::kAvx2Vnni:  // no dot products here
      return quant_row_kernels_avx2();
    case Isa::kAvx512:
    case Isa::kAmx:
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

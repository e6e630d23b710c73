// OpenBLAS core check and re-execution (quantkit/kernels/blas.h).
#include "quantkit/kernels/blas.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "quantkit/kernels/isa.h"

namespace quantkit {

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name != nullptr ? std::string(name) : std::string();
}

std::string_view blas_core_override(std::string_view current_core, bool cpu_has_avx2,
                                    bool cpu_has_avx512) {
  // OpenBLAS names the generic fallback "Prescott" in any letter case across versions.
  std::string lower(current_core);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (lower != "prescott") return {};
  if (cpu_has_avx512) return "SkylakeX";
  if (cpu_has_avx2) return "Haswell";
  return {};
}

void reexec_with_tuned_blas(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice, or ours already
  bool avx2 = false, avx512 = false;
  for (Isa isa : supported_isas()) {
    avx2 = avx2 || isa == Isa::kAvx2;
    avx512 = avx512 || isa == Isa::kAvx512;
  }
  const std::string_view core = blas_core_override(blas_core_name(), avx2, avx512);
  if (core.empty()) return;
  if (setenv("OPENBLAS_CORETYPE", std::string(core).c_str(), 0) != 0) return;
  execv("/proc/self/exe", argv);
  std::fprintf(stderr,
               "quantkit: OpenBLAS runs its generic kernels on this CPU and re-executing with "
               "OPENBLAS_CORETYPE=%s failed; set OPENBLAS_CORETYPE=%s before starting the program "
               "for full float GEMM speed\n",
               std::string(core).c_str(), std::string(core).c_str());
}

}  // namespace quantkit

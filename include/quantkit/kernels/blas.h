// OpenBLAS's choice of kernels for this CPU. quantkit calls OpenBLAS for float GEMM (fp32 Linear
// and Conv, the weight-only linear at many tokens, GPTQ's and AWQ's statistics). Debian's build
// picks its kernels once, when the library loads, from a table of CPU models: a CPU newer than the
// table gets the generic SSE3 "Prescott" kernels, 4-5x slower (OpenBLAS 0.3.21 on Emerald Rapids:
// sgemm 4096^2 at M = 128, 2 threads, 61 against 234 GFLOPS as "SkylakeX"). OPENBLAS_CORETYPE
// overrides the choice, but only when it is set before the library loads.
#pragma once

#include <string>
#include <string_view>

namespace quantkit {

/// The OpenBLAS core this process runs ("SkylakeX", "Haswell", "Zen", "Prescott", ...).
std::string blas_core_name();

/// The core OpenBLAS should run where it fell back to its generic kernels ("Prescott") on a CPU
/// with AVX-512 ("SkylakeX") or AVX2 ("Haswell"); empty where its own choice stands.
std::string_view blas_core_override(std::string_view current_core, bool cpu_has_avx2,
                                    bool cpu_has_avx512);

/// Call first in main(): where blas_core_override names a core for this process and
/// OPENBLAS_CORETYPE is unset, sets it and re-executes the program (/proc/self/exe, the same
/// argv), so that OpenBLAS loads with it. Returns when no re-execution is needed, or when it
/// failed (then the program goes on with the slow kernels, after a warning on stderr).
void reexec_with_tuned_blas(char** argv);

}  // namespace quantkit

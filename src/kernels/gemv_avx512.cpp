// Weight-only GEMV kernels for the avx512 level (see gemv_impl.h; flags in src/CMakeLists.txt).
#define QK_ISA_NAMESPACE avx512
#include "gemv_impl.h"

namespace quantkit::kernels {
const GemvKernels& gemv_kernels_avx512() {
  return avx512::kGemvTable;
}
}  // namespace quantkit::kernels

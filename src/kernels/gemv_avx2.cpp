// Weight-only GEMV kernels for the avx2 level (see gemv_impl.h; flags in src/CMakeLists.txt).
#define QK_ISA_NAMESPACE avx2
#include "gemv_impl.h"

namespace quantkit::kernels {
const GemvKernels& gemv_kernels_avx2() {
  return avx2::kGemvTable;
}
}  // namespace quantkit::kernels

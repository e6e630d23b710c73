// Weight-only GEMV kernels for the reference level (see gemv_impl.h; flags in src/CMakeLists.txt).
#define QK_ISA_NAMESPACE reference
#include "gemv_impl.h"

namespace quantkit::kernels {
const GemvKernels& gemv_kernels_reference() {
  return reference::kGemvTable;
}
}  // namespace quantkit::kernels

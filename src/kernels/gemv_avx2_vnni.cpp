// Weight-only GEMV and dynamic int8 kernels for the avx2_vnni level: the avx2 sources, whose
// integer dot steps (int_dot.h) become vpdpbusd / vpdpwssd (see gemv_impl.h; flags in
// src/CMakeLists.txt).
#define QK_ISA_NAMESPACE avx2_vnni
#include "gemv_impl.h"

namespace quantkit::kernels {
const GemvKernels& gemv_kernels_avx2_vnni() {
  return avx2_vnni::kGemvTable;
}
}  // namespace quantkit::kernels

// Row kernels for the avx2 level (see quant_rows_impl.h; compiler flags in src/CMakeLists.txt).
#define QK_ISA_NAMESPACE avx2
#include "quant_rows_impl.h"

namespace quantkit::kernels {
const QuantRowKernels& quant_row_kernels_avx2() {
  return avx2::kTable;
}
}  // namespace quantkit::kernels

// Row kernels for the avx512 level (see quant_rows_impl.h; compiler flags in src/CMakeLists.txt).
#define QK_ISA_NAMESPACE avx512
#include "quant_rows_impl.h"

namespace quantkit::kernels {
const QuantRowKernels& quant_row_kernels_avx512() {
  return avx512::kTable;
}
}  // namespace quantkit::kernels

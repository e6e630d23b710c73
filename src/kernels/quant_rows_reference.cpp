// Row kernels for the reference level (see quant_rows_impl.h; compiler flags in
// src/CMakeLists.txt).
#define QK_ISA_NAMESPACE reference
#include "quant_rows_impl.h"

namespace quantkit::kernels {
const QuantRowKernels& quant_row_kernels_reference() {
  return reference::kTable;
}
}  // namespace quantkit::kernels

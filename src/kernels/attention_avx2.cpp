// Attention kernels for the avx2 level, which the avx512 level shares (see attention_impl.h;
// flags in src/CMakeLists.txt).
#define QK_ISA_NAMESPACE avx2
#include "attention_impl.h"

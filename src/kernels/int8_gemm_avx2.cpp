// Integer GEMM block kernel for the avx2 level (see int8_gemm_impl.h).
#include "int8_gemm_kernels.h"
#define QK_ISA_NAMESPACE avx2
#include "int8_gemm_impl.h"

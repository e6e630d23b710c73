// Integer GEMM block kernel for the reference level (see int8_gemm_impl.h).
#include "int8_gemm_kernels.h"
#define QK_ISA_NAMESPACE reference
#include "int8_gemm_impl.h"

// Per-ISA block kernels of the integer GEMM. Private to the library.
#pragma once

#include <cstdint>

namespace quantkit::kernels {

using Int16DotBlock = void (*)(const int16_t* a, int64_t m, const int16_t* b, int64_t n, int64_t k,
                               int64_t stride, int32_t* acc, int64_t ldc);

namespace reference {
extern const Int16DotBlock kInt16DotBlock;
}
namespace avx2 {
extern const Int16DotBlock kInt16DotBlock;
}
namespace avx512 {
extern const Int16DotBlock kInt16DotBlock;
}

}  // namespace quantkit::kernels

#include "quantkit/kernels/int8_gemm.h"

#include <algorithm>

#include "int8_gemm_kernels.h"
#include "quantkit/kernels/isa.h"
#include "quantkit/kernels/linear.h"

namespace quantkit {
namespace kernels {
const Int8GemmKernels& int8_gemm_kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
    case Isa::kAmx:
      return avx512::kInt8GemmKernels;
    case Isa::kAvx2:
    // vpdpwssd's 5-cycle chains ran this 8-accumulator block 0.9-1.0x of vpmaddwd + vpaddd
    // (4096^2, M = 64 / 256, Emerald Rapids), where the EVEX form at avx512 gained 4-6 %.
    case Isa::kAvx2Vnni:
      return avx2::kInt8GemmKernels;
    default:
      return reference::kInt8GemmKernels;
  }
}
}  // namespace kernels

namespace {

// Tiles small enough that a tile of B (int16 rows) stays in L2 while A's rows stream past.
constexpr int64_t kRowsA = 32;
constexpr int64_t kRowsB = 64;

}  // namespace

Int16Rows::Int16Rows(int64_t r, int64_t c) : rows(r), cols(c), stride((c + 15) / 16 * 16) {
  QK_CHECK(r >= 0 && c >= 0, ShapeError, "Int16Rows: negative extent");
  data.assign(static_cast<size_t>(rows * stride), 0);
}

Int16Rows pack_int8_rows(const int8_t* codes, int64_t n, int64_t k, const int64_t* zero_points) {
  Int16Rows out(n, k);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t zp = zero_points != nullptr ? zero_points[r] : 0;
    QK_CHECK(zp >= -255 && zp <= 255, ValueError, "weight zero point ", zp, " of row ", r,
             " is outside the int8 code range");
    int16_t* dst = out.row(r);
    for (int64_t c = 0; c < k; ++c) dst[c] = static_cast<int16_t>(codes[r * k + c] - zp);
  }
  return out;
}

void shift_activations(const Tensor& codes, int64_t m, int64_t k, int64_t zero_point,
                       Int16Rows& out) {
  QK_CHECK(codes.numel() == m * k, ShapeError, "shift_activations: ", codes.numel(), " codes for ",
           m, "x", k);
  QK_CHECK(zero_point >= -255 && zero_point <= 255, ValueError, "activation zero point ",
           zero_point, " is outside the 8-bit code range");
  if (out.rows != m || out.cols != k) out = Int16Rows(m, k);
  const auto zp = static_cast<int16_t>(zero_point);
  for (int64_t r = 0; r < m; ++r) {
    int16_t* dst = out.row(r);
    if (codes.dtype() == DType::kUInt8) {
      const uint8_t* src = codes.data<uint8_t>() + r * k;
      for (int64_t c = 0; c < k; ++c) dst[c] = static_cast<int16_t>(src[c] - zp);
    } else {
      const int8_t* src = codes.data<int8_t>() + r * k;
      for (int64_t c = 0; c < k; ++c) dst[c] = static_cast<int16_t>(src[c] - zp);
    }
  }
}

void gemm_s16_s32(const Int16Rows& a, const Int16Rows& b, int32_t* acc, int64_t ldc,
                  bool parallel) {
  QK_CHECK(a.stride == b.stride && a.cols == b.cols, ShapeError,
           "gemm_s16_s32: inner dimensions differ (", a.cols, " vs ", b.cols, ")");
  gemm_s16_s32(a.data.data(), a.rows, b.data.data(), b.rows, a.stride, acc, ldc, parallel);
}

void gemm_s16_s32(const int16_t* a, int64_t m, const int16_t* b, int64_t n, int64_t stride,
                  int32_t* acc, int64_t ldc, bool parallel) {
  QK_CHECK(stride % 16 == 0, ValueError, "gemm_s16_s32: row stride ", stride,
           " is not a multiple of 16");
  const kernels::Int16DotBlock kernel = kernels::int8_gemm_kernels().dot;
  const int64_t tiles_a = (m + kRowsA - 1) / kRowsA;
  const int64_t tiles_b = (n + kRowsB - 1) / kRowsB;
  const int threads = parallel ? num_threads() : 1;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t tb = 0; tb < tiles_b; ++tb) {
    for (int64_t ta = 0; ta < tiles_a; ++ta) {
      const int64_t i0 = ta * kRowsA, j0 = tb * kRowsB;
      kernel(a + i0 * stride, std::min(kRowsA, m - i0), b + j0 * stride, std::min(kRowsB, n - j0),
             stride, stride, acc + i0 * ldc + j0, ldc);
    }
  }
}

Int16PairPanel pack_pair_panel(const Int16Rows& w, int64_t row_begin, int64_t row_count) {
  QK_CHECK(row_begin >= 0 && row_count >= 0 && row_begin + row_count <= w.rows, ShapeError,
           "pack_pair_panel: rows [", row_begin, ", ", row_begin + row_count, ") out of ", w.rows);
  Int16PairPanel p;
  p.rows = row_count;
  p.rows_padded = (row_count + 7) / 8 * 8;
  p.stride = w.stride;
  p.data.assign(static_cast<size_t>(p.rows_padded * p.stride), 0);
  for (int64_t j = 0; j < row_count; ++j) {
    const int16_t* src = w.row(row_begin + j);
    for (int64_t k = 0; k < w.stride; ++k) {
      p.data[static_cast<size_t>(((k / 2) * p.rows_padded + j) * 2 + k % 2)] = src[k];
    }
  }
  return p;
}

void gemm_panel_s16_s32(const int16_t* a, int64_t m, const Int16PairPanel& panel, int32_t* acc,
                        int64_t ldc) {
  kernels::int8_gemm_kernels().panel(a, m, panel.stride, panel.data.data(), panel.rows,
                                     panel.rows_padded, acc, ldc);
}

void requantize(const int32_t* acc, int64_t n, double multiplier, double bias, double out_scale,
                int64_t zero_point, int64_t qmin, int64_t qmax, uint8_t* out, int64_t out_stride) {
  kernels::int8_gemm_kernels().requantize(
      acc, n, multiplier, bias, out_scale, static_cast<double>(zero_point),
      static_cast<double>(qmin), static_cast<double>(qmax), out, out_stride);
}

}  // namespace quantkit

// Exact integer GEMM for static and dynamic int8 layers (PyTorch's quantized Linear/Conv):
// acc[m, n] = sum_k (x[m, k] - x_zp) * (w[n, k] - w_zp[n]) in int32.
//
// Both operands are stored zero-point shifted as int16 rows padded with zeros to a multiple of
// 16 (Int16Rows). Every product then fits int16 x int16 -> int32 and pairs of them sum without
// saturation (|2 * 255 * 255| < 2^31), unlike u8 x s8 byte dot products, which saturate int16
// for full-range uint8 activations. The weights are shifted once at pack time; activations once
// per call, which is O(M K) against the O(M N K) of the product.
#pragma once

#include <cstdint>
#include <vector>

#include "quantkit/core/tensor.h"

namespace quantkit {

/// Rows of int16 values, each zero-padded to `stride` = round_up(cols, 16) elements.
struct Int16Rows {
  int64_t rows = 0, cols = 0, stride = 0;
  std::vector<int16_t> data;
  Int16Rows() = default;
  Int16Rows(int64_t rows, int64_t cols);
  int16_t* row(int64_t r) { return data.data() + r * stride; }
  const int16_t* row(int64_t r) const { return data.data() + r * stride; }
};

/// int8 weights [N, K] (row-major codes) minus per-row zero points (nullptr = all zero).
Int16Rows pack_int8_rows(const int8_t* codes, int64_t n, int64_t k, const int64_t* zero_points);
/// uint8 or int8 activations [M, K] minus one zero point, into `out` (resized to fit).
void shift_activations(const Tensor& codes, int64_t m, int64_t k, int64_t zero_point,
                       Int16Rows& out);

/// acc[i * ldc + j] = dot(a.row(i), b.row(j)) for i < a.rows, j < b.rows (same stride); uses
/// num_threads() threads over the rows of `a` (parallel = false: the caller's thread only).
void gemm_s16_s32(const Int16Rows& a, const Int16Rows& b, int32_t* acc, int64_t ldc,
                  bool parallel = true);
/// The same on raw rows: a [m, stride], b [n, stride], stride a multiple of 16 (sub-matrices,
/// e.g. one group of a grouped convolution).
void gemm_s16_s32(const int16_t* a, int64_t m, const int16_t* b, int64_t n, int64_t stride,
                  int32_t* acc, int64_t ldc, bool parallel = true);

/// Weights re-laid for the channel-vectorised kernel: element (k, n) at
/// data[((k / 2) * rows_padded + n) * 2 + k % 2], rows padded with zeros to a multiple of 8, so
/// one 32-byte load holds 2 consecutive k of 8 output channels (what vpmaddwd multiplies with a
/// broadcast pair of activations). No horizontal sums are needed, which is what makes it fast
/// for the short K of convolutions.
struct Int16PairPanel {
  int64_t rows = 0, rows_padded = 0, stride = 0;
  std::vector<int16_t> data;
};
/// Rows [row_begin, row_begin + row_count) of `w`.
Int16PairPanel pack_pair_panel(const Int16Rows& w, int64_t row_begin, int64_t row_count);

/// acc[j * ldc + i] = dot(a[i], panel row j) for i < m, j < panel.rows: the same numbers as
/// gemm_s16_s32(panel rows, a). `a` holds m rows of panel.stride int16. Single-threaded.
void gemm_panel_s16_s32(const int16_t* a, int64_t m, const Int16PairPanel& panel, int32_t* acc,
                        int64_t ldc);

/// Requantization of one output channel: out[i * out_stride] = the byte of
/// clamp(round_half_even((acc[i] * multiplier + bias) / out_scale) + zero_point, qmin, qmax),
/// computed in double (multiplier = x_scale * w_scale; int8 results as two's-complement bytes).
void requantize(const int32_t* acc, int64_t n, double multiplier, double bias, double out_scale,
                int64_t zero_point, int64_t qmin, int64_t qmax, uint8_t* out,
                int64_t out_stride = 1);

}  // namespace quantkit

// Weight-only GEMV/small-GEMM kernels, written once in portable C++ with explicit vector lanes
// (independent accumulators the compiler maps to SIMD registers) and compiled per ISA.
// QK_ISA_NAMESPACE names the instantiation.
#pragma once

#include <algorithm>
#include <cstdint>

#include "gemv.h"

namespace quantkit::kernels::QK_ISA_NAMESPACE {

constexpr int kChunk = 32;   // elements decoded at once
constexpr int kMaxRows = 4;  // activation rows sharing one decoded chunk

/// Decodes the 32 codes of chunk c of a packed row into floats (layout in linear.h).
template <int Bits>
inline void decode_chunk(const uint8_t* __restrict row, int64_t c, float* __restrict w) {
  if constexpr (Bits == 8) {
    const uint8_t* b = row + c * 32;
    for (int j = 0; j < 32; ++j) w[j] = static_cast<float>(b[j]);
  } else if constexpr (Bits == 4) {
    const uint8_t* b = row + c * 16;
    for (int j = 0; j < 16; ++j) {
      w[j] = static_cast<float>(b[j] & 0x0F);
      w[j + 16] = static_cast<float>(b[j] >> 4);
    }
  } else {
    const uint8_t* b = row + c * 8;
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 8; ++j) w[j + 8 * i] = static_cast<float>((b[j] >> (2 * i)) & 3);
    }
  }
}

/// Rows = number of activation rows handled together (1..kMaxRows).
template <int Bits, int Rows>
void gemv_rows(const GemvArgs& a, int64_t m0) {
  const int64_t full_chunks = a.k / kChunk;
  const int64_t chunks_per_group = a.group_size / kChunk;  // group_size is a multiple of 32 or K
  const float* xr[Rows];
  for (int r = 0; r < Rows; ++r) xr[r] = a.x + (m0 + r) * a.x_stride;
  for (int64_t n = a.n_begin; n < a.n_end; ++n) {
    const uint8_t* row = a.codes + n * a.row_bytes;
    const float* s = a.scales + n * a.groups;
    const float* off = a.offsets + n * a.groups;
    float out[Rows] = {};
    alignas(64) float w[kChunk];
    int64_t c = 0;
    for (int64_t g = 0; g < a.groups; ++g) {
      const int64_t group_end_chunk =
          std::min(full_chunks, a.group_size == a.k ? full_chunks : (g + 1) * chunks_per_group);
      alignas(64) float acc[Rows][kChunk] = {};
      for (; c < group_end_chunk; ++c) {
        decode_chunk<Bits>(row, c, w);
        for (int r = 0; r < Rows; ++r) {
          const float* xc = xr[r] + c * kChunk;
          for (int j = 0; j < kChunk; ++j) acc[r][j] += xc[j] * w[j];
        }
      }
      float dot[Rows];
      for (int r = 0; r < Rows; ++r) {
        float sum = 0.0f;
        for (int j = 0; j < kChunk; ++j) sum += acc[r][j];
        dot[r] = sum;
      }
      // The tail of K (not a whole chunk) belongs to the last group.
      if (g == a.groups - 1 && full_chunks * kChunk < a.k) {
        decode_chunk<Bits>(row, full_chunks, w);
        for (int r = 0; r < Rows; ++r) {
          for (int64_t j = 0; j < a.k - full_chunks * kChunk; ++j)
            dot[r] += xr[r][full_chunks * kChunk + j] * w[j];
        }
      }
      for (int r = 0; r < Rows; ++r)
        out[r] += s[g] * dot[r] + off[g] * a.x_group_sums[(m0 + r) * a.groups + g];
    }
    for (int r = 0; r < Rows; ++r) a.y[(m0 + r) * a.y_stride + n] = out[r];
  }
}

template <int Bits>
void gemv(const GemvArgs& a) {
  int64_t m = 0;
  for (; m + 4 <= a.m; m += 4) gemv_rows<Bits, 4>(a, m);
  switch (a.m - m) {
    case 3:
      gemv_rows<Bits, 3>(a, m);
      break;
    case 2:
      gemv_rows<Bits, 2>(a, m);
      break;
    case 1:
      gemv_rows<Bits, 1>(a, m);
      break;
    default:
      break;
  }
}

inline const GemvKernels kGemvTable = {gemv<8>, gemv<4>, gemv<2>};

}  // namespace quantkit::kernels::QK_ISA_NAMESPACE

// Shared by the float and the quantized convolutions: the input/output extents of one call,
// always as three spatial dimensions (missing leading ones are 1), and im2col.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "quantkit/nn/layers.h"

namespace quantkit::detail {

struct ConvGeometry {
  int64_t batch = 0, in_channels = 0, out_channels = 0, groups = 1;
  std::array<int64_t, 3> in{1, 1, 1}, out{1, 1, 1}, kernel{1, 1, 1}, stride{1, 1, 1}, pad{0, 0, 0},
      dilation{1, 1, 1};
  int64_t in_positions() const { return in[0] * in[1] * in[2]; }
  int64_t out_positions() const { return out[0] * out[1] * out[2]; }
  int64_t kernel_volume() const { return kernel[0] * kernel[1] * kernel[2]; }
  /// Columns of one group's im2col row: (in_channels / groups) * kernel volume.
  int64_t patch_size() const { return in_channels / groups * kernel_volume(); }
  Shape output_shape(int dims) const;
};

/// Validates `input_shape` ([N, C, spatial...]) against the options of a `dims`-d conv named
/// `who` and returns the geometry.
ConvGeometry conv_geometry(const Shape& input_shape, int dims, const ConvOptions& options,
                           const std::string& who);

/// One group's patches of image `n`: rows = output positions, row_stride >= patch_size();
/// positions outside the input read `pad_value`. T is float or int16_t; the source is S.
/// Loops run per patch column (channel, kernel offset) and output row, with the valid range of
/// output columns computed once, so the inner loop has no bounds checks.
template <typename S, typename T, typename Convert>
void im2col(const ConvGeometry& g, const S* image, int64_t group, T pad_value, T* rows,
            int64_t row_stride, Convert convert) {
  const int64_t cpg = g.in_channels / g.groups;
  const int64_t in_plane = g.in_positions();
  int64_t col = 0;
  for (int64_t c = 0; c < cpg; ++c) {
    const S* plane = image + (group * cpg + c) * in_plane;
    for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
      for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
        for (int64_t kw = 0; kw < g.kernel[2]; ++kw, ++col) {
          // Output columns ow with 0 <= ow * stride - pad + kw * dilation < in[2].
          const int64_t shift = kw * g.dilation[2] - g.pad[2];
          int64_t ow_lo = shift >= 0 ? 0 : (-shift + g.stride[2] - 1) / g.stride[2];
          int64_t ow_hi = g.in[2] - shift <= 0 ? 0 : (g.in[2] - shift - 1) / g.stride[2] + 1;
          ow_lo = std::min(ow_lo, g.out[2]);
          ow_hi = std::clamp(ow_hi, ow_lo, g.out[2]);
          int64_t row = 0;
          for (int64_t od = 0; od < g.out[0]; ++od) {
            const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dilation[0];
            for (int64_t oh = 0; oh < g.out[1]; ++oh, row += g.out[2]) {
              const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dilation[1];
              T* dst = rows + row * row_stride + col;
              if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) {
                for (int64_t ow = 0; ow < g.out[2]; ++ow) dst[ow * row_stride] = pad_value;
                continue;
              }
              const S* src = plane + (id * g.in[1] + ih) * g.in[2] + shift;
              for (int64_t ow = 0; ow < ow_lo; ++ow) dst[ow * row_stride] = pad_value;
              for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
                dst[ow * row_stride] = convert(src[ow * g.stride[2]]);
              }
              for (int64_t ow = ow_hi; ow < g.out[2]; ++ow) dst[ow * row_stride] = pad_value;
            }
          }
        }
      }
    }
  }
}

}  // namespace quantkit::detail

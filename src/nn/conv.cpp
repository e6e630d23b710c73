// Float convolution: im2col per image and group, then one sgemm W[out/g, patch] x cols^T, which
// lands directly in NC[D][H]W order.
#include <cblas.h>

#include <vector>

#include "conv_geometry.h"
#include "quantkit/kernels/linear.h"

namespace quantkit {
namespace detail {

Shape ConvGeometry::output_shape(int dims) const {
  Shape s{batch, out_channels};
  for (int d = 3 - dims; d < 3; ++d) s.push_back(out[static_cast<size_t>(d)]);
  return s;
}

ConvGeometry conv_geometry(const Shape& input_shape, int dims, const ConvOptions& o,
                           const std::string& who) {
  QK_CHECK(static_cast<int>(input_shape.size()) == dims + 2, ShapeError, who, " expects a ",
           dims + 2, "-d input [N, C, ...], got ", shape_to_string(input_shape));
  QK_CHECK(input_shape[1] == o.in_channels, ShapeError, who, " expects ", o.in_channels,
           " input channels, got input ", shape_to_string(input_shape));
  ConvGeometry g;
  g.batch = input_shape[0];
  g.in_channels = o.in_channels;
  g.out_channels = o.out_channels;
  g.groups = o.groups;
  std::vector<int64_t> spatial(input_shape.begin() + 2, input_shape.end());
  const std::vector<int64_t> out = o.output_size(spatial);
  for (int d = 0; d < dims; ++d) {
    const auto i = static_cast<size_t>(3 - dims + d);
    const auto j = static_cast<size_t>(d);
    g.in[i] = spatial[j];
    g.out[i] = out[j];
    g.kernel[i] = o.kernel_size[j];
    g.stride[i] = o.stride[j];
    g.pad[i] = o.padding[j];
    g.dilation[i] = o.dilation[j];
  }
  return g;
}

}  // namespace detail

void ConvOptions::resolve(int dims) {
  auto fill = [dims](std::vector<int64_t>& v, int64_t dflt, const char* what) {
    if (v.empty()) v.assign(static_cast<size_t>(dims), dflt);
    if (v.size() == 1) v.assign(static_cast<size_t>(dims), v[0]);
    QK_CHECK(static_cast<int>(v.size()) == dims, ValueError, "conv ", what, " needs ", dims,
             " values, got ", v.size());
  };
  QK_CHECK(!kernel_size.empty(), ValueError, "conv needs a kernel_size");
  fill(kernel_size, 1, "kernel_size");
  fill(stride, 1, "stride");
  fill(padding, 0, "padding");
  fill(dilation, 1, "dilation");
  for (int d = 0; d < dims; ++d) {
    const auto i = static_cast<size_t>(d);
    QK_CHECK(kernel_size[i] > 0 && stride[i] > 0 && dilation[i] > 0 && padding[i] >= 0, ValueError,
             "conv: kernel, stride and dilation must be positive and padding >= 0");
  }
  QK_CHECK(in_channels > 0 && out_channels > 0 && groups > 0 && in_channels % groups == 0 &&
               out_channels % groups == 0,
           ValueError, "conv: in_channels (", in_channels, ") and out_channels (", out_channels,
           ") must be positive multiples of groups (", groups, ")");
}

std::vector<int64_t> ConvOptions::output_size(const std::vector<int64_t>& in) const {
  std::vector<int64_t> out(in.size());
  for (size_t d = 0; d < in.size(); ++d) {
    const int64_t span = dilation[d] * (kernel_size[d] - 1) + 1;
    const int64_t padded = in[d] + 2 * padding[d];
    QK_CHECK(padded >= span, ShapeError, "conv: input extent ", in[d], " (padded ", padded,
             ") is smaller than the kernel span ", span, " in spatial dimension ", d);
    out[d] = (padded - span) / stride[d] + 1;
  }
  return out;
}

Conv::Conv(int spatial_dims, ConvOptions opts) : dims(spatial_dims), options(std::move(opts)) {
  QK_CHECK(dims >= 1 && dims <= 3, ValueError, "Conv supports 1, 2 or 3 spatial dimensions");
  options.resolve(dims);
  Shape wshape{options.out_channels, options.in_channels / options.groups};
  for (int64_t k : options.kernel_size) wshape.push_back(k);
  weight = Tensor::zeros(wshape, DType::kFloat32);
  register_parameter("weight", &weight);
  if (options.bias) bias = Tensor::zeros({options.out_channels}, DType::kFloat32);
  register_parameter("bias", &bias);
}

std::string Conv::extra_repr() const {
  auto list = [](const std::vector<int64_t>& v) {
    std::string s = "(";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + (v.size() == 1 ? ",)" : ")");
  };
  std::string s = std::to_string(options.in_channels) + ", " +
                  std::to_string(options.out_channels) +
                  ", kernel_size=" + list(options.kernel_size) + ", stride=" + list(options.stride);
  if (options.padding != std::vector<int64_t>(options.padding.size(), 0)) {
    s += ", padding=" + list(options.padding);
  }
  if (options.groups != 1) s += ", groups=" + std::to_string(options.groups);
  if (!bias.defined()) s += ", bias=False";
  return s;
}

Value Conv::forward(const Value& value) {
  const Tensor& x = value.as_float(type_name());
  const detail::ConvGeometry g = detail::conv_geometry(x.shape(), dims, options, type_name());
  Tensor y = Tensor::empty(g.output_shape(dims), DType::kFloat32);
  const int64_t positions = g.out_positions(), patch = g.patch_size();
  const int64_t out_per_group = g.out_channels / g.groups;
  const float* w = weight.data<float>();
  // Images in parallel, each with a single-threaded sgemm (see num_threads()).
  const int threads = g.batch > 1 ? num_threads() : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<float> cols(static_cast<size_t>(positions * patch));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.batch; ++n) {
      const float* image = x.data<float>() + n * g.in_channels * g.in_positions();
      float* out = y.data<float>() + n * g.out_channels * positions;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        detail::im2col(g, image, grp, 0.0f, cols.data(), patch, [](float v) { return v; });
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(out_per_group),
                    static_cast<int>(positions), static_cast<int>(patch), 1.0f,
                    w + grp * out_per_group * patch, static_cast<int>(patch), cols.data(),
                    static_cast<int>(patch), 0.0f, out + grp * out_per_group * positions,
                    static_cast<int>(positions));
      }
      if (bias.defined()) {
        for (int64_t o = 0; o < g.out_channels; ++o) {
          const float b = bias.data<float>()[o];
          for (int64_t p = 0; p < positions; ++p) out[o * positions + p] += b;
        }
      }
    }
  }
  return y;
}

}  // namespace quantkit

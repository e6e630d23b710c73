#include "quantkit/nn/layers.h"

#include "../kernels/activation.h"
#include "quantkit/kernels/linear.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <type_traits>

namespace quantkit {
namespace {

std::string bool_name(bool b) {
  return b ? "True" : "False";
}

// Rows of the last dimension: x viewed as [rows, cols].
int64_t leading_rows(const Tensor& x, int64_t cols) {
  return cols == 0 ? 0 : x.numel() / cols;
}

}  // namespace

// --- Linear ------------------------------------------------------------------------------------

Linear::Linear(int64_t in, int64_t out, bool has_bias) : in_features(in), out_features(out) {
  QK_CHECK(in > 0 && out > 0, ValueError, "Linear needs positive sizes, got ", in, "x", out);
  weight = Tensor::zeros({out, in}, DType::kFloat32);
  register_parameter("weight", &weight);
  if (has_bias) bias = Tensor::zeros({out}, DType::kFloat32);
  register_parameter("bias", &bias);
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features) +
         ", out_features=" + std::to_string(out_features) + ", bias=" + bool_name(bias.defined());
}

Value Linear::forward(const Value& value) {
  const Tensor& x = value.as_float(type_name());
  QK_CHECK(x.dim() >= 1 && x.size(-1) == in_features, ShapeError, "Linear(", in_features, ", ",
           out_features, ") got input of shape ", shape_to_string(x.shape()));
  const int64_t m = leading_rows(x, in_features);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor y = Tensor::empty(out_shape, DType::kFloat32);
  float* out = y.data<float>();
  if (bias.defined()) {
    for (int64_t r = 0; r < m; ++r) {
      std::copy_n(bias.data<float>(), out_features, out + r * out_features);
    }
  }
  if (m > 0) {
    // Blocks of output features in parallel, each a single-threaded sgemm (quantkit's one
    // thread pool; see num_threads()). Decode takes 64 rows at a time as threads finish, as the
    // quantized GEMV does (run_row_slices): a core slowed by the host does not stall the other.
    const int threads = num_threads();
    const int64_t block =
        m == 1 ? 64 : std::max<int64_t>(16, (out_features + threads - 1) / threads);
    const bool parallel = threads > 1 && m * in_features * out_features >= (int64_t{1} << 18);
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (parallel)
    for (int64_t n0 = 0; n0 < out_features; n0 += block) {
      const int64_t n = std::min(block, out_features - n0);
      if (m == 1) {  // decode: sgemv streams W at DRAM speed, sgemm with M = 1 does not
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(in_features),
                    1.0f, weight.data<float>() + n0 * in_features, static_cast<int>(in_features),
                    x.data<float>(), 1, bias.defined() ? 1.0f : 0.0f, out + n0, 1);
        continue;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
                  static_cast<int>(in_features), 1.0f, x.data<float>(),
                  static_cast<int>(in_features), weight.data<float>() + n0 * in_features,
                  static_cast<int>(in_features), bias.defined() ? 1.0f : 0.0f, out + n0,
                  static_cast<int>(out_features));
    }
  }
  return y;
}

// --- BatchNorm ---------------------------------------------------------------------------------

BatchNorm::BatchNorm(int spatial_dims, int64_t features, double epsilon)
    : dims(spatial_dims), num_features(features), eps(epsilon) {
  QK_CHECK(dims >= 1 && dims <= 3 && features > 0, ValueError,
           "BatchNorm needs 1..3 dims and positive num_features");
  weight = Tensor::from_floats(std::vector<float>(static_cast<size_t>(features), 1.0f), {features});
  bias = Tensor::zeros({features}, DType::kFloat32);
  running_mean = Tensor::zeros({features}, DType::kFloat32);
  running_var =
      Tensor::from_floats(std::vector<float>(static_cast<size_t>(features), 1.0f), {features});
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
}

std::string BatchNorm::extra_repr() const {
  std::ostringstream s;
  s << num_features << ", eps=" << eps;
  return s.str();
}

Value BatchNorm::forward(const Value& value) {
  QK_CHECK(!is_training(), ValueError, type_name(),
           " runs in eval mode only: call eval() on the model before inference");
  const Tensor& x = value.as_float(type_name());
  QK_CHECK(x.dim() >= 2 && x.size(1) == num_features, ShapeError, type_name(), "(", num_features,
           ") got input of shape ", shape_to_string(x.shape()));
  const int64_t n = x.size(0), c = num_features, inner = x.numel() / std::max<int64_t>(n * c, 1);
  Tensor y = Tensor::empty(x.shape(), DType::kFloat32);
  for (int64_t ch = 0; ch < c; ++ch) {
    // torch's eval kernel: y = x * alpha + beta with alpha = w / sqrt(var + eps) in float.
    const float inv_std = 1.0f / std::sqrt(running_var.data<float>()[ch] + static_cast<float>(eps));
    const float alpha = weight.data<float>()[ch] * inv_std;
    const float beta = bias.data<float>()[ch] - running_mean.data<float>()[ch] * alpha;
    for (int64_t b = 0; b < n; ++b) {
      const float* src = x.data<float>() + (b * c + ch) * inner;
      float* dst = y.data<float>() + (b * c + ch) * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = src[i] * alpha + beta;
    }
  }
  return y;
}

// --- activations -------------------------------------------------------------------------------

const char* activation_name(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::kReLU:
      return "ReLU";
    case ActivationKind::kReLU6:
      return "ReLU6";
    case ActivationKind::kGELU:
      return "GELU";
    case ActivationKind::kSiLU:
      return "SiLU";
    case ActivationKind::kHardswish:
      return "Hardswish";
    case ActivationKind::kSigmoid:
      return "Sigmoid";
    case ActivationKind::kTanh:
      return "Tanh";
  }
  return "?";
}

float apply_activation(ActivationKind kind, float x) {
  switch (kind) {
    case ActivationKind::kReLU:
      return x > 0.0f ? x : 0.0f;
    case ActivationKind::kReLU6:
      return std::min(std::max(x, 0.0f), 6.0f);
    case ActivationKind::kGELU:
      // PyTorch's exact GELU evaluates erf in float; float erf is also 3x faster than double.
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case ActivationKind::kSiLU:
      return x / (1.0f + std::exp(-x));
    case ActivationKind::kHardswish:
      return x * std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case ActivationKind::kSigmoid:
      return 1.0f / (1.0f + std::exp(-x));
    case ActivationKind::kTanh:
      return std::tanh(x);
  }
  return x;
}

Value Activation::forward(const Value& value) {
  if (value.is_quantized() && (kind == ActivationKind::kReLU || kind == ActivationKind::kReLU6)) {
    // Quantized relu/relu6 keep the input qparams: clamp the codes at the code of 0 (and of 6).
    const Tensor& q = value.codes(type_name());
    const int64_t zp = value.zero_point();
    const bool is_u8 = q.dtype() == DType::kUInt8;
    const int64_t qmax = is_u8 ? 255 : 127, qmin = is_u8 ? 0 : -128;
    const int64_t lo = std::clamp<int64_t>(zp, qmin, qmax);
    int64_t hi = qmax;
    if (kind == ActivationKind::kReLU6) {
      hi = std::clamp<int64_t>(zp + static_cast<int64_t>(std::nearbyint(6.0 / value.scale())), qmin,
                               qmax);
    }
    Tensor out = Tensor::empty(q.shape(), q.dtype());
    if (is_u8) {
      const uint8_t* src = q.data<uint8_t>();
      uint8_t* dst = out.data<uint8_t>();
      for (int64_t i = 0; i < q.numel(); ++i) {
        dst[i] = static_cast<uint8_t>(std::clamp<int64_t>(src[i], lo, hi));
      }
    } else {
      const int8_t* src = q.data<int8_t>();
      int8_t* dst = out.data<int8_t>();
      for (int64_t i = 0; i < q.numel(); ++i) {
        dst[i] = static_cast<int8_t>(std::clamp<int64_t>(src[i], lo, hi));
      }
    }
    return Value::quantized(out, value.scale(), zp);
  }
  const Tensor& x = value.as_float(type_name());
  Tensor y = Tensor::empty(x.shape(), DType::kFloat32);
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  const int64_t n = x.numel();
  if (kind == ActivationKind::kReLU) {  // the common case, as a loop the compiler vectorises
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i] > 0.0f ? src[i] : 0.0f;
    return y;
  }
  if (kind == ActivationKind::kGELU) {  // erf dominates BERT's FFN: a vector kernel per chunk
    const auto gelu = kernels::activation_kernels().gelu;
    constexpr int64_t kChunk = 16384;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      gelu(src + c * kChunk, std::min(kChunk, n - c * kChunk), dst + c * kChunk);
    }
    return y;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dst[i] = apply_activation(kind, src[i]);
  return y;
}

// --- LayerNorm, Dropout, Flatten, MaxPool ------------------------------------------------------

LayerNorm::LayerNorm(Shape shape, double epsilon, bool affine)
    : normalized_shape(std::move(shape)), eps(epsilon) {
  const int64_t n = shape_numel(normalized_shape);
  QK_CHECK(!normalized_shape.empty() && n > 0, ValueError,
           "LayerNorm needs a non-empty normalized_shape");
  if (affine) {
    weight =
        Tensor::from_floats(std::vector<float>(static_cast<size_t>(n), 1.0f), normalized_shape);
    bias = Tensor::zeros(normalized_shape, DType::kFloat32);
  }
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

std::string LayerNorm::extra_repr() const {
  std::ostringstream s;
  s << shape_to_string(normalized_shape) << ", eps=" << eps
    << ", elementwise_affine=" << bool_name(weight.defined());
  return s.str();
}

namespace {
/// sum_i f(x_i) in double over 8 independent partial sums: one running sum is a chain of
/// dependent adds (4 cycles each) that made LayerNorm 7 % of a MiniLM forward.
template <class F>
double lane_sum(const float* x, int64_t n, F f) {
  double part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) part[j] += f(static_cast<double>(x[i + j]));
  }
  for (; i < n; ++i) part[0] += f(static_cast<double>(x[i]));
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}
}  // namespace

Value LayerNorm::forward(const Value& value) {
  const Tensor& x = value.as_float(type_name());
  const int64_t cols = shape_numel(normalized_shape);
  const auto nd = static_cast<int64_t>(normalized_shape.size());
  QK_CHECK(x.dim() >= nd && Shape(x.shape().end() - nd, x.shape().end()) == normalized_shape,
           ShapeError, "LayerNorm", shape_to_string(normalized_shape), " got input of shape ",
           shape_to_string(x.shape()));
  Tensor y = Tensor::empty(x.shape(), DType::kFloat32);
  const int64_t rows = leading_rows(x, cols);
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* b = weight.defined() ? bias.data<float>() : nullptr;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x.data<float>() + r * cols;
    float* dst = y.data<float>() + r * cols;
    const double mean = lane_sum(src, cols, [](double v) { return v; }) / static_cast<double>(cols);
    const double var = lane_sum(src, cols, [mean](double v) { return (v - mean) * (v - mean); }) /
                       static_cast<double>(cols);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < cols; ++i) {
      double v = (src[i] - mean) * inv;
      if (w != nullptr) v = v * w[i] + b[i];
      dst[i] = static_cast<float>(v);
    }
  }
  return y;
}

std::string Dropout::extra_repr() const {
  std::ostringstream s;
  s << "p=" << p;
  return s.str();
}

Value Flatten::forward(const Value& x) {
  const auto rank = static_cast<int64_t>(x.shape().size());
  const int64_t s = start_dim < 0 ? start_dim + rank : start_dim;
  const int64_t e = end_dim < 0 ? end_dim + rank : end_dim;
  QK_CHECK(s >= 0 && e < rank && s <= e, ShapeError, "Flatten(", start_dim, ", ", end_dim,
           ") does not fit an input of shape ", shape_to_string(x.shape()));
  Shape out(x.shape().begin(), x.shape().begin() + s);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= x.shape()[static_cast<size_t>(d)];
  out.push_back(merged);
  out.insert(out.end(), x.shape().begin() + e + 1, x.shape().end());
  return x.reshape(out);
}

MaxPool2d::MaxPool2d(int64_t kernel, int64_t step)
    : kernel_size(kernel), stride(step == 0 ? kernel : step) {
  QK_CHECK(kernel_size > 0 && stride > 0, ValueError,
           "MaxPool2d needs a positive kernel and stride");
}

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + std::to_string(kernel_size) + ", stride=" + std::to_string(stride);
}

namespace {
template <typename T>
void max_pool(const T* x, T* y, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
              int64_t k, int64_t s) {
#pragma omp parallel for schedule(static) if (planes * oh * ow > 32768)
  for (int64_t p = 0; p < planes; ++p) {
    const T* src = x + p * h * w;
    T* dst = y + p * oh * ow;
    if (k == 2 && s == 2) {  // the common case, without the inner loops
      for (int64_t i = 0; i < oh; ++i) {
        const T* r0 = src + 2 * i * w;
        const T* r1 = r0 + w;
        for (int64_t j = 0; j < ow; ++j) {
          const T a = std::max(r0[2 * j], r0[2 * j + 1]);
          const T b = std::max(r1[2 * j], r1[2 * j + 1]);
          T best = std::max(a, b);
          if constexpr (std::is_floating_point_v<T>) {
            if (std::isnan(r0[2 * j]) || std::isnan(r0[2 * j + 1]) || std::isnan(r1[2 * j]) ||
                std::isnan(r1[2 * j + 1])) {
              best = NAN;
            }
          }
          dst[i * ow + j] = best;
        }
      }
      continue;
    }
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        T best = src[(i * s) * w + j * s];
        for (int64_t a = 0; a < k; ++a) {
          for (int64_t b = 0; b < k; ++b) {
            const T v = src[(i * s + a) * w + j * s + b];
            // NaN wins, as torch's max_pool2d propagates it.
            if (v > best || v != v) best = v;
          }
        }
        dst[i * ow + j] = best;
      }
    }
  }
}
}  // namespace

Value MaxPool2d::forward(const Value& x) {
  const Shape& shape = x.shape();
  QK_CHECK(shape.size() == 4, ShapeError, "MaxPool2d expects [N, C, H, W], got ",
           shape_to_string(shape));
  const int64_t h = shape[2], w = shape[3];
  QK_CHECK(h >= kernel_size && w >= kernel_size, ShapeError, "MaxPool2d: input ",
           shape_to_string(shape), " is smaller than the kernel ", kernel_size);
  const int64_t oh = (h - kernel_size) / stride + 1, ow = (w - kernel_size) / stride + 1;
  const int64_t planes = shape[0] * shape[1];
  const Tensor& in = x.data();
  Tensor out = Tensor::empty({shape[0], shape[1], oh, ow}, in.dtype());
  if (in.dtype() == DType::kFloat32) {
    max_pool(in.data<float>(), out.data<float>(), planes, h, w, oh, ow, kernel_size, stride);
    return out;
  }
  if (in.dtype() == DType::kUInt8) {
    max_pool(in.data<uint8_t>(), out.data<uint8_t>(), planes, h, w, oh, ow, kernel_size, stride);
  } else {
    max_pool(in.data<int8_t>(), out.data<int8_t>(), planes, h, w, oh, ow, kernel_size, stride);
  }
  return Value::quantized(out, x.scale(), x.zero_point());
}

// --- Embedding, RMSNorm, ModuleList ----------------------------------------------------------

Embedding::Embedding(int64_t n, int64_t d) : num_embeddings(n), dim(d) {
  QK_CHECK(n > 0 && d > 0, ValueError, "Embedding needs positive sizes");
  weight = Tensor::zeros({n, d}, DType::kFloat32);
  register_parameter("weight", &weight);
}

std::string Embedding::extra_repr() const {
  return std::to_string(num_embeddings) + ", " + std::to_string(dim);
}

Value Embedding::forward(const Value&) {
  throw ValueError("Embedding takes token ids: call lookup(ids)");
}

Tensor Embedding::lookup(const std::vector<int64_t>& ids) const {
  Tensor out = Tensor::empty({static_cast<int64_t>(ids.size()), dim}, DType::kFloat32);
  for (size_t i = 0; i < ids.size(); ++i) {
    QK_CHECK(ids[i] >= 0 && ids[i] < num_embeddings, ValueError, "token id ", ids[i],
             " at position ", i, " is outside the vocabulary [0, ", num_embeddings, ")");
    std::copy_n(weight.data<float>() + ids[i] * dim, dim,
                out.data<float>() + static_cast<int64_t>(i) * dim);
  }
  return out;
}

RMSNorm::RMSNorm(int64_t d, double epsilon) : dim(d), eps(epsilon) {
  QK_CHECK(d > 0, ValueError, "RMSNorm needs a positive size");
  weight = Tensor::from_floats(std::vector<float>(static_cast<size_t>(d), 1.0f), {d});
  register_parameter("weight", &weight);
}

std::string RMSNorm::extra_repr() const {
  std::ostringstream s;
  s << dim << ", eps=" << eps;
  return s.str();
}

Value RMSNorm::forward(const Value& value) {
  const Tensor& x = value.as_float(type_name());
  QK_CHECK(x.dim() >= 1 && x.size(-1) == dim, ShapeError, "RMSNorm(", dim, ") got input ",
           shape_to_string(x.shape()));
  Tensor y = Tensor::empty(x.shape(), DType::kFloat32);
  for (int64_t r = 0; r < leading_rows(x, dim); ++r) {
    const float* src = x.data<float>() + r * dim;
    float* dst = y.data<float>() + r * dim;
    float ss = 0.0f;
    for (int64_t i = 0; i < dim; ++i) ss += src[i] * src[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + static_cast<float>(eps));
    for (int64_t i = 0; i < dim; ++i) dst[i] = weight.data<float>()[i] * (src[i] * inv);
  }
  return y;
}

Value ModuleList::forward(const Value&) {
  throw ValueError("ModuleList has no forward(): its parent iterates the children");
}

ModuleList& ModuleList::add(ModulePtr module) {
  register_module(std::to_string(children().size()), std::move(module));
  return *this;
}

// --- containers --------------------------------------------------------------------------------

Sequential::Sequential(std::vector<ModulePtr> modules) {
  for (auto& m : modules) add(std::move(m));
}

Sequential& Sequential::add(ModulePtr module) {
  register_module(std::to_string(children().size()), std::move(module));
  return *this;
}

Sequential& Sequential::add(const std::string& name, ModulePtr module) {
  register_module(name, std::move(module));
  return *this;
}

Value Sequential::forward(const Value& x) {
  Value h = x;
  for (const auto& [name, m] : children()) h = (*m)(h);
  return h;
}

Fused::Fused(std::string type, std::vector<ModulePtr> modules)
    : Sequential(std::move(modules)), type_(std::move(type)) {}

// --- FloatFunctional ---------------------------------------------------------------------------

Value FloatFunctional::forward(const Value&) {
  throw ValueError(
      "FloatFunctional is not called with forward(): use its add/mul/cat/add_relu methods");
}

namespace {
Tensor binary(const Value& a, const Value& b, const char* op, float (*f)(float, float)) {
  const Tensor& x = a.as_float(std::string("FloatFunctional.") + op);
  const Tensor& y = b.as_float(std::string("FloatFunctional.") + op);
  QK_CHECK(x.shape() == y.shape() || y.numel() == 1, ShapeError, "FloatFunctional.", op,
           ": shapes ", shape_to_string(x.shape()), " and ", shape_to_string(y.shape()),
           " differ (only equal shapes or a scalar right operand are supported)");
  Tensor out = Tensor::empty(x.shape(), DType::kFloat32);
  const float* p = x.data<float>();
  const float* q = y.data<float>();
  const bool scalar = y.numel() == 1 && x.numel() != 1;
  for (int64_t i = 0; i < x.numel(); ++i) out.data<float>()[i] = f(p[i], q[scalar ? 0 : i]);
  return out;
}
}  // namespace

Value FloatFunctional::add(const Value& a, const Value& b) {
  return observe_output(binary(a, b, "add", [](float x, float y) { return x + y; }));
}

Value FloatFunctional::add_relu(const Value& a, const Value& b) {
  return observe_output(binary(a, b, "add_relu", [](float x, float y) {
    const float s = x + y;
    return s > 0.0f ? s : 0.0f;
  }));
}

Value FloatFunctional::mul(const Value& a, const Value& b) {
  return observe_output(binary(a, b, "mul", [](float x, float y) { return x * y; }));
}

Value FloatFunctional::cat(const std::vector<Value>& values, int64_t dim) {
  QK_CHECK(!values.empty(), ValueError, "FloatFunctional.cat needs at least one tensor");
  const Tensor& first = values[0].as_float("FloatFunctional.cat");
  const int64_t rank = first.dim();
  const int64_t d = dim < 0 ? dim + rank : dim;
  QK_CHECK(d >= 0 && d < rank, ShapeError, "FloatFunctional.cat: dim ", dim, " out of range");
  int64_t outer = 1, inner = 1, total = 0;
  for (int64_t i = 0; i < d; ++i) outer *= first.size(i);
  for (int64_t i = d + 1; i < rank; ++i) inner *= first.size(i);
  for (const Value& v : values) {
    const Tensor& t = v.as_float("FloatFunctional.cat");
    Shape a = t.shape(), b = first.shape();
    QK_CHECK(a.size() == b.size(), ShapeError, "FloatFunctional.cat: ranks differ");
    a[static_cast<size_t>(d)] = b[static_cast<size_t>(d)] = 0;
    QK_CHECK(a == b, ShapeError, "FloatFunctional.cat: shapes ", shape_to_string(t.shape()),
             " and ", shape_to_string(first.shape()), " differ outside dim ", d);
    total += t.size(d);
  }
  Shape out_shape = first.shape();
  out_shape[static_cast<size_t>(d)] = total;
  Tensor out = Tensor::empty(out_shape, DType::kFloat32);
  int64_t offset = 0;
  for (const Value& v : values) {
    const Tensor& t = v.data();
    const int64_t len = t.size(d) * inner;
    for (int64_t o = 0; o < outer; ++o) {
      std::copy_n(t.data<float>() + o * len, len, out.data<float>() + o * total * inner + offset);
    }
    offset += len;
  }
  return observe_output(out);
}

}  // namespace quantkit

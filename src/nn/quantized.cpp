#include "quantkit/nn/quantized.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>
#include <typeinfo>

#include "conv_geometry.h"
#include "quantkit/quant/pytorch.h"

namespace quantkit {
namespace {

std::pair<int64_t, int64_t> code_range(DType dtype) {
  return dtype == DType::kUInt8 ? std::pair<int64_t, int64_t>{0, 255}
                                : std::pair<int64_t, int64_t>{-128, 127};
}

// Requantizes the accumulators of one output channel (see quantized.h for the formula).
struct Requantizer {
  double input_scale;
  const Int8Weight* weight;
  const float* bias;
  OutputQParams out;
  int64_t qmin, qmax;

  Requantizer(double x_scale, const Int8Weight& w, const Tensor& b, OutputQParams o, bool relu)
      : input_scale(x_scale), weight(&w), bias(b.defined() ? b.data<float>() : nullptr), out(o) {
    std::tie(qmin, qmax) = code_range(o.dtype);
    if (relu) qmin = std::max(qmin, o.zero_point);
  }
  void channel(const int32_t* acc, int64_t n, int64_t c, uint8_t* dst, int64_t stride) const {
    requantize(acc, n, input_scale * weight->scale(c),
               bias != nullptr ? static_cast<double>(bias[c]) : 0.0, out.scale, out.zero_point,
               qmin, qmax, dst, stride);
  }
};

std::string qparams_repr(const OutputQParams& q) {
  std::ostringstream s;
  s << "scale=" << q.scale << ", zero_point=" << q.zero_point;
  return s.str();
}

void check_bias(const Tensor& bias, int64_t out_channels, const char* who) {
  if (!bias.defined()) return;
  QK_CHECK(bias.dtype() == DType::kFloat32 && bias.numel() == out_channels, ShapeError, who,
           ": bias must be float32 [", out_channels, "], got ", bias.summary());
}

}  // namespace

Value quantize_value(const Tensor& x, const OutputQParams& q) {
  const QTensor qt = quantize_per_tensor(x, q.scale, q.zero_point, q.dtype);
  return Value::quantized(qt.data(), q.scale, q.zero_point);
}

// --- Int8Weight --------------------------------------------------------------------------------

Int8Weight::Int8Weight(Tensor c, std::vector<double> s, std::vector<int64_t> zp)
    : codes(std::move(c)), scales(std::move(s)), zero_points(std::move(zp)) {
  QK_CHECK(codes.dtype() == DType::kInt8 && codes.dim() >= 2, DTypeError,
           "int8 layer weights must be int8 with rank >= 2, got ", codes.summary());
  const int64_t out = codes.size(0);
  QK_CHECK(scales.size() == zero_points.size() &&
               (scales.size() == 1 || static_cast<int64_t>(scales.size()) == out),
           ShapeError, "weight qparams: ", scales.size(), " scales and ", zero_points.size(),
           " zero points for ", out, " output channels");
  for (double v : scales) {
    QK_CHECK(v > 0 && std::isfinite(v), ValueError, "weight scale must be positive, got ", v);
  }
  std::vector<int64_t> row_zp(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) row_zp[o] = zero_points[scales.size() == 1 ? 0 : o];
  packed = pack_int8_rows(codes.data<int8_t>(), out, codes.numel() / out, row_zp.data());
}

Tensor Int8Weight::dequantize() const {
  Tensor w = Tensor::empty(codes.shape(), DType::kFloat32);
  const int64_t out = codes.size(0), k = codes.numel() / out;
  for (int64_t o = 0; o < out; ++o) {
    const int64_t zp = zero_points[per_channel() ? o : 0];
    for (int64_t i = 0; i < k; ++i) {
      w.data<float>()[o * k + i] =
          static_cast<float>(static_cast<double>(codes.data<int8_t>()[o * k + i] - zp) * scale(o));
    }
  }
  return w;
}

// --- Quantize ----------------------------------------------------------------------------------

Value Quantize::forward(const Value& x) {
  return quantize_value(x.as_float("Quantize (the converted QuantStub)"), qparams);
}

std::string Quantize::extra_repr() const {
  return qparams_repr(qparams) + ", dtype=" + torch_dtype_name(qparams.dtype);
}

// --- static Linear -----------------------------------------------------------------------------

StaticQuantizedLinear::StaticQuantizedLinear(Int8Weight w, Tensor b, OutputQParams o, bool r)
    : weight(std::move(w)), bias(std::move(b)), output(o), relu(r) {
  QK_CHECK(weight.codes.dim() == 2, ShapeError, "QuantizedLinear weight must be [out, in]");
  check_bias(bias, weight.codes.size(0), "QuantizedLinear");
}

std::string StaticQuantizedLinear::extra_repr() const {
  std::ostringstream s;
  s << "in_features=" << weight.codes.size(1) << ", out_features=" << weight.codes.size(0) << ", "
    << qparams_repr(output)
    << ", qscheme=" << (weight.per_channel() ? "per_channel" : "per_tensor");
  return s.str();
}

Value StaticQuantizedLinear::forward(const Value& x) {
  const Tensor& codes = x.codes(type_name());
  const int64_t k = weight.codes.size(1), n = weight.codes.size(0);
  QK_CHECK(codes.dim() >= 1 && codes.size(-1) == k, ShapeError, type_name(), "(", k, " -> ", n,
           ") got input of shape ", shape_to_string(codes.shape()));
  const int64_t m = codes.numel() / k;
  Int16Rows xs;
  shift_activations(codes, m, k, x.zero_point(), xs);
  // acc as [out channel, row], so each channel's accumulators are contiguous for requantize().
  std::vector<int32_t> acc(static_cast<size_t>(m * n));
  gemm_s16_s32(weight.packed, xs, acc.data(), m);
  Shape out_shape = codes.shape();
  out_shape.back() = n;
  Tensor out = Tensor::empty(out_shape, output.dtype);
  const Requantizer rq(x.scale(), weight, bias, output, relu);
  for (int64_t o = 0; o < n; ++o) rq.channel(acc.data() + o * m, m, o, out.bytes() + o, n);
  return Value::quantized(out, output.scale, output.zero_point);
}

// --- static Conv -------------------------------------------------------------------------------

StaticQuantizedConv::StaticQuantizedConv(int d, ConvOptions o, Int8Weight w, Tensor b,
                                         OutputQParams out, bool r)
    : dims(d),
      options(std::move(o)),
      weight(std::move(w)),
      bias(std::move(b)),
      output(out),
      relu(r) {
  options.resolve(dims);
  QK_CHECK(weight.codes.dim() == dims + 2 && weight.codes.size(0) == options.out_channels,
           ShapeError, "QuantizedConv weight ", shape_to_string(weight.codes.shape()),
           " does not match the conv options");
  check_bias(bias, options.out_channels, "QuantizedConv");
  const int64_t per_group = options.out_channels / options.groups;
  for (int64_t g = 0; g < options.groups; ++g) {
    panels_.push_back(pack_pair_panel(weight.packed, g * per_group, per_group));
  }
}

std::string StaticQuantizedConv::type_name() const {
  return std::string(relu ? "QuantizedConvReLU" : "QuantizedConv") + std::to_string(dims) + "d";
}

std::string StaticQuantizedConv::extra_repr() const {
  std::ostringstream s;
  s << options.in_channels << ", " << options.out_channels << ", " << qparams_repr(output)
    << ", groups=" << options.groups;
  return s.str();
}

Value StaticQuantizedConv::forward(const Value& x) {
  const Tensor& codes = x.codes(type_name());
  const detail::ConvGeometry g = detail::conv_geometry(codes.shape(), dims, options, type_name());
  Tensor out = Tensor::empty(g.output_shape(dims), output.dtype);
  const int64_t positions = g.out_positions(), patch = g.patch_size();
  const int64_t out_per_group = g.out_channels / g.groups;
  const int64_t image_in = g.in_channels * g.in_positions();
  const int64_t image_out = g.out_channels * positions;
  const auto zx = static_cast<int16_t>(x.zero_point());
  const Requantizer rq(x.scale(), weight, bias, output, relu);
  const int threads = num_threads();
#pragma omp parallel num_threads(threads) if (g.batch > 1)
  {
    Int16Rows cols(positions, patch);
    std::vector<int32_t> acc(static_cast<size_t>(out_per_group * positions));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        auto im2col_codes = [&](const auto* image) {
          detail::im2col(g, image, grp, int16_t{0}, cols.data.data(), cols.stride,
                         [zx](auto v) { return static_cast<int16_t>(v - zx); });
        };
        if (codes.dtype() == DType::kUInt8) {
          im2col_codes(codes.data<uint8_t>() + n * image_in);
        } else {
          im2col_codes(codes.data<int8_t>() + n * image_in);
        }
        gemm_panel_s16_s32(cols.data.data(), positions, panels_[static_cast<size_t>(grp)],
                           acc.data(), positions);
        for (int64_t o = 0; o < out_per_group; ++o) {
          const int64_t channel = grp * out_per_group + o;
          rq.channel(acc.data() + o * positions, positions, channel,
                     out.bytes() + n * image_out + channel * positions, 1);
        }
      }
    }
  }
  return Value::quantized(out, output.scale, output.zero_point);
}

// --- dynamic Linear ----------------------------------------------------------------------------

DynamicQuantizedLinear::DynamicQuantizedLinear(Int8Weight w, Tensor b, QEngine e, bool r)
    : weight(std::move(w)), bias(std::move(b)), engine(e), relu(r) {
  QK_CHECK(weight.codes.dim() == 2, ShapeError, "DynamicQuantizedLinear weight must be [out, in]");
  check_bias(bias, weight.codes.size(0), "DynamicQuantizedLinear");
  register_parameter("bias", &bias);
}

std::string DynamicQuantizedLinear::extra_repr() const {
  std::ostringstream s;
  s << "in_features=" << weight.codes.size(1) << ", out_features=" << weight.codes.size(0)
    << ", dtype=qint8, qscheme=" << (weight.per_channel() ? "per_channel" : "per_tensor");
  return s.str();
}

Value DynamicQuantizedLinear::forward(const Value& value) {
  const Tensor& x = value.as_float(type_name());
  const int64_t k = weight.codes.size(1), n = weight.codes.size(0);
  QK_CHECK(x.dim() >= 1 && x.size(-1) == k, ShapeError, type_name(), "(", k, " -> ", n,
           ") got input of shape ", shape_to_string(x.shape()));
  const int64_t m = x.numel() / k;
  // The module always asks for reduce_range; the QNNPACK engine ignores it.
  const QTensor xq =
      quantize_per_tensor_dynamic(x, DType::kUInt8, true, engine, &last_input_qparams);
  Int16Rows xs;
  shift_activations(xq.data(), m, k, last_input_qparams.zero_point, xs);
  std::vector<int32_t> acc(static_cast<size_t>(m * n));
  gemm_s16_s32(xs, weight.packed, acc.data(), n);
  Shape out_shape = x.shape();
  out_shape.back() = n;
  Tensor y = Tensor::empty(out_shape, DType::kFloat32);
  const auto sx = static_cast<float>(last_input_qparams.scale);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t o = 0; o < n; ++o) {
      const float multiplier = sx * static_cast<float>(weight.scale(o));
      float v = static_cast<float>(acc[r * n + o]) * multiplier;
      if (bias.defined()) v += bias.data<float>()[o];
      if (relu && v < 0.0f) v = 0.0f;
      y.data<float>()[r * n + o] = v;
    }
  }
  return y;
}

// --- weight-only -------------------------------------------------------------------------------

namespace {

/// With dynamic int8 activations, the codes as that kernel reads them (should `activations`
/// change later, the other kernels convert them per call).
CodeLayout code_layout_for(const QTensor& w, ActivationQuant activations) {
  if (activations != ActivationQuant::kInt8DynamicPerToken || !w.defined() ||
      w.shape().size() != 2 || w.scheme().block_size.size() != 2) {
    return CodeLayout::kRows;
  }
  return dynamic_int8_code_layout(w.dtype(), w.scheme().block_size[1], w.shape()[1]);
}

}  // namespace

WeightOnlyLinear::WeightOnlyLinear(const QTensor& w, Tensor b, ActivationQuant a)
    : weight(w),
      packed(pack_linear_weight(w, code_layout_for(w, a))),
      bias(std::move(b)),
      activations(a) {
  check_bias(bias, packed.out_features, "QLinear");
  activation_scale = Tensor::zeros({1}, DType::kFloat32);
  register_parameter("bias", &bias);
  register_buffer("activation_scale", &activation_scale);
  register_buffer("input_scale", &input_scale);
}

std::string WeightOnlyLinear::extra_repr() const {
  std::ostringstream s;
  s << "in_features=" << packed.in_features << ", out_features=" << packed.out_features
    << ", weights=" << weight.scheme().describe(weight.shape()) << ", activations="
    << (activations == ActivationQuant::kNone                  ? "none"
        : activations == ActivationQuant::kInt8                ? "int8"
        : activations == ActivationQuant::kInt8DynamicPerToken ? "int8 per-token dynamic"
                                                               : "fp8_e4m3");
  if (input_scale.defined()) s << ", input scaled per channel";
  return s.str();
}

namespace {

Tensor scale_input_channels(const Tensor& x, const Tensor& scale) {
  const int64_t k = x.size(-1);
  QK_CHECK(scale.dtype() == DType::kFloat32 && scale.dim() == 1 && scale.size(0) == k, ShapeError,
           "QLinear: input_scale is ", scale.summary(), ", expected float32 [", k,
           "] (one per input feature); the saved model is inconsistent");
  Tensor out = Tensor::empty(x.shape(), DType::kFloat32);
  const float* s = scale.data<float>();
  const float* in = x.data<float>();
  float* o = out.data<float>();
  for (int64_t r = 0; r < x.numel() / k; ++r) {
    for (int64_t c = 0; c < k; ++c) o[r * k + c] = in[r * k + c] * s[c];
  }
  return out;
}

}  // namespace

std::vector<Tensor> forward_shared_input(const std::vector<Module*>& modules, const Tensor& x) {
  std::vector<const PackedLinearWeight*> weights;
  std::vector<const Tensor*> biases;
  std::optional<ActivationQuant> mode;  // every module's, when they agree
  for (Module* m : modules) {
    auto* q = typeid(*m) == typeid(WeightOnlyLinear) ? static_cast<WeightOnlyLinear*>(m) : nullptr;
    if (q == nullptr || q->input_scale.defined() || q->calibrating ||
        q->activation_post_process != nullptr || (mode && *mode != q->activations)) {
      break;
    }
    mode = q->activations;
    weights.push_back(&q->packed);
    biases.push_back(q->bias.defined() ? &q->bias : nullptr);
  }
  if (weights.size() == modules.size() && !modules.empty()) {
    if (*mode == ActivationQuant::kNone) return linear_weight_only_shared_input(x, weights, biases);
    if (*mode == ActivationQuant::kInt8DynamicPerToken && x.defined() &&
        x.dtype() == DType::kFloat32) {
      return linear_dynamic_int8_shared_input(x, weights, biases);
    }
  }
  std::vector<Tensor> ys;
  for (Module* m : modules) ys.push_back((*m)(Value(x)).to_float());
  return ys;
}

Value WeightOnlyLinear::forward(const Value& value) {
  const Tensor& input = value.as_float(type_name());
  QK_CHECK(input.dim() >= 1 && input.size(-1) == packed.in_features, ShapeError, "QLinear: input ",
           shape_to_string(input.shape()), " does not end in ", packed.in_features, " features");
  const Tensor x = input_scale.defined() ? scale_input_channels(input, input_scale) : input;
  if (calibrating) {
    for (int64_t i = 0; i < x.numel(); ++i) {
      observed_absmax = std::max(observed_absmax, std::fabs(x.data<float>()[i]));
    }
  }
  if (activations == ActivationQuant::kInt8DynamicPerToken) {
    return linear_dynamic_int8(x, packed, bias.defined() ? &bias : nullptr);
  }
  const float a_scale = activation_scale.data<float>()[0];
  if (activations == ActivationQuant::kNone || a_scale <= 0.0f) {
    return linear_weight_only(x, packed, bias.defined() ? &bias : nullptr);
  }
  // Static per-tensor activation quantization with the calibrated scale, then the float kernel
  // on the exactly representable values.
  AffineSpec spec = AffineSpec::for_dtype(
      activations == ActivationQuant::kInt8 ? DType::kInt8 : DType::kFloat8E4M3);
  if (activations == ActivationQuant::kInt8) {
    spec.mapping = MappingType::kSymmetric;
    spec.zero_point_domain = ZeroPointDomain::kNone;
  }
  const Shape grid(static_cast<size_t>(x.dim()), 1);
  QParams qp{Tensor::from_floats({a_scale}, {}).reshape(grid), Tensor()};
  const Tensor xq = fake_quantize(x, spec, qp).output;
  return linear_weight_only(xq, packed, bias.defined() ? &bias : nullptr,
                            GemvActivations::kFloat32);
}

// --- quantized activations ---------------------------------------------------------------------

QuantizedActivation::QuantizedActivation(ActivationKind k, OutputQParams o) : kind(k), output(o) {}

std::string QuantizedActivation::type_name() const {
  return std::string("Quantized") + activation_name(kind);
}

Value QuantizedActivation::forward(const Value& x) {
  const Tensor& codes = x.codes(type_name());
  if (table_.empty() || table_scale_ != x.scale() || table_zero_point_ != x.zero_point() ||
      table_dtype_ != codes.dtype()) {
    const bool u8 = codes.dtype() == DType::kUInt8;
    std::vector<float> inputs(256);
    for (int c = 0; c < 256; ++c) {
      const int code = u8 ? c : c - 128;
      inputs[static_cast<size_t>(c)] = apply_activation(
          kind, static_cast<float>(code - x.zero_point()) * static_cast<float>(x.scale()));
    }
    const Value q = quantize_value(Tensor::from_floats(inputs, {256}), output);
    table_.assign(q.data().bytes(), q.data().bytes() + 256);
    table_scale_ = x.scale();
    table_zero_point_ = x.zero_point();
    table_dtype_ = codes.dtype();
  }
  Tensor out = Tensor::empty(codes.shape(), output.dtype);
  const uint8_t* src = codes.bytes();
  uint8_t* dst = out.bytes();
  const int offset = codes.dtype() == DType::kUInt8 ? 0 : 128;
  for (int64_t i = 0; i < codes.numel(); ++i) {
    const int index =
        codes.dtype() == DType::kUInt8 ? src[i] : static_cast<int8_t>(src[i]) + offset;
    dst[i] = table_[static_cast<size_t>(index)];
  }
  return Value::quantized(out, output.scale, output.zero_point);
}

// --- QFunctional -------------------------------------------------------------------------------

Value QuantizedFunctional::add(const Value& a, const Value& b) {
  const Value r = FloatFunctional::add(Value(a.to_float()), Value(b.to_float()));
  return quantize_value(r.data(), output);
}

Value QuantizedFunctional::add_relu(const Value& a, const Value& b) {
  const Value r = FloatFunctional::add_relu(Value(a.to_float()), Value(b.to_float()));
  return quantize_value(r.data(), output);
}

Value QuantizedFunctional::mul(const Value& a, const Value& b) {
  const Value r = FloatFunctional::mul(Value(a.to_float()), Value(b.to_float()));
  return quantize_value(r.data(), output);
}

Value QuantizedFunctional::cat(const std::vector<Value>& values, int64_t dim) {
  std::vector<Value> floats;
  for (const Value& v : values) floats.emplace_back(v.to_float());
  return quantize_value(FloatFunctional::cat(floats, dim).data(), output);
}

}  // namespace quantkit

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../kernels/quant_rows.h"
#include "block_walk.h"
#include "element_ops.h"
#include "quantkit/core/float_convert.h"
#include "quantkit/core/packing.h"
#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"

namespace quantkit {
namespace {

/// Uniform read access to scale and zero point entries, whatever their stored dtypes.
struct BlockParams {
  const Tensor& scale;
  const Tensor& zero_point;
  ZeroPointDomain domain;

  float scale_f32(int64_t b) const {
    return scale.dtype() == DType::kFloat64 ? static_cast<float>(scale.data<double>()[b])
                                            : scale.data<float>()[b];
  }
  double scale_f64(int64_t b) const {
    return scale.dtype() == DType::kFloat64 ? scale.data<double>()[b] : scale.data<float>()[b];
  }
  int32_t zp_int(int64_t b) const {
    return domain == ZeroPointDomain::kInt ? zero_point.data<int32_t>()[b] : 0;
  }
  float zp_float(int64_t b) const {
    return domain == ZeroPointDomain::kFloat ? zero_point.data<float>()[b] : 0.0f;
  }
};

void check_qparams(const Tensor& x, const Shape& block, const QParams& qp, const AffineSpec& spec) {
  const Shape grid = blocks_shape(x.shape(), block);
  QK_CHECK(qp.scale.defined(), ValueError, "quantize: scale is missing");
  QK_CHECK(qp.scale.dtype() == DType::kFloat32 || qp.scale.dtype() == DType::kFloat64, DTypeError,
           "quantize: scale must be float32 or float64, got ", dtype_name(qp.scale.dtype()));
  // An empty tensor uses none of its qparams, so any count is accepted (PyTorch takes a scalar).
  QK_CHECK(x.numel() == 0 || qp.scale.numel() == shape_numel(grid), ShapeError,
           "quantize: scale has shape ", shape_to_string(qp.scale.shape()), " but ",
           spec.granularity.to_string(), " of ", shape_to_string(x.shape()), " needs ",
           shape_to_string(grid));
  for (int64_t b = 0; b < qp.scale.numel(); ++b) {
    const double s = qp.scale.dtype() == DType::kFloat64 ? qp.scale.data<double>()[b]
                                                         : qp.scale.data<float>()[b];
    QK_CHECK(std::isfinite(s) && s > 0.0 && std::isfinite(1.0f / static_cast<float>(s)), ValueError,
             "quantize: scale[", b, "] = ", s,
             "; scales must be positive, finite and have a finite reciprocal");
  }
  if (spec.zero_point_domain == ZeroPointDomain::kNone) return;
  const DType want =
      spec.zero_point_domain == ZeroPointDomain::kInt ? DType::kInt32 : DType::kFloat32;
  QK_CHECK(qp.zero_point.defined() && qp.zero_point.dtype() == want, DTypeError,
           "quantize: zero_point must be a ", dtype_name(want), " tensor for zero_point_domain ",
           want == DType::kInt32 ? "int" : "float");
  QK_CHECK(qp.zero_point.numel() == qp.scale.numel(), ShapeError, "quantize: zero_point has shape ",
           shape_to_string(qp.zero_point.shape()), ", scale has ",
           shape_to_string(qp.scale.shape()));
  if (want == DType::kInt32) {
    for (int64_t b = 0; b < qp.zero_point.numel(); ++b) {
      const int32_t z = qp.zero_point.data<int32_t>()[b];
      QK_CHECK(z >= spec.effective_min() && z <= spec.effective_max(), ValueError,
               "quantize: zero_point[", b, "] = ", z, " is outside the quantized range [",
               spec.effective_min(), ", ", spec.effective_max(), "]");
    }
  }
}

/// Writes one row of integer codes into packed storage at element offset `start`.
void store_row(const int32_t* codes, int64_t n, DType dtype, uint8_t* out, int64_t start) {
  switch (dtype) {
    case DType::kInt32:
      std::memcpy(reinterpret_cast<int32_t*>(out) + start, codes, static_cast<size_t>(n) * 4);
      return;
    case DType::kInt8:
      for (int64_t i = 0; i < n; ++i)
        reinterpret_cast<int8_t*>(out)[start + i] = static_cast<int8_t>(codes[i]);
      return;
    case DType::kUInt8:
      for (int64_t i = 0; i < n; ++i) out[start + i] = static_cast<uint8_t>(codes[i]);
      return;
    default: {
      const int bits = dtype_bits(dtype);
      const int per_byte = 8 / bits;
      const uint32_t mask = (1u << bits) - 1u;
      int64_t i = 0;
      for (; i < n && (start + i) % per_byte != 0; ++i) packed_set(out, start + i, bits, codes[i]);
      uint8_t* dst = out + (start + i) / per_byte;
      for (; i + per_byte <= n; i += per_byte) {  // whole bytes
        uint32_t byte = 0;
        for (int k = 0; k < per_byte; ++k)
          byte |= (static_cast<uint32_t>(codes[i + k]) & mask) << (k * bits);
        *dst++ = static_cast<uint8_t>(byte);
      }
      for (; i < n; ++i) packed_set(out, start + i, bits, codes[i]);
    }
  }
}

/// Reads one row of integer codes from packed storage.
void load_row(const uint8_t* in, DType dtype, int64_t start, int64_t n, int32_t* codes) {
  switch (dtype) {
    case DType::kInt32:
      std::memcpy(codes, reinterpret_cast<const int32_t*>(in) + start, static_cast<size_t>(n) * 4);
      return;
    case DType::kInt8:
      for (int64_t i = 0; i < n; ++i) codes[i] = reinterpret_cast<const int8_t*>(in)[start + i];
      return;
    case DType::kUInt8:
      for (int64_t i = 0; i < n; ++i) codes[i] = in[start + i];
      return;
    default: {
      const DTypeInfo& info = dtype_info(dtype);
      for (int64_t i = 0; i < n; ++i)
        codes[i] = packed_get(in, start + i, info.bits, info.is_signed);
    }
  }
}

uint8_t float8_encode(float v, DType dtype) {
  return dtype == DType::kFloat8E4M3 ? float_to_e4m3_bits(v) : float_to_e5m2_bits(v);
}
float float8_decode(uint8_t c, DType dtype) {
  return dtype == DType::kFloat8E4M3 ? e4m3_bits_to_float(c) : e5m2_bits_to_float(c);
}
float float8_max(DType dtype) {
  return dtype == DType::kFloat8E4M3 ? kE4M3Max : kE5M2Max;
}

/// x / s clamped to the float8 range (NaN passes through), as torchao does before the cast.
float float8_scaled(float x, float s, float fmax) {
  const float v = x / s;
  return v > fmax ? fmax : (v < -fmax ? -fmax : v);
}

void quantize_int_row(const float* x, int64_t n, int64_t first_block, int64_t group,
                      const BlockParams& p, const AffineSpec& spec, int32_t* codes) {
  const int64_t qmin = spec.effective_min(), qmax = spec.effective_max();
  const bool wide = spec.dtype == DType::kInt32;
  for (int64_t j = 0; j < n; j += group) {
    const int64_t b = first_block + j / group;
    const int64_t len = std::min(group, n - j);
    const float inv = 1.0f / p.scale_f32(b);
    if (spec.zero_point_domain == ZeroPointDomain::kFloat) {
      const float zp = p.zp_float(b);
      for (int64_t i = j; i < j + len; ++i) {
        const float t = detail::round_half_even(std::fma(x[i], inv, zp));
        codes[i] = static_cast<int32_t>(t > qmax ? qmax : (t >= qmin ? t : qmin));
      }
    } else if (wide) {
      const int32_t zp = p.zp_int(b);
      for (int64_t i = j; i < j + len; ++i) {
        codes[i] = static_cast<int32_t>(detail::quantize_wide_range(x[i], inv, zp, qmin, qmax));
      }
    } else {
      const auto zp = static_cast<float>(p.zp_int(b));
      const auto fmin = static_cast<float>(qmin), fmax = static_cast<float>(qmax);
      for (int64_t i = j; i < j + len; ++i)
        codes[i] = detail::quantize_small_range(x[i], inv, zp, fmin, fmax);
    }
  }
}

void dequantize_int_row(const int32_t* codes, int64_t n, int64_t first_block, int64_t group,
                        const BlockParams& p, float* y) {
  for (int64_t j = 0; j < n; j += group) {
    const int64_t b = first_block + j / group;
    const int64_t end = j + std::min(group, n - j);
    if (p.domain == ZeroPointDomain::kFloat) {
      const double s = p.scale_f64(b), zp = p.zp_float(b);
      for (int64_t i = j; i < end; ++i)
        y[i] = static_cast<float>((static_cast<double>(codes[i]) - zp) * s);
    } else if (p.scale.dtype() == DType::kFloat64) {
      const double s = p.scale_f64(b);
      const int64_t zp = p.zp_int(b);
      for (int64_t i = j; i < end; ++i)
        y[i] = static_cast<float>(static_cast<double>(codes[i] - zp) * s);
    } else {
      const float s = p.scale_f32(b);
      const auto zp = static_cast<uint32_t>(p.zp_int(b));
      // 32-bit wrapping subtraction, as PyTorch's per-tensor dequantize does.
      for (int64_t i = j; i < end; ++i) {
        y[i] = s * static_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(codes[i]) - zp));
      }
    }
  }
}

/// Integer targets of at most 8 bits with an integer or no zero point run on the per-ISA byte
/// kernels; int32, float zero points and float64 scales take the generic path above.
bool uses_byte_kernels(DType dtype, ZeroPointDomain domain) {
  return is_quantized_int(dtype) && dtype_bits(dtype) <= 8 && domain != ZeroPointDomain::kFloat;
}

void store_byte_codes(const uint8_t* codes, int64_t n, DType dtype, uint8_t* out, int64_t start,
                      const kernels::QuantRowKernels& k) {
  const int bits = dtype_bits(dtype);
  if (bits == 8) {
    std::memcpy(out + start, codes, static_cast<size_t>(n));
    return;
  }
  const int per_byte = 8 / bits;
  int64_t i = 0;
  for (; i < n && (start + i) % per_byte != 0; ++i)
    packed_set(out, start + i, bits, static_cast<int8_t>(codes[i]));
  if (bits == 4) {
    const int64_t whole = (n - i) / 2;
    k.pack_nibbles(codes + i, whole, out + (start + i) / 2);
    i += 2 * whole;
  }
  for (; i < n; ++i) packed_set(out, start + i, bits, static_cast<int8_t>(codes[i]));
}

void load_byte_codes(const uint8_t* in, DType dtype, int64_t start, int64_t n, uint8_t* codes,
                     const kernels::QuantRowKernels& k) {
  const DTypeInfo& info = dtype_info(dtype);
  if (info.bits == 8) {
    std::memcpy(codes, in + start, static_cast<size_t>(n));
    return;
  }
  const int per_byte = 8 / info.bits;
  int64_t i = 0;
  for (; i < n && (start + i) % per_byte != 0; ++i) {
    codes[i] = static_cast<uint8_t>(packed_get(in, start + i, info.bits, info.is_signed));
  }
  if (info.bits == 4) {
    const int64_t whole = (n - i) / 2;
    k.unpack_nibbles(in + (start + i) / 2, whole, info.is_signed, codes + i);
    i += 2 * whole;
  }
  for (; i < n; ++i)
    codes[i] = static_cast<uint8_t>(packed_get(in, start + i, info.bits, info.is_signed));
}

void quantize_with_byte_kernels(const Tensor& x, const Shape& block, const BlockParams& params,
                                const AffineSpec& spec, Tensor& data) {
  const kernels::QuantRowKernels& k = kernels::quant_row_kernels();
  const auto qmin = static_cast<float>(spec.effective_min()),
             qmax = static_cast<float>(spec.effective_max());
  std::vector<uint8_t> codes(
      static_cast<size_t>(x.dim() == 0 ? 1 : std::max<int64_t>(x.size(-1), 1)));
  const float* xs = x.data<float>();
  detail::for_each_row(
      x.shape(), block, [&](int64_t start, int64_t n, int64_t first, int64_t group) {
        for (int64_t j = 0; j < n; j += group) {
          const int64_t b = first + j / group;
          k.quantize_bytes(xs + start + j, std::min(group, n - j), 1.0f / params.scale_f32(b),
                           static_cast<float>(params.zp_int(b)), qmin, qmax, codes.data() + j);
        }
        store_byte_codes(codes.data(), n, spec.dtype, data.bytes(), start, k);
      });
}

void dequantize_with_byte_kernels(const QTensor& q, const BlockParams& params, float* ys) {
  const kernels::QuantRowKernels& k = kernels::quant_row_kernels();
  const QScheme& scheme = q.scheme();
  const bool is_signed = dtype_info(scheme.dtype).is_signed;
  std::vector<uint8_t> codes(
      static_cast<size_t>(q.shape().empty() ? 1 : std::max<int64_t>(q.shape().back(), 1)));
  detail::for_each_row(q.shape(), scheme.block_size,
                       [&](int64_t start, int64_t n, int64_t first, int64_t group) {
                         load_byte_codes(q.data().bytes(), scheme.dtype, start, n, codes.data(), k);
                         for (int64_t j = 0; j < n; j += group) {
                           const int64_t b = first + j / group;
                           // s * ((float)q - zp) equals s * (float)(q - zp): both differences are
                           // exact below 2^24.
                           k.dequantize_bytes(codes.data() + j, std::min(group, n - j), is_signed,
                                              params.scale_f32(b),
                                              static_cast<float>(params.zp_int(b)), ys + start + j);
                         }
                       });
}

}  // namespace

QTensor quantize(const Tensor& x, const AffineSpec& spec, const QParams& qparams) {
  return quantize_into(x, spec, qparams, Tensor::empty(x.shape(), spec.dtype));
}

QTensor quantize_into(const Tensor& x, const AffineSpec& spec, const QParams& qparams,
                      Tensor data) {
  spec.validate();
  QK_CHECK(data.defined() && data.dtype() == spec.dtype && data.numel() == x.numel(), ShapeError,
           "quantize_into: codes must be ", dtype_name(spec.dtype), shape_to_string(x.shape()),
           ", got ", data.summary());
  data = data.reshape(x.shape());
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError, "quantize: input must be float32, got ",
           dtype_name(x.dtype()), " (convert with Tensor::to(DType::kFloat32) first)");
  const Shape block = spec.granularity.block_size_for(x.shape());
  check_qparams(x, block, qparams, spec);
  const BlockParams params{qparams.scale, qparams.zero_point, spec.zero_point_domain};
  if (data.nbytes() > 0)
    data.bytes()[data.nbytes() - 1] = 0;  // padding bits of a packed tail are zero
  const float* xs = x.data<float>();
  if (is_float8(spec.dtype)) {
    const float fmax = float8_max(spec.dtype);
    uint8_t* out = data.data<uint8_t>();
    detail::for_each_block_run(x.shape(), block, [&](int64_t offset, int64_t n, int64_t b) {
      const float s = params.scale_f32(b);
      for (int64_t i = offset; i < offset + n; ++i)
        out[i] = float8_encode(float8_scaled(xs[i], s, fmax), spec.dtype);
    });
  } else if (uses_byte_kernels(spec.dtype, spec.zero_point_domain)) {
    quantize_with_byte_kernels(x, block, params, spec, data);
  } else {
    std::vector<int32_t> codes(
        static_cast<size_t>(x.dim() == 0 ? 1 : std::max<int64_t>(x.size(-1), 1)));
    detail::for_each_row(
        x.shape(), block, [&](int64_t start, int64_t n, int64_t first, int64_t group) {
          quantize_int_row(xs + start, n, first, group, params, spec, codes.data());
          store_row(codes.data(), n, spec.dtype, data.bytes(), start);
        });
  }
  QScheme scheme{spec.dtype, spec.effective_min(),   spec.effective_max(),
                 block,      spec.zero_point_domain, spec.mapping};
  return QTensor(std::move(data), qparams.scale, qparams.zero_point, std::move(scheme));
}

QTensor quantize(const Tensor& x, const AffineSpec& spec) {
  return quantize(x, spec, choose_qparams(x, spec));
}

Tensor dequantize(const QTensor& q) {
  QK_CHECK(q.defined(), Error, "dequantize: undefined QTensor");
  Tensor y = Tensor::empty(q.shape(), DType::kFloat32);
  dequantize_into(q, y);
  return y;
}

void dequantize_into(const QTensor& q, Tensor& y) {
  QK_CHECK(q.defined(), Error, "dequantize: undefined QTensor");
  QK_CHECK(y.defined() && y.dtype() == DType::kFloat32 && y.numel() == q.data().numel(), ShapeError,
           "dequantize_into: output must be float32 with ", q.data().numel(), " elements, got ",
           y.summary());
  const QScheme& scheme = q.scheme();
  const BlockParams params{q.scale(), q.zero_point(), scheme.zero_point_domain};
  float* ys = y.data<float>();
  if (is_float8(scheme.dtype)) {
    const uint8_t* codes = q.data().data<uint8_t>();
    detail::for_each_block_run(q.shape(), scheme.block_size,
                               [&](int64_t offset, int64_t n, int64_t b) {
                                 const float s = params.scale_f32(b);
                                 for (int64_t i = offset; i < offset + n; ++i)
                                   ys[i] = float8_decode(codes[i], scheme.dtype) * s;
                               });
    return;
  }
  if (uses_byte_kernels(scheme.dtype, scheme.zero_point_domain) &&
      q.scale().dtype() == DType::kFloat32) {
    dequantize_with_byte_kernels(q, params, ys);
    return;
  }
  const int64_t row = q.shape().empty() ? 1 : std::max<int64_t>(q.shape().back(), 1);
  std::vector<int32_t> codes(static_cast<size_t>(row));
  detail::for_each_row(q.shape(), scheme.block_size,
                       [&](int64_t start, int64_t n, int64_t first, int64_t group) {
                         load_row(q.data().bytes(), scheme.dtype, start, n, codes.data());
                         dequantize_int_row(codes.data(), n, first, group, params, ys + start);
                       });
}

FakeQuantized fake_quantize(const Tensor& x, const AffineSpec& spec, const QParams& qparams) {
  spec.validate();
  QK_CHECK(x.dtype() == DType::kFloat32, DTypeError, "fake_quantize: input must be float32, got ",
           dtype_name(x.dtype()));
  const Shape block = spec.granularity.block_size_for(x.shape());
  check_qparams(x, block, qparams, spec);
  const BlockParams params{qparams.scale, qparams.zero_point, spec.zero_point_domain};
  FakeQuantized result{Tensor::empty(x.shape(), DType::kFloat32),
                       Tensor::empty(x.shape(), DType::kBool)};
  const float* xs = x.data<float>();
  float* ys = result.output.data<float>();
  uint8_t* mask = result.mask.data<uint8_t>();
  const int64_t qmin = spec.effective_min(), qmax = spec.effective_max();
  detail::for_each_block_run(x.shape(), block, [&](int64_t offset, int64_t n, int64_t b) {
    const float s = params.scale_f32(b);
    const float inv = 1.0f / s;
    const double sd = s;  // PyTorch's fake-quant kernels take a float32 scale
    for (int64_t i = offset; i < offset + n; ++i) {
      if (is_float8(spec.dtype)) {
        const float fmax = float8_max(spec.dtype);
        const float v = xs[i] / s;
        ys[i] =
            float8_decode(float8_encode(float8_scaled(xs[i], s, fmax), spec.dtype), spec.dtype) * s;
        mask[i] = std::fabs(v) <= fmax;
      } else if (spec.zero_point_domain == ZeroPointDomain::kFloat) {
        const float zp = params.zp_float(b);
        const float q = detail::round_half_even(std::fma(xs[i], inv, zp));
        const double clamped =
            std::fmin(std::fmax(q, static_cast<float>(qmin)), static_cast<float>(qmax));
        ys[i] = static_cast<float>((clamped - zp) * sd);
        mask[i] = q >= static_cast<float>(qmin) && q <= static_cast<float>(qmax);
      } else {
        const int64_t zp = params.zp_int(b);
        const int64_t q = detail::to_int64_saturating(static_cast<float>(zp) +
                                                      detail::round_half_even(xs[i] * inv));
        const int64_t clamped = q < qmin ? qmin : (q > qmax ? qmax : q);
        ys[i] = static_cast<float>(static_cast<double>(clamped - zp) * sd);
        mask[i] = q >= qmin && q <= qmax;
      }
    }
  });
  return result;
}

Tensor fake_quantize_backward(const Tensor& grad_output, const Tensor& mask) {
  QK_CHECK(grad_output.dtype() == DType::kFloat32, DTypeError,
           "fake_quantize_backward: grad_output must be float32");
  QK_CHECK(mask.dtype() == DType::kBool, DTypeError, "fake_quantize_backward: mask must be bool");
  QK_CHECK(grad_output.shape() == mask.shape(), ShapeError, "fake_quantize_backward: grad shape ",
           shape_to_string(grad_output.shape()), " differs from mask shape ",
           shape_to_string(mask.shape()));
  Tensor dx = Tensor::empty(grad_output.shape(), DType::kFloat32);
  const float* dy = grad_output.data<float>();
  const uint8_t* m = mask.data<uint8_t>();
  float* out = dx.data<float>();
  for (int64_t i = 0; i < dx.numel(); ++i) out[i] = m[i] ? dy[i] : 0.0f;
  return dx;
}

double sqnr_db(const Tensor& reference, const Tensor& approximation) {
  QK_CHECK(reference.dtype() == DType::kFloat32 && approximation.dtype() == DType::kFloat32,
           DTypeError, "sqnr_db: both tensors must be float32");
  QK_CHECK(reference.numel() == approximation.numel(), ShapeError, "sqnr_db: ", reference.numel(),
           " vs ", approximation.numel(), " elements");
  double signal = 0.0, noise = 0.0;
  const float* a = reference.data<float>();
  const float* b = approximation.data<float>();
  for (int64_t i = 0; i < reference.numel(); ++i) {
    signal += static_cast<double>(a[i]) * a[i];
    const double d = static_cast<double>(a[i]) - b[i];
    noise += d * d;
  }
  if (noise == 0.0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

}  // namespace quantkit

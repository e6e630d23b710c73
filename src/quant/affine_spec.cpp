#include <cmath>

#include "quantkit/quant/affine.h"

namespace quantkit {

namespace {
int64_t floor_half(int64_t v) {
  return v >= 0 ? v / 2 : -((-v + 1) / 2);
}

}  // namespace

const char* mapping_type_name(MappingType m) {
  switch (m) {
    case MappingType::kSymmetric:
      return "symmetric";
    case MappingType::kSymmetricNoClippingError:
      return "symmetric_no_clipping_err";
    case MappingType::kAsymmetric:
      return "asymmetric";
  }
  return "?";
}

MappingType parse_mapping_type(const std::string& name) {
  for (MappingType m : {MappingType::kSymmetric, MappingType::kSymmetricNoClippingError,
                        MappingType::kAsymmetric}) {
    if (name == mapping_type_name(m)) return m;
  }
  throw ValueError("unknown mapping '" + name +
                   "'; expected symmetric, symmetric_no_clipping_err or asymmetric");
}

const char* zero_point_domain_name(ZeroPointDomain d) {
  switch (d) {
    case ZeroPointDomain::kInt:
      return "int";
    case ZeroPointDomain::kFloat:
      return "float";
    case ZeroPointDomain::kNone:
      return "none";
  }
  return "?";
}

ZeroPointDomain parse_zero_point_domain(const std::string& name) {
  for (ZeroPointDomain d :
       {ZeroPointDomain::kInt, ZeroPointDomain::kFloat, ZeroPointDomain::kNone}) {
    if (name == zero_point_domain_name(d)) return d;
  }
  throw ValueError("unknown zero_point_domain '" + name + "'; expected int, float or none");
}

AffineSpec AffineSpec::for_dtype(DType dtype, Granularity granularity) {
  AffineSpec spec;
  spec.dtype = dtype;
  spec.granularity = std::move(granularity);
  if (is_float8(dtype)) {
    spec.quant_min = 0;
    spec.quant_max = 0;
    spec.mapping = MappingType::kSymmetric;
    spec.zero_point_domain = ZeroPointDomain::kNone;
    return spec;
  }
  QK_CHECK(
      is_quantized_int(dtype), DTypeError, "AffineSpec: cannot quantize to ", dtype_name(dtype),
      "; targets are int32, int8, uint8, int4, uint4, int2, uint2, float8_e4m3fn, float8_e5m2");
  const DTypeInfo& info = dtype_info(dtype);
  spec.quant_min = info.int_min;
  spec.quant_max = info.int_max;
  const bool signed_sub_byte = info.bits < 8 && info.is_signed;
  spec.mapping = signed_sub_byte ? MappingType::kSymmetric : MappingType::kAsymmetric;
  spec.zero_point_domain = signed_sub_byte ? ZeroPointDomain::kNone : ZeroPointDomain::kInt;
  return spec;
}

int64_t AffineSpec::effective_min() const {
  return reduce_range ? floor_half(quant_min) : quant_min;
}
int64_t AffineSpec::effective_max() const {
  return reduce_range ? floor_half(quant_max) : quant_max;
}

void AffineSpec::validate() const {
  QK_CHECK(scale_dtype == DType::kFloat32 || scale_dtype == DType::kFloat64 ||
               scale_dtype == DType::kFloat16,
           DTypeError, "AffineSpec.scale_dtype must be float32, float64 or float16, got ",
           dtype_name(scale_dtype));
  QK_CHECK(std::isfinite(eps) && eps >= 0.0f, ValueError,
           "AffineSpec.eps must be finite and >= 0, got ", eps);
  if (is_float8(dtype)) {
    QK_CHECK(zero_point_domain == ZeroPointDomain::kNone, ValueError,
             "AffineSpec: float8 targets take a scale only; set zero_point_domain to none");
    QK_CHECK(
        mapping != MappingType::kAsymmetric, ValueError,
        "AffineSpec: float8 targets are symmetric; asymmetric mapping is not defined for them");
    return;
  }
  QK_CHECK(
      is_quantized_int(dtype), DTypeError, "AffineSpec: cannot quantize to ", dtype_name(dtype),
      "; targets are int32, int8, uint8, int4, uint4, int2, uint2, float8_e4m3fn, float8_e5m2");
  const DTypeInfo& info = dtype_info(dtype);
  QK_CHECK(quant_min < quant_max, ValueError, "AffineSpec: quant_min (", quant_min,
           ") must be smaller than quant_max (", quant_max, ")");
  QK_CHECK(quant_min >= info.int_min && quant_max <= info.int_max, ValueError,
           "AffineSpec: range [", quant_min, ", ", quant_max, "] does not fit ", info.name, " [",
           info.int_min, ", ", info.int_max, "]");
  QK_CHECK(effective_min() < effective_max(), ValueError,
           "AffineSpec: reduce_range leaves an empty range [", effective_min(), ", ",
           effective_max(), "]");
  if (mapping == MappingType::kAsymmetric) {
    QK_CHECK(zero_point_domain != ZeroPointDomain::kNone, ValueError,
             "AffineSpec: asymmetric mapping needs a zero point (int or float domain)");
  } else {
    QK_CHECK(zero_point_domain != ZeroPointDomain::kFloat, ValueError,
             "AffineSpec: symmetric mappings use an integer zero point or none, not a float one");
  }
  if (mapping == MappingType::kSymmetricNoClippingError) {
    QK_CHECK(effective_min() < 0 && effective_max() > 0, ValueError,
             "AffineSpec: symmetric_no_clipping_err needs a range around zero, got [",
             effective_min(), ", ", effective_max(), "]");
  }
  if (zero_point_domain == ZeroPointDomain::kNone) {
    QK_CHECK(effective_min() <= 0 && effective_max() >= 0, ValueError,
             "AffineSpec: without a zero point the range must contain 0, got [", effective_min(),
             ", ", effective_max(), "]");
  }
}

std::string AffineSpec::to_string() const {
  return detail::concat("AffineSpec(", dtype_name(dtype), " [", effective_min(), ", ",
                        effective_max(), "] ", granularity.to_string(), " ",
                        mapping_type_name(mapping),
                        " zp=", zero_point_domain_name(zero_point_domain), ")");
}

}  // namespace quantkit

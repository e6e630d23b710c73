// Prepacking a QTensor weight into the kernels' row layout (linear.h) and back, exactly.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "linear_internal.h"
#include "quantkit/core/float_convert.h"
#include "quantkit/core/packing.h"

namespace quantkit {
namespace {

constexpr int64_t kChunk = 32;

/// The codes are stored unsigned, u = q - qmin. For the two's-complement field of a signed
/// type that is the field with its top bit flipped; unsigned and float8 fields are u itself.
uint8_t sign_flip(DType dtype) {
  if (is_float8(dtype) || !dtype_info(dtype).is_signed) return 0;
  return static_cast<uint8_t>(1u << (dtype_bits(dtype) - 1));
}

/// Elements [first, first + k) of a QTensor's storage (elements packed back to back across rows,
/// core/packing.h) as unsigned codes u.
void read_unsigned_codes(const uint8_t* storage, int bits, uint8_t flip, int64_t first, int64_t k,
                         uint8_t* u) {
  if (bits == 8) {
    for (int64_t i = 0; i < k; ++i) u[i] = storage[first + i] ^ flip;
    return;
  }
  const int per_byte = 8 / bits;
  const auto mask = static_cast<uint8_t>((1u << bits) - 1u);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t e = first + i;
    u[i] = static_cast<uint8_t>(((storage[e / per_byte] >> (e % per_byte * bits)) & mask) ^ flip);
  }
}

/// Inverse of read_unsigned_codes; the bytes it writes must start cleared.
void write_unsigned_codes(const uint8_t* u, int bits, uint8_t flip, int64_t first, int64_t k,
                          uint8_t* storage) {
  if (bits == 8) {
    for (int64_t i = 0; i < k; ++i) storage[first + i] = u[i] ^ flip;
    return;
  }
  const int per_byte = 8 / bits;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t e = first + i;
    storage[e / per_byte] |= static_cast<uint8_t>((u[i] ^ flip) << (e % per_byte * bits));
  }
}

/// u[0, padded_k) in the kernels' row layout: per 32-element chunk, 8-bit codes in order, 4-bit
/// codes j and j + 16 sharing byte j, 2-bit codes j, j + 8, j + 16, j + 24 sharing byte j.
void layout_row(const uint8_t* u, int64_t padded_k, int bits, uint8_t* row) {
  if (bits == 8) {
    std::memcpy(row, u, static_cast<size_t>(padded_k));
    return;
  }
  for (int64_t c = 0; c < padded_k / kChunk; ++c) {
    const uint8_t* uc = u + c * kChunk;
    if (bits == 4) {
      for (int j = 0; j < 16; ++j) row[c * 16 + j] = static_cast<uint8_t>(uc[j] | uc[j + 16] << 4);
    } else {
      for (int j = 0; j < 8; ++j) {
        row[c * 8 + j] =
            static_cast<uint8_t>(uc[j] | uc[j + 8] << 2 | uc[j + 16] << 4 | uc[j + 24] << 6);
      }
    }
  }
}

/// Inverse of layout_row.
void unlayout_row(const uint8_t* row, int64_t padded_k, int bits, uint8_t* u) {
  if (bits == 8) {
    std::memcpy(u, row, static_cast<size_t>(padded_k));
    return;
  }
  const auto mask = static_cast<uint8_t>((1u << bits) - 1u);
  const int per_byte = 8 / bits, span = kChunk / per_byte;  // bytes per chunk
  for (int64_t c = 0; c < padded_k / kChunk; ++c) {
    for (int j = 0; j < kChunk; ++j)
      u[c * kChunk + j] = (row[c * span + j % span] >> (j / span * bits)) & mask;
  }
}

/// Rows in parallel when each row's storage starts on a byte boundary (no byte is shared by
/// two rows, so concurrent writes cannot collide) and there is enough work.
bool rows_in_parallel(int64_t rows, int64_t k, int bits) {
  return k * bits % 8 == 0 && rows * k > (1 << 16);
}

/// Switches p to compact group metadata (linear.h) when that holds every scale and offset
/// exactly; otherwise leaves it as it is.
void compact_group_params(PackedLinearWeight& p) {
  if (is_float8(p.dtype)) return;
  const int64_t n = p.out_features * p.groups;
  Tensor scales_f16 = Tensor::empty({p.out_features, p.groups}, DType::kFloat16);
  Tensor zero_points = Tensor::empty({p.out_features, p.groups}, DType::kInt8);
  const float* s = p.scales.data<float>();
  const float* off = p.offsets.data<float>();
  auto* h = static_cast<uint16_t*>(static_cast<void*>(scales_f16.bytes()));
  int8_t* z = zero_points.data<int8_t>();
  for (int64_t b = 0; b < n; ++b) {
    h[b] = float_to_f16_bits(s[b]);
    if (!std::isfinite(s[b]) || f16_bits_to_float(h[b]) != s[b]) return;
    const double zd = s[b] != 0.0f ? -static_cast<double>(off[b]) / s[b] : 0.0;
    if (!(zd >= -128.0 && zd <= 127.0) || zd != std::nearbyint(zd)) return;
    z[b] = static_cast<int8_t>(zd);
    if (-s[b] * static_cast<float>(z[b]) != off[b]) return;  // exact, as the kernels rebuild it
  }
  p.scales_f16 = scales_f16;
  if (p.has_offsets) p.zero_points = zero_points;
  p.scales = Tensor();
  p.offsets = Tensor();
}

/// Bytes of one row's codes, chunks of 32 codes rounded up to whole cache lines (before any spare
/// line between rows).
int64_t dense_row_bytes(int64_t k, int bits) {
  const int64_t padded_k = (k + kChunk - 1) / kChunk * kChunk;
  return (padded_k * bits / 8 + 63) / 64 * 64;
}

/// Rows n0..n0+15 of `from` (rows past `rows` read as zero) to tile n0 / 16 of `to`, or back
/// (the 16 x 16 dword transpose of each 64-byte block is its own inverse): see CodeLayout.
void transpose_tile(const uint8_t* from, uint8_t* to, int64_t n0, int64_t rows, int64_t row_bytes,
                    bool to_tiles) {
  for (int64_t b = 0; b < row_bytes / 64; ++b) {
    for (int64_t r = 0; r < 16; ++r) {
      if (n0 + r >= rows) continue;  // tiles start zeroed; rows past N are not stored back
      for (int64_t j = 0; j < 16; ++j) {
        const int64_t in_row = (n0 + r) * row_bytes + 64 * b + 4 * j;
        const int64_t in_tile = n0 * row_bytes + 1024 * b + 64 * j + 4 * r;
        if (to_tiles) {
          std::memcpy(to + in_tile, from + in_row, 4);
        } else {
          std::memcpy(to + in_row, from + in_tile, 4);
        }
      }
    }
  }
}

/// Flat index of group g of row n in metadata stored tile-major (CodeLayout::kChannelTiles).
int64_t tiled_param_index(int64_t n, int64_t g, int64_t groups) {
  return ((n / 16) * groups + g) * 16 + n % 16;
}

/// Group metadata [rows, groups] (any element type) moved between row-major and tile-major
/// [rows rounded up to 16 / 16][groups][16]: rows past `rows` are zero in tiles and dropped back.
Tensor move_group_params(const Tensor& from, int64_t rows, int64_t groups, bool to_tiles) {
  if (!from.defined()) return from;
  const int64_t element = from.nbytes() / std::max<int64_t>(from.numel(), 1);
  Tensor to = Tensor::zeros({to_tiles ? (rows + 15) / 16 * 16 : rows, groups}, from.dtype());
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t in_rows = n * groups + g, in_tiles = tiled_param_index(n, g, groups);
      std::memcpy(to.bytes() + (to_tiles ? in_tiles : in_rows) * element,
                  from.bytes() + (to_tiles ? in_rows : in_tiles) * element,
                  static_cast<size_t>(element));
    }
  }
  return to;
}

}  // namespace

PackedLinearWeight PackedLinearWeight::with_layout(CodeLayout target) const {
  if (layout == target) return *this;
  PackedLinearWeight p = *this;
  p.layout = target;
  const bool to_tiles = target == CodeLayout::kChannelTiles;
  const int64_t tiles = (out_features + 15) / 16;
  p.codes = Tensor::zeros({to_tiles ? tiles * 16 : out_features, row_bytes}, DType::kUInt8);
  const uint8_t* from = codes.data<uint8_t>();
  uint8_t* to = p.codes.data<uint8_t>();
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (codes.numel() > (1 << 16))
  for (int64_t t = 0; t < tiles; ++t)
    transpose_tile(from, to, 16 * t, out_features, row_bytes, to_tiles);
  for (Tensor* params : {&p.scales, &p.offsets, &p.scales_f16, &p.zero_points})
    *params = move_group_params(*params, out_features, groups, to_tiles);
  return p;
}

int64_t PackedLinearWeight::nbytes() const {
  // The spare line of row_bytes is never read: it is not counted as streamed.
  const int64_t code_bytes = out_features * dense_row_bytes(in_features, dtype_bits(dtype));
  // Per group of a row (channel tiles pad the last tile's metadata, as they do its codes).
  const int64_t param_bytes =
      compact() ? 2 + (zero_points.defined() ? 1 : 0) : 4 + (has_offsets ? 4 : 0);
  return code_bytes + out_features * groups * param_bytes;
}

PackedLinearWeight PackedLinearWeight::clone() const {
  PackedLinearWeight c = *this;
  for (Tensor* t : {&c.codes, &c.scales, &c.offsets, &c.scales_f16, &c.zero_points}) {
    if (t->defined()) *t = t->clone();
  }
  return c;
}

void PackedLinearWeight::group_params(int64_t n0, int64_t rows, float* s, float* off) const {
  if (layout == CodeLayout::kChannelTiles) {  // gathered one by one: the tile kernels read tiles
    const auto* h = compact()
                        ? static_cast<const uint16_t*>(static_cast<const void*>(scales_f16.bytes()))
                        : nullptr;
    for (int64_t n = n0; n < n0 + rows; ++n) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t at = tiled_param_index(n, g, groups), out = (n - n0) * groups + g;
        s[out] = h != nullptr ? f16_bits_to_float(h[at]) : scales.data<float>()[at];
        if (off == nullptr) continue;
        if (h != nullptr) {
          off[out] = zero_points.defined()
                         ? -s[out] * static_cast<float>(zero_points.data<int8_t>()[at])
                         : 0.0f;
        } else {
          off[out] = offsets.defined() ? offsets.data<float>()[at] : 0.0f;
        }
      }
    }
    return;
  }
  const int64_t first = n0 * groups, count = rows * groups;
  if (!compact()) {
    std::memcpy(s, scales.data<float>() + first, static_cast<size_t>(count) * sizeof(float));
    if (off == nullptr) return;
    if (offsets.defined()) {
      std::memcpy(off, offsets.data<float>() + first, static_cast<size_t>(count) * sizeof(float));
    } else {
      std::fill(off, off + count, 0.0f);
    }
    return;
  }
  const auto* h = static_cast<const uint16_t*>(static_cast<const void*>(scales_f16.bytes()));
  const int8_t* z =
      off != nullptr && zero_points.defined() ? zero_points.data<int8_t>() + first : nullptr;
  kernels::gemv_kernels_for(active_isa()).expand_group_params(h + first, z, count, s, off);
  if (off != nullptr && z == nullptr) std::fill(off, off + count, 0.0f);
}

namespace {

PackedLinearWeight pack_float_group_params(const QTensor& weight) {
  QK_CHECK(weight.defined() && weight.shape().size() == 2, ShapeError,
           "pack_linear_weight: weight must be a 2-D [out_features, in_features] QTensor, got ",
           weight.defined() ? shape_to_string(weight.shape()) : "undefined");
  const QScheme& scheme = weight.scheme();
  QK_CHECK(scheme.dtype != DType::kInt32, DTypeError,
           "pack_linear_weight: int32 weights are not supported; use 8 bits or fewer");
  QK_CHECK(scheme.block_size[0] == 1, ShapeError,
           "pack_linear_weight: blocks must not span output rows, got block ",
           shape_to_string(scheme.block_size));
  PackedLinearWeight p;
  p.out_features = weight.shape()[0];
  p.in_features = weight.shape()[1];
  p.group_size = std::min(scheme.block_size[1], std::max<int64_t>(p.in_features, 1));
  p.groups = (p.in_features + p.group_size - 1) / p.group_size;
  p.dtype = scheme.dtype;
  p.scheme = scheme;
  const int bits = dtype_bits(scheme.dtype);
  const int64_t padded_k = (p.in_features + kChunk - 1) / kChunk * kChunk;
  p.row_bytes = dense_row_bytes(p.in_features, bits);
  // See row_bytes in linear.h. Int8 W8A8 at M = 128-512 (4096^2, in cache): 3-5 % faster.
  if (bits == 8 && p.row_bytes >= 1024 && p.row_bytes % 512 == 0) p.row_bytes += 64;
  p.codes = Tensor::zeros({p.out_features, p.row_bytes}, DType::kUInt8);
  p.scales = Tensor::empty({p.out_features, p.groups}, DType::kFloat32);
  const bool fp8 = is_float8(scheme.dtype);
  if (!fp8) p.offsets = Tensor::empty({p.out_features, p.groups}, DType::kFloat32);

  const uint8_t flip = sign_flip(scheme.dtype);
  const uint8_t* storage = weight.data().bytes();
  const bool double_scale = weight.scale().dtype() == DType::kFloat64;
  const ZeroPointDomain zp_domain = scheme.zero_point_domain;
  const int64_t n_rows = p.out_features, k = p.in_features;
#pragma omp parallel num_threads(num_threads()) if (n_rows * k > (1 << 16))
  {
    std::vector<uint8_t> u(static_cast<size_t>(padded_k), 0);  // zero padding past K
#pragma omp for schedule(static)
    for (int64_t n = 0; n < n_rows; ++n) {
      read_unsigned_codes(storage, bits, flip, n * k, k, u.data());
      layout_row(u.data(), padded_k, bits, p.codes.data<uint8_t>() + n * p.row_bytes);
      for (int64_t b = n * p.groups; b < (n + 1) * p.groups; ++b) {
        const double s =
            double_scale ? weight.scale().data<double>()[b] : weight.scale().data<float>()[b];
        p.scales.data<float>()[b] = static_cast<float>(s);
        if (fp8) continue;
        double zp = 0.0;  // W = s * (q - zp) = s * q + offset
        if (zp_domain == ZeroPointDomain::kInt) zp = weight.zero_point().data<int32_t>()[b];
        if (zp_domain == ZeroPointDomain::kFloat) zp = weight.zero_point().data<float>()[b];
        p.offsets.data<float>()[b] = static_cast<float>(-s * zp);
      }
    }
  }
  p.has_offsets =
      !fp8 && std::any_of(p.offsets.data<float>(), p.offsets.data<float>() + p.offsets.numel(),
                          [](float v) { return v != 0.0f; });
  return p;
}

}  // namespace

PackedLinearWeight pack_linear_weight(const QTensor& weight, CodeLayout layout) {
  PackedLinearWeight p = pack_float_group_params(weight);
  compact_group_params(p);
  return p.with_layout(layout);
}

PackedLinearWeight pack_linear_weight_affine(const Tensor& q, DType dtype, int64_t group_size,
                                             const Tensor& scales, const Tensor& offsets) {
  QK_CHECK(q.defined() && q.dtype() == DType::kInt8 && q.dim() == 2, DTypeError,
           "pack_linear_weight_affine: codes must be an int8 [N, K] tensor, got ",
           q.defined() ? q.summary() : "undefined");
  QK_CHECK(is_quantized_int(dtype) && dtype_info(dtype).is_signed && dtype_bits(dtype) <= 8,
           DTypeError, "pack_linear_weight_affine: dtype must be int8, int4 or int2, got ",
           dtype_name(dtype));
  const int64_t n = q.size(0), k = q.size(1);
  QK_CHECK(group_size > 0, ValueError,
           "pack_linear_weight_affine: group_size must be positive, got ", group_size);
  const int64_t groups = (k + group_size - 1) / group_size;
  QK_CHECK(scales.defined() && scales.dtype() == DType::kFloat32 && scales.numel() == n * groups,
           ShapeError, "pack_linear_weight_affine: scales must be float32 with ", n, " x ", groups,
           " entries, got ", scales.defined() ? scales.summary() : "undefined");
  QK_CHECK(
      !offsets.defined() || (offsets.dtype() == DType::kFloat32 && offsets.numel() == n * groups),
      ShapeError, "pack_linear_weight_affine: offsets must be float32 with ", n, " x ", groups,
      " entries, got ", offsets.summary());
  const DTypeInfo& info = dtype_info(dtype);
  for (int64_t i = 0; i < q.numel(); ++i) {
    const int8_t v = q.data<int8_t>()[i];
    QK_CHECK(v >= info.int_min && v <= info.int_max, ValueError, "pack_linear_weight_affine: code ",
             int{v}, " at flat index ", i, " is outside the ", info.name, " range [", info.int_min,
             ", ", info.int_max, "]");
  }
  // Build the equivalent QTensor (symmetric codes, per-row groups), reuse the packer, then set
  // the given offsets.
  Tensor codes = Tensor::empty({n, k}, dtype);
  std::vector<int32_t> values(static_cast<size_t>(q.numel()));
  for (size_t i = 0; i < values.size(); ++i) values[i] = q.data<int8_t>()[i];
  pack_integers(values, dtype, codes.bytes());
  QScheme scheme{dtype,           info.int_min,           info.int_max,
                 {1, group_size}, ZeroPointDomain::kNone, MappingType::kSymmetric};
  PackedLinearWeight p = pack_float_group_params(
      QTensor(codes, scales.reshape({n, groups}).clone(), Tensor(), scheme));
  for (int64_t b = 0; b < n * groups; ++b) {
    const float given = offsets.defined() ? offsets.data<float>()[b] : 0.0f;
    p.offsets.data<float>()[b] = given;
  }
  p.has_offsets = offsets.defined() &&
                  std::any_of(p.offsets.data<float>(), p.offsets.data<float>() + p.offsets.numel(),
                              [](float v) { return v != 0.0f; });
  compact_group_params(p);
  return p;
}

QTensor PackedLinearWeight::unpack() const {
  if (layout != CodeLayout::kRows) return with_layout(CodeLayout::kRows).unpack();
  const int bits = dtype_bits(dtype);
  const int64_t padded_k = (in_features + kChunk - 1) / kChunk * kChunk;
  const uint8_t flip = sign_flip(dtype);
  Tensor data = Tensor::zeros({out_features, in_features}, dtype);
  uint8_t* storage = data.bytes();
#pragma omp parallel num_threads( \
    num_threads()) if (rows_in_parallel(out_features, in_features, bits))
  {
    std::vector<uint8_t> u(static_cast<size_t>(padded_k));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < out_features; ++n) {
      unlayout_row(codes.data<uint8_t>() + n * row_bytes, padded_k, bits, u.data());
      write_unsigned_codes(u.data(), bits, flip, n * in_features, in_features, storage);
    }
  }
  // Scales come back as float32 and zero points are re-derived from the offsets.
  Tensor zero_point;
  Tensor s = Tensor::empty({out_features, groups}, DType::kFloat32);
  Tensor off = Tensor::empty({out_features, groups}, DType::kFloat32);
  group_params(0, out_features, s.data<float>(), off.data<float>());
  if (scheme.zero_point_domain != ZeroPointDomain::kNone) {
    const bool int_zp = scheme.zero_point_domain == ZeroPointDomain::kInt;
    zero_point = Tensor::empty({out_features, groups}, int_zp ? DType::kInt32 : DType::kFloat32);
    for (int64_t b = 0; b < out_features * groups; ++b) {
      const double zp = -static_cast<double>(off.data<float>()[b]) / s.data<float>()[b];
      if (int_zp) {
        zero_point.data<int32_t>()[b] = static_cast<int32_t>(std::nearbyint(zp));
      } else {
        zero_point.data<float>()[b] = static_cast<float>(zp);
      }
    }
  }
  return QTensor(data, s, zero_point, scheme);
}

}  // namespace quantkit

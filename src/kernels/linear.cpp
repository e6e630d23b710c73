#include "quantkit/kernels/linear.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "amx_int16.h"
#include "gemv.h"
#include "linear_internal.h"
#include "prefetch.h"
#include "quant_rows.h"
#include "quantkit/core/float_convert.h"

namespace quantkit {
namespace kernels {
const GemvKernels& gemv_kernels_reference();
const GemvKernels& gemv_kernels_avx2();
const GemvKernels& gemv_kernels_avx2_vnni();
const GemvKernels& gemv_kernels_avx512();
const GemvKernels& gemv_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return gemv_kernels_avx2();
    case Isa::kAvx2Vnni:
      return gemv_kernels_avx2_vnni();
    case Isa::kAvx512:
    case Isa::kAmx:
      return gemv_kernels_avx512();
    case Isa::kReference:
      break;
  }
  return gemv_kernels_reference();
}
}  // namespace kernels

namespace {

constexpr int64_t kChunk = 32;
constexpr int64_t kGemmMaxTileRows = 256;

int& thread_setting() {
  static int threads = [] {
    if (const char* env = std::getenv("QUANTKIT_NUM_THREADS");
        env != nullptr && std::atoi(env) > 0) {
      return std::atoi(env);
    }
    return omp_get_num_procs();
  }();
  // quantkit runs one thread pool (OpenMP) and calls OpenBLAS from inside it, single-threaded:
  // a second pool of spinning BLAS threads on the same cores halves the throughput of both.
  static const bool blas_single = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)blas_single;
  return threads;
}

/// The packed codes are u = q - qmin; kernels add qmin back (exactly, in float).
float code_bias(const PackedLinearWeight& p) {
  return is_float8(p.dtype) ? 0.0f : static_cast<float>(dtype_info(p.dtype).int_min);
}

/// Byte position of element k inside a packed row, and its bit shift (layout in linear.h).
void element_slot(int64_t k, int bits, int64_t* byte, int* shift) {
  const int64_t chunk = k / kChunk, j = k % kChunk;
  if (bits == 8) {
    *byte = k;
    *shift = 0;
  } else if (bits == 4) {
    *byte = chunk * 16 + j % 16;
    *shift = static_cast<int>(j / 16) * 4;
  } else {
    *byte = chunk * 8 + j % 8;
    *shift = static_cast<int>(j / 8) * 2;
  }
}

}  // namespace

int num_threads() {
  return thread_setting();
}
void set_num_threads(int threads) {
  QK_CHECK(threads > 0, ValueError, "set_num_threads: need at least one thread, got ", threads);
  thread_setting() = threads;
}

namespace {
GemvActivations& gemv_activations_setting() {
  static GemvActivations mode = [] {
    const char* env = std::getenv("QUANTKIT_GEMV_ACTIVATIONS");
    if (env == nullptr || std::strcmp(env, "int16") == 0) return GemvActivations::kInt16;
    QK_CHECK(std::strcmp(env, "float32") == 0, ValueError,
             "QUANTKIT_GEMV_ACTIVATIONS must be int16 or float32, got '", env, "'");
    return GemvActivations::kFloat32;
  }();
  return mode;
}
}  // namespace

GemvActivations gemv_activations() {
  return gemv_activations_setting();
}
void set_gemv_activations(GemvActivations mode) {
  gemv_activations_setting() = mode;
}

kernels::GemvWeights gemv_weights(const PackedLinearWeight& p, float* y) {
  return {p.in_features,
          p.codes.data<uint8_t>(),
          p.row_bytes,
          p.compact() ? nullptr : p.scales.data<float>(),  // compact: run_row_slices expands
          p.has_offsets && !p.compact() ? p.offsets.data<float>() : nullptr,
          code_bias(p),
          p.groups,
          p.group_size,
          y,
          p.out_features,
          0,
          p.out_features,
          p.compact() ? static_cast<const uint16_t*>(static_cast<const void*>(p.scales_f16.bytes()))
                      : nullptr,
          p.compact() && p.has_offsets ? p.zero_points.data<int8_t>() : nullptr,
          p.layout == CodeLayout::kChannelTiles};
}

void prefetch_compact_params(const PackedLinearWeight& p, int64_t n0, int64_t rows) {
  rows = std::min(rows, p.out_features - n0);
  if (rows <= 0 || !p.compact()) return;
  auto lines = [&](const uint8_t* base, int64_t element_bytes) {
    const uint8_t* begin = base + n0 * p.groups * element_bytes;
    for (int64_t b = 0; b < rows * p.groups * element_bytes; b += 64)
      kernels::prefetch_l2(begin + b);
  };
  lines(p.scales_f16.bytes(), 2);
  if (p.zero_points.defined()) lines(p.zero_points.bytes(), 1);
}

const PackedLinearWeight& in_rows(const PackedLinearWeight& p, PackedLinearWeight& storage) {
  if (p.layout == CodeLayout::kRows) return p;
  storage = p.with_layout(CodeLayout::kRows);
  return storage;
}

void check_shared_weights(const char* op, const std::vector<const PackedLinearWeight*>& weights,
                          const std::vector<const Tensor*>& biases) {
  QK_CHECK(!weights.empty(), ValueError, op, ": no weights");
  QK_CHECK(biases.empty() || biases.size() == weights.size(), ValueError, op, ": ", biases.size(),
           " biases for ", weights.size(),
           " weights (give one per weight, null for none, or none at all)");
}

void check_bias(const Tensor* bias, const PackedLinearWeight& p) {
  QK_CHECK(bias == nullptr || (bias->dtype() == DType::kFloat32 && bias->numel() == p.out_features),
           ShapeError, "linear: bias must be float32 [", p.out_features, "], got ",
           bias ? bias->summary() : "");
}

void add_bias(const Tensor* bias, int64_t rows, Tensor& y) {
  if (bias == nullptr) return;
  const int64_t n = bias->numel();
  const float* __restrict b = bias->data<float>();  // hoisted: lets the loop vectorise
  float* __restrict out = y.data<float>();
  // Rows in parallel: serial, this was 1.2 % of a MiniLM W8A8 forward with the other core idle.
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < n; ++o) out[r * n + o] += b[o];
  }
}

namespace {

/// Dequantizes rows [n0, n1) of the packed weight into `w` ([n1 - n0, K] float32).
void dequantize_rows(const PackedLinearWeight& p, int64_t n0, int64_t n1, float* w) {
  const int bits = dtype_bits(p.dtype);
  const bool fp8 = is_float8(p.dtype);
  std::vector<float> scales(static_cast<size_t>(p.groups)), offsets(scales.size());
  for (int64_t n = n0; n < n1; ++n) {
    p.group_params(n, 1, scales.data(), fp8 ? nullptr : offsets.data());
    const uint8_t* row = p.codes.data<uint8_t>() + n * p.row_bytes;
    float* out = w + (n - n0) * p.in_features;
    for (int64_t k = 0; k < p.in_features; ++k) {
      int64_t byte;
      int shift;
      element_slot(k, bits, &byte, &shift);
      const int64_t b = k / p.group_size;
      const uint8_t u = static_cast<uint8_t>((row[byte] >> shift) & ((1 << bits) - 1));
      if (fp8) {
        const float v =
            p.dtype == DType::kFloat8E4M3 ? e4m3_bits_to_float(u) : e5m2_bits_to_float(u);
        out[k] = v * scales[static_cast<size_t>(b)];
      } else {
        out[k] = scales[static_cast<size_t>(b)] * (static_cast<float>(u) + code_bias(p)) +
                 offsets[static_cast<size_t>(b)];
      }
    }
  }
}

/// The specification: dequantize W, accumulate every dot product in double.
void linear_reference(const float* x, int64_t m, const PackedLinearWeight& p, float* y) {
  std::vector<float> w(static_cast<size_t>(p.in_features));
  for (int64_t n = 0; n < p.out_features; ++n) {
    dequantize_rows(p, n, n + 1, w.data());
    for (int64_t r = 0; r < m; ++r) {
      double acc = 0.0;
      for (int64_t k = 0; k < p.in_features; ++k)
        acc += static_cast<double>(x[r * p.in_features + k]) * w[static_cast<size_t>(k)];
      y[r * p.out_features + n] = static_cast<float>(acc);
    }
  }
}

/// One row through the active ISA's vector dequantizer where it has one.
void dequantize_fast(const PackedLinearWeight& p, int64_t n, float* out) {
  if (active_isa() == Isa::kReference) {
    dequantize_rows(p, n, n + 1, out);
    return;
  }
  const kernels::GemvKernels& table = kernels::gemv_kernels_for(active_isa());
  const int bits = dtype_bits(p.dtype);
  const auto fn = p.dtype == DType::kFloat8E4M3   ? table.dequantize_e4m3
                  : p.dtype == DType::kFloat8E5M2 ? table.dequantize_e5m2
                  : bits == 8                     ? table.dequantize_u8
                  : bits == 4                     ? table.dequantize_u4
                                                  : table.dequantize_u2;
  thread_local std::vector<float> params;  // the row's scales, then its offsets (float8: zeros)
  params.assign(static_cast<size_t>(2 * p.groups), 0.0f);
  p.group_params(n, 1, params.data(), is_float8(p.dtype) ? nullptr : params.data() + p.groups);
  fn(p.codes.data<uint8_t>() + n * p.row_bytes, p.in_features, code_bias(p), params.data(),
     params.data() + p.groups, p.group_size, out);
}

/// Rows of W per tile: at most kGemmMaxTileRows, and a tile count that is a multiple of the
/// thread count, so that N = 384 on 2 threads is 2 x 192 rows rather than 256 + 128 (one thread
/// idle a third of the time: 107 -> 140 GFLOPS at M = 448, K = 384).
int64_t gemm_tile_rows(int64_t n, int threads) {
  int64_t tiles = (n + kGemmMaxTileRows - 1) / kGemmMaxTileRows;
  tiles = (tiles + threads - 1) / threads * threads;
  return std::max<int64_t>(16, ((n + tiles - 1) / tiles + 15) / 16 * 16);
}

/// Large M: each thread dequantizes a tile of rows of W (small enough to stay in its L2) and
/// multiplies it right away with a single-threaded sgemm, so one thread pool (ours) runs and
/// the float tile never travels to DRAM. OpenBLAS's own threading is switched off for the
/// duration of the call: two spinning pools on the same cores halve the throughput.
void linear_gemm(const float* x, int64_t m, const PackedLinearWeight& p, float* y, int threads) {
  const int64_t k = p.in_features, n_total = p.out_features;
  const int64_t tile_rows = gemm_tile_rows(n_total, threads);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> tile(static_cast<size_t>(tile_rows * k));
#pragma omp for schedule(dynamic)
    for (int64_t n0 = 0; n0 < n_total; n0 += tile_rows) {
      const int64_t rows = std::min(tile_rows, n_total - n0);
      for (int64_t r = 0; r < rows; ++r) dequantize_fast(p, n0 + r, tile.data() + r * k);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                  static_cast<int>(rows), static_cast<int>(k), 1.0f, x, static_cast<int>(k),
                  tile.data(), static_cast<int>(k), 0.0f, y + n0, static_cast<int>(n_total));
    }
  }
}

bool has_gemv_kernel(const PackedLinearWeight& p) {
  return p.group_size % kChunk == 0 || p.group_size >= p.in_features;
}

/// x rounded to int16 per 32-element chunk (GemvInt16Args). False when x holds NaN or Inf, which
/// only the float kernels carry through to y.
struct Int16Activations {
  std::vector<int16_t> codes;
  std::vector<float> chunk_scales, group_sums;
  int64_t chunks = 0, stride = 0;
  kernels::Int16Layout layout;
  // The same regrouped by passes of tokens (kernels::Int16TokenPasses), where the kernel wants it.
  std::vector<int32_t> pass_pairs;
  std::vector<float> pass_scales, pass_sums;
  int64_t pass_tokens = 0;
};

/// Rounds row r of x (K elements) into `out` (quant_rows.h: round_row_int16); false when the row
/// holds NaN or Inf.
bool round_row_to_int16(const float* xr, int64_t r, const PackedLinearWeight& p,
                        Int16Activations* out) {
  const int64_t chunks = out->chunks;
  int16_t* q = out->codes.data() + r * out->stride;
  float* scales = out->chunk_scales.data() + r * chunks;
  float* group_sums = out->group_sums.data() + r * p.groups;
  thread_local std::vector<int16_t> interleave;  // groups of chunks interleaved (Int16Layout)
  thread_local std::vector<int32_t> sums;
  sums.resize(static_cast<size_t>(chunks));
  int16_t* rounded = q;
  const kernels::Int16Layout layout = out->layout;
  const bool interleaved = layout.run != kChunk;
  if (interleaved) {
    interleave.resize(static_cast<size_t>(chunks * kChunk));
    rounded = interleave.data();
  }
  if (!kernels::quant_row_kernels().round_row_int16(xr, p.in_features, rounded, scales,
                                                    sums.data())) {
    return false;
  }
  double group_sum = 0.0;
  for (int64_t c = 0; c < chunks; ++c) {
    if (interleaved) {  // runs stay contiguous (int16_activation_slot)
      for (int j = 0; j < kChunk; j += layout.run)
        std::copy_n(rounded + c * kChunk + j, layout.run,
                    q + kernels::int16_activation_slot(layout, c, j));
    }
    // Summed with the float scale the kernels multiply by.
    group_sum += static_cast<double>(scales[c]) * static_cast<double>(sums[static_cast<size_t>(c)]);
    if ((c + 1) * kChunk % p.group_size == 0 || c + 1 == chunks) {
      group_sums[c * kChunk / p.group_size] = static_cast<float>(group_sum);
      group_sum = 0.0;
    }
  }
  if (layout.split_bytes) kernels::split_int16_activations(q, out->stride);
  return true;
}

/// x rounded to int16 per chunk, rows in parallel; false when x holds NaN or Inf.
bool round_to_int16_chunks(const float* x, int64_t m, const PackedLinearWeight& p, int threads,
                           Int16Activations* out) {
  out->chunks = (p.in_features + kChunk - 1) / kChunk;
  out->stride = (out->chunks + 7) / 8 * 8 * kChunk;  // whole groups of chunks (Int16Layout)
  out->codes.assign(static_cast<size_t>(m * out->stride), 0);
  out->chunk_scales.assign(static_cast<size_t>(m * out->chunks), 0.0f);
  out->group_sums.assign(static_cast<size_t>(m * p.groups), 0.0f);
  bool finite = true;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(&& : finite) \
    if (m * p.in_features > 65536)
  for (int64_t r = 0; r < m; ++r)
    finite = round_row_to_int16(x + r * p.in_features, r, p, out) && finite;
  return finite;
}

/// What a thread keeps of its int16 activations between calls (linear_gemv_int16_shared).
constexpr size_t kKeptActivationBytes = size_t{32} << 20;

/// Regroups the m rounded tokens of `act` (layout {1, 32}) by passes of `tokens`
/// (kernels::Int16TokenPasses), passes in parallel.
void regroup_token_passes(Int16Activations& act, int64_t m, int64_t groups, int64_t tokens,
                          int threads) {
  const int64_t chunks = act.chunks;
  act.pass_tokens = tokens;
  act.pass_pairs.resize(static_cast<size_t>(m * chunks * 16));
  act.pass_scales.resize(static_cast<size_t>(m * chunks));
  act.pass_sums.resize(static_cast<size_t>(m * groups));
  const int64_t passes = (m + tokens - 1) / tokens;
#pragma omp parallel for num_threads(threads) schedule(static) if (m * chunks > 4096)
  for (int64_t pass = 0; pass < passes; ++pass) {
    const int64_t r0 = kernels::token_pass_start(m, tokens, pass);
    const int64_t rows = kernels::token_pass_start(m, tokens, pass + 1) - r0;
    int32_t* pairs = act.pass_pairs.data() + r0 * chunks * 16;
    for (int64_t r = 0; r < rows; ++r) {
      const int16_t* xh = act.codes.data() + (r0 + r) * act.stride;
      for (int64_t i = 0; i < chunks * 16; ++i)
        std::memcpy(pairs + i * rows + r, xh + 2 * i, sizeof(int32_t));
      for (int64_t c = 0; c < chunks; ++c)
        act.pass_scales[static_cast<size_t>(r0 * chunks + c * rows + r)] =
            act.chunk_scales[static_cast<size_t>((r0 + r) * chunks + c)];
      for (int64_t g = 0; g < groups; ++g)
        act.pass_sums[static_cast<size_t>(r0 * groups + g * rows + r)] =
            act.group_sums[static_cast<size_t>((r0 + r) * groups + g)];
    }
  }
}

/// The GEMV on int16 activations; false (nothing written) when x is not finite.
bool linear_gemv_int16_shared(const float* x, int64_t m,
                              const std::vector<const PackedLinearWeight*>& weights,
                              const std::vector<float*>& ys, int threads);
bool linear_gemv_int16(const float* x, int64_t m, const PackedLinearWeight& p, float* y,
                       int threads) {
  return linear_gemv_int16_shared(x, m, {&p}, {y}, threads);
}

/// linear_gemv_int16 for weights that share x and agree on K, code width and group size: one
/// rounding of x, one pass of the threads over the rows of all of them. False when x is not
/// finite (nothing written).
bool linear_gemv_int16_shared(const float* x, int64_t m,
                              const std::vector<const PackedLinearWeight*>& weights,
                              const std::vector<float*>& ys, int threads) {
  const PackedLinearWeight& first = *weights.front();
  const kernels::GemvKernels& table = kernels::gemv_kernels_for(active_isa());
  const int bits = dtype_bits(first.dtype);
  // The buffers stay with the thread between calls rather than being allocated (a few MiB) per
  // call: W4A16 g32 4096^2 at 128 tokens, 1 thread, best of interleaved runs, 212-225 -> 231-237
  // GFLOPS. Past kKeptActivationBytes they go back when the call ends.
  thread_local Int16Activations act;
  struct Release {
    ~Release() {
      if (act.codes.capacity() * sizeof(int16_t) + act.pass_pairs.capacity() * sizeof(int32_t) >
          kKeptActivationBytes)
        act = Int16Activations{};
    }
  } release;
  act.pass_tokens = 0;
  act.layout = kernels::int16_layout(table, bits, m, first.groups, first.group_size);
  if (!round_to_int16_chunks(x, m, first, threads, &act)) return false;
  if (bits == 4 && m >= table.u4_pair_tiles_min_tokens)
    regroup_token_passes(act, m, first.groups, table.u4_pass_tokens, threads);
  // The 4- and 2-bit single-token kernels read compact per-channel metadata too (every level
  // but the reference): expanded per slice instead, 4-bit per channel 4096^2 over 1 GiB ran at
  // 51-53 against 59-61 GB/s (2 threads, Zen 5, interleaved runs; float32 metadata: 65).
  const bool reads_compact =
      m == 1 && (kernels::int16_single_token_shape(first.groups, first.group_size) ||
                 (first.groups == 1 && bits != 8 && active_isa() != Isa::kReference));
  std::vector<RowSliceJob<kernels::GemvInt16Args>> jobs;
  for (size_t i = 0; i < weights.size(); ++i) {
    jobs.push_back({weights[i],
                    kernels::GemvInt16Args{act.codes.data(),
                                           act.stride,
                                           act.chunk_scales.data(),
                                           act.chunks,
                                           act.group_sums.data(),
                                           m,
                                           gemv_weights(*weights[i], ys[i]),
                                           act.layout,
                                           {act.pass_tokens, act.pass_pairs.data(),
                                            act.pass_scales.data(), act.pass_sums.data()}},
                    reads_compact});
  }
  run_row_slices(jobs,
                 bits == 8   ? table.i16_u8
                 : bits == 4 ? table.i16_u4
                             : table.i16_u2,
                 threads, act.pass_tokens > 0 ? kernels::kTokenPassSliceRows : 16);
  return true;
}

/// The weight-only linear through AMX tiles (amx_int16.h) for weights that share x (equal K and
/// group size): one rounding, one regrouping. False (nothing written) when x is not finite.
bool linear_amx_int16_shared(const float* x, int64_t m,
                             const std::vector<const PackedLinearWeight*>& weights,
                             const std::vector<float*>& ys, int threads) {
  Int16Activations act;  // plain layout: the kernel regroups it for its tiles
  if (!round_to_int16_chunks(x, m, *weights.front(), threads, &act)) return false;
  kernels::amx_linear_int16(
      {act.codes.data(), act.stride, act.chunk_scales.data(), act.chunks, act.group_sums.data(), m},
      weights, ys, threads);
  return true;
}
bool linear_amx_int16(const float* x, int64_t m, const PackedLinearWeight& p, float* y,
                      int threads) {
  return linear_amx_int16_shared(x, m, {&p}, {y}, threads);
}

/// Whether the AMX tiles take this product (amx_int16_min_tokens).
bool amx_int16_runs(const PackedLinearWeight& p, int64_t m, GemvActivations activations) {
  return active_isa() == Isa::kAmx && activations == GemvActivations::kInt16 &&
         kernels::amx_int16_takes(p) && m >= kernels::amx_int16_min_tokens();
}

/// The int16 GEMV (4 tokens per decoded chunk) stays ahead of dequantized tiles + sgemm up to
/// about 160 rows (int4 g32, 4096^2: 110 / 118 / 110 GFLOPS at M = 64 / 128 / 256 against 64 /
/// 96 / 126); the float GEMV only up to 64. 4-bit channel tiles on split-byte activations go
/// further, up to GemvKernels::u4_gemm_min_tokens: at the avx512 level every M (Zen 5, 2 threads:
/// 530 / 560 / 550 GFLOPS at M = 256 / 512 / 1024 against 168 / 195 / 215;
/// gemv_int16_u4_tiled_vnni512), at avx2 up to 640 (Zen 3, 2 threads, g32: 142-148 / 135-143 /
/// 140-145 at M = 160 / 256 / 512 against 100-106 / 119-125 / 135-147; at 1024 and 2048 117-132
/// / 102-114 against 138-158 / 140-152; gemv_int16_u4_tiled_avx2), at avx2_vnni every M
/// (gemv_impl.h). At the amx level the AMX tiles take every M from amx_int16_min_tokens on,
/// before this applies.
int64_t gemm_min_rows(const PackedLinearWeight& p, GemvActivations activations) {
  if (activations != GemvActivations::kInt16 || is_float8(p.dtype)) return kGemmMinRows;
  const kernels::GemvKernels& table = kernels::gemv_kernels_for(active_isa());
  if (dtype_bits(p.dtype) == 4 && table.u4_tokens_layout.split_bytes)
    return table.u4_gemm_min_tokens;
  return 160;
}

void linear_gemv(const float* x, int64_t m, const PackedLinearWeight& p, float* y, int threads,
                 GemvActivations activations) {
  const int bits = dtype_bits(p.dtype);
  if (activations == GemvActivations::kInt16 && !is_float8(p.dtype) &&
      linear_gemv_int16(x, m, p, y, threads)) {
    return;
  }
  // Group sums of x carry the offsets: sum_k x_k (s u_k + off) = s (x . u) + off * sum_k x_k.
  std::vector<float> sums(static_cast<size_t>(m * p.groups), 0.0f);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t g = 0; g < p.groups; ++g) {
      double sum = 0.0;
      const int64_t end = std::min(p.in_features, (g + 1) * p.group_size);
      for (int64_t k = g * p.group_size; k < end; ++k) sum += x[r * p.in_features + k];
      sums[static_cast<size_t>(r * p.groups + g)] = static_cast<float>(sum);
    }
  }
  const kernels::GemvKernels& table = kernels::gemv_kernels_for(active_isa());
  run_row_slices(p, kernels::GemvArgs{x, p.in_features, m, sums.data(), gemv_weights(p, y)},
                 p.dtype == DType::kFloat8E4M3   ? table.e4m3
                 : p.dtype == DType::kFloat8E5M2 ? table.e5m2
                 : bits == 8                     ? table.u8
                 : bits == 4                     ? table.u4
                                                 : table.u2,
                 threads);
}

}  // namespace

Tensor linear_weight_only(const Tensor& x, const PackedLinearWeight& p, const Tensor* bias) {
  return linear_weight_only(x, p, bias, gemv_activations());
}

Tensor linear_weight_only(const Tensor& x, const PackedLinearWeight& weight, const Tensor* bias,
                          GemvActivations activations) {
  PackedLinearWeight converted;
  const PackedLinearWeight& p = in_rows(weight, converted);
  QK_CHECK(x.defined() && x.dtype() == DType::kFloat32, DTypeError,
           "linear: x must be float32, got ", x.defined() ? dtype_name(x.dtype()) : "undefined",
           " (a quantized tensor must be dequantized first)");
  QK_CHECK(x.dim() >= 1 && x.size(-1) == p.in_features, ShapeError, "linear: x has shape ",
           shape_to_string(x.shape()), " but the weight takes ", p.in_features, " input features");
  check_bias(bias, p);
  Shape out_shape = x.shape();
  out_shape.back() = p.out_features;
  Tensor y = Tensor::empty(out_shape, DType::kFloat32);
  const int64_t m = x.numel() / std::max<int64_t>(p.in_features, 1);
  if (m == 0 || p.out_features == 0) return y;
  const int threads = num_threads();
  if (active_isa() == Isa::kReference) {
    linear_reference(x.data<float>(), m, p, y.data<float>());
  } else if (const bool amx = amx_int16_runs(p, m, activations);
             !amx || !linear_amx_int16(x.data<float>(), m, p, y.data<float>(), threads)) {
    // After a failed AMX run (its int16 rounding refuses NaN or Inf in x) the GEMV skips the
    // same rounding and carries x in float32, where its own failure would have led it.
    if (m >= gemm_min_rows(p, activations) || !has_gemv_kernel(p)) {
      linear_gemm(x.data<float>(), m, p, y.data<float>(), threads);
    } else {
      linear_gemv(x.data<float>(), m, p, y.data<float>(), threads,
                  amx ? GemvActivations::kFloat32 : activations);
    }
  }
  add_bias(bias, m, y);
  return y;
}

std::vector<Tensor> linear_weight_only_shared_input(
    const Tensor& x, const std::vector<const PackedLinearWeight*>& weights,
    const std::vector<const Tensor*>& biases) {
  check_shared_weights("linear_weight_only_shared_input", weights, biases);
  const PackedLinearWeight& first = *weights.front();
  const GemvActivations activations = gemv_activations();
  const int64_t m = x.defined() && x.dim() >= 1 ? x.numel() / std::max<int64_t>(x.size(-1), 1) : 0;
  bool common = active_isa() != Isa::kReference && activations == GemvActivations::kInt16 &&
                x.defined() && x.dtype() == DType::kFloat32 && x.dim() >= 1 && m > 0;
  bool amx = common, gemv = common;
  for (const PackedLinearWeight* w : weights) {
    // Channel tiles go one weight at a time, converted to the rows these kernels read.
    common = common && w->in_features == first.in_features && x.size(-1) == w->in_features &&
             w->group_size == first.group_size && w->out_features > 0 &&
             w->layout == CodeLayout::kRows;
    const bool on_amx = amx_int16_runs(*w, m, activations);
    amx = amx && on_amx;
    gemv = gemv && !on_amx && dtype_bits(w->dtype) == dtype_bits(first.dtype) &&
           !is_float8(w->dtype) && has_gemv_kernel(*w) && m < gemm_min_rows(*w, activations);
  }
  auto bias_of = [&](size_t i) { return biases.empty() ? nullptr : biases[i]; };
  std::vector<Tensor> ys;
  if (common && (amx || gemv)) {
    std::vector<float*> outs;
    for (size_t i = 0; i < weights.size(); ++i) {
      check_bias(bias_of(i), *weights[i]);
      Shape out_shape = x.shape();
      out_shape.back() = weights[i]->out_features;
      ys.push_back(Tensor::empty(out_shape, DType::kFloat32));
      outs.push_back(ys.back().data<float>());
    }
    const bool finite =
        amx ? linear_amx_int16_shared(x.data<float>(), m, weights, outs, num_threads())
            : linear_gemv_int16_shared(x.data<float>(), m, weights, outs, num_threads());
    if (finite) {
      for (size_t i = 0; i < weights.size(); ++i) add_bias(bias_of(i), m, ys[i]);
      return ys;
    }
    ys.clear();  // x holds NaN or Inf: the float32 path, one weight at a time
  }
  for (size_t i = 0; i < weights.size(); ++i)
    ys.push_back(linear_weight_only(x, *weights[i], bias_of(i), activations));
  return ys;
}

}  // namespace quantkit

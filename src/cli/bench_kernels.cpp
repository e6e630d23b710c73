// `quantkit bench kernels`: kernel throughput beside anchors measured in the same run (streaming
// DRAM read, OpenBLAS fp32 sgemv/sgemm), as a table or as JSON records.
#include "bench_kernels.h"

#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>

#include "quantkit/core/random.h"
#include "quantkit/kernels/bandwidth.h"
#include "quantkit/kernels/isa.h"
#include "quantkit/kernels/linear.h"
#include "table.h"

namespace quantkit::cli {
namespace {

struct Record {
  std::string name;
  double ours;
  std::string anchor_name;
  double anchor;
  std::string unit;
};

/// Best time of `repeats` calls of fn (seconds); fn gets the call index.
double best_seconds(int repeats, const std::function<void(int)>& fn) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(i);
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

/// Mean time per call over `calls` back-to-back calls (seconds), after `calls` / 2 warm-up
/// calls. DRAM cases cycle through distinct copies, so this is the sustained streaming rate; a
/// best single call would flatter them against the bandwidth probe, which reads whole passes.
double mean_seconds(int calls, const std::function<void(int)>& fn) {
  for (int i = 0; i < calls / 2; ++i) fn(i);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) fn(i);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
}

struct WeightCase {
  std::string label;
  DType dtype;
  int64_t group;
  bool dynamic_int8;
};

PackedLinearWeight pack(const Tensor& w, const WeightCase& c) {
  AffineSpec spec = AffineSpec::for_dtype(
      c.dtype, c.group ? Granularity::per_group(c.group) : Granularity::per_axis(0));
  spec.mapping = MappingType::kSymmetric;
  spec.zero_point_domain = ZeroPointDomain::kNone;
  return pack_linear_weight(quantize(w, spec));
}

Tensor run(const Tensor& x, const PackedLinearWeight& p, bool dynamic_int8) {
  return dynamic_int8 ? linear_dynamic_int8(x, p) : linear_weight_only(x, p);
}

}  // namespace

int run_bench_kernels(const BenchKernelOptions& options) {
  const int threads = options.threads > 0 ? options.threads : num_threads();
  set_num_threads(threads);
  const int64_t dim = options.dim;
  const int64_t dram_bytes = options.dram_mib << 20;
  std::fprintf(stderr,
               "bench kernels: %s, %d threads, %lldx%lld weights, %lld MiB cycled for DRAM cases\n",
               std::string(isa_name(active_isa())).c_str(), threads, static_cast<long long>(dim),
               static_cast<long long>(dim), static_cast<long long>(options.dram_mib));
  std::vector<Record> records;
  const double dram = measure_read_bandwidth_gbps(dram_bytes, threads);
  records.push_back({"dram_read_bw", dram, "-", 0.0, "GB/s"});

  const Tensor w = random_normal({dim, dim}, 1, 0.02f);
  const Tensor x1 = random_normal({1, dim}, 2, 0.02f);
  {  // fp32 GEMV from OpenBLAS over the same number of bytes
    std::vector<Tensor> copies;
    for (int64_t total = 0; total < dram_bytes; total += w.nbytes()) copies.push_back(w.clone());
    Tensor y = Tensor::empty({dim}, DType::kFloat32);
    openblas_set_num_threads(threads);
    const double s = mean_seconds(static_cast<int>(copies.size()) * 2, [&](int i) {
      const Tensor& a = copies[static_cast<size_t>(i) % copies.size()];
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(dim), static_cast<int>(dim), 1.0f,
                  a.data<float>(), static_cast<int>(dim), x1.data<float>(), 1, 0.0f,
                  y.data<float>(), 1);
    });
    records.push_back({"gemv_fp32_openblas_m1_dram", static_cast<double>(w.nbytes()) / s / 1e9,
                       "dram_read_bw", dram, "GB/s"});
  }
  const std::vector<WeightCase> gemv_cases = {
      {"w8a16_perchannel", DType::kInt8, 0, false}, {"w4a16_g32", DType::kInt4, 32, false},
      {"w4a16_g64", DType::kInt4, 64, false},       {"w4a16_g128", DType::kInt4, 128, false},
      {"w4a16_perchannel", DType::kInt4, 0, false}, {"w2a16_g32", DType::kInt2, 32, false},
      {"w8a8_pertoken", DType::kInt8, 0, true},     {"w4a8_g32_pertoken", DType::kInt4, 32, true}};
  for (const WeightCase& c : gemv_cases) {
    const PackedLinearWeight packed = pack(w, c);
    std::vector<PackedLinearWeight> copies;
    for (int64_t total = 0; total < dram_bytes; total += packed.nbytes()) {
      PackedLinearWeight copy = packed;
      copy.codes = packed.codes.clone();
      copy.scales = packed.scales.clone();
      copy.offsets = packed.offsets.clone();
      copies.push_back(std::move(copy));
    }
    const double s = mean_seconds(static_cast<int>(copies.size()) * 2, [&](int i) {
      (void)run(x1, copies[static_cast<size_t>(i) % copies.size()], c.dynamic_int8);
    });
    records.push_back({"gemv_" + c.label + "_m1_dram",
                       static_cast<double>(packed.nbytes()) / s / 1e9, "dram_read_bw", dram,
                       "GB/s"});
  }
  for (int64_t m : options.gemm_rows) {
    const Tensor x = random_normal({m, dim}, 3, 0.02f);
    Tensor y = Tensor::empty({m, dim}, DType::kFloat32);
    const double flops =
        2.0 * static_cast<double>(m) * static_cast<double>(dim) * static_cast<double>(dim);
    openblas_set_num_threads(threads);
    const double sgemm =
        flops /
        best_seconds(5,
                     [&](int) {
                       cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                                   static_cast<int>(dim), static_cast<int>(dim), 1.0f,
                                   x.data<float>(), static_cast<int>(dim), w.data<float>(),
                                   static_cast<int>(dim), 0.0f, y.data<float>(),
                                   static_cast<int>(dim));
                     }) /
        1e9;
    records.push_back({"gemm_fp32_openblas_m" + std::to_string(m), sgemm, "-", 0.0, "GFLOPS"});
    for (const WeightCase& c : {gemv_cases[1], gemv_cases[6], gemv_cases[7]}) {
      const PackedLinearWeight packed = pack(w, c);
      const double ours =
          flops / best_seconds(5, [&](int) { (void)run(x, packed, c.dynamic_int8); }) / 1e9;
      records.push_back(
          {"gemm_" + c.label + "_m" + std::to_string(m), ours, "fp32_sgemm", sgemm, "GFLOPS"});
    }
  }

  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Record& r : records) {
      out.push_back({{"name", r.name},
                     {"ours", r.ours},
                     {"anchor_name", r.anchor_name},
                     {"anchor", r.anchor},
                     {"ratio", r.anchor > 0 ? r.ours / r.anchor : 0.0},
                     {"unit", r.unit}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  Table table({"case", "ours", "anchor", "anchor value", "ratio", "unit"},
              {false, true, false, true, true, false});
  for (const Record& r : records) {
    table.add({r.name, fixed(r.ours, 2), r.anchor_name, r.anchor > 0 ? fixed(r.anchor, 2) : "-",
               r.anchor > 0 ? fixed(r.ours / r.anchor, 2) : "-", r.unit});
  }
  table.print(stdout);
  return 0;
}

}  // namespace quantkit::cli

// Weight-only linear throughput. Decode-time GEMV (M = 1) streams >= 1 GiB of distinct packed
// weights so the data comes from DRAM, and is compared with the streaming-read bandwidth
// measured in the same run; larger M runs cache-resident and is compared with OpenBLAS sgemm.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "quantkit/core/random.h"
#include "quantkit/kernels/bandwidth.h"
#include "quantkit/kernels/blas.h"
#include "quantkit/kernels/isa.h"
#include "quantkit/kernels/linear.h"

namespace {

using namespace quantkit;
constexpr int64_t kDim = 4096;
constexpr int64_t kDramBytes = int64_t{1} << 30;

const Tensor& weight_f32() {
  static const Tensor w = random_normal({kDim, kDim}, 1, 0.02f);
  return w;
}

/// Copies of one packed weight, enough to cover >= 1 GiB: every call reads cold memory.
std::vector<PackedLinearWeight> dram_copies(const PackedLinearWeight& p) {
  std::vector<PackedLinearWeight> copies;
  for (int64_t total = 0; total < kDramBytes; total += p.nbytes()) {
    copies.push_back(p.clone());
  }
  return copies;
}

PackedLinearWeight packed(DType dtype, int64_t group) {
  AffineSpec spec = AffineSpec::for_dtype(
      dtype, group ? Granularity::per_group(group) : Granularity::per_axis(0));
  if (!is_float8(dtype)) {
    spec.mapping = MappingType::kSymmetric;
    spec.zero_point_domain = ZeroPointDomain::kNone;
  }
  spec.scale_dtype = DType::kFloat16;  // the quantizers' default: compact packed metadata
  return pack_linear_weight(quantize(weight_f32(), spec));
}

/// Streaming-read bandwidth over 1 GiB with `threads` threads, measured once per thread count.
double dram_read_gbps(int threads) {
  static std::map<int, double> cache;
  if (!cache.count(threads)) cache[threads] = measure_read_bandwidth_gbps(kDramBytes, threads);
  return cache[threads];
}

void BM_GemvDram(benchmark::State& state, DType dtype, int64_t group, bool dynamic_int8) {
  const int threads = static_cast<int>(state.range(0));
  set_num_threads(threads);
  const auto copies = dram_copies(packed(dtype, group));
  const Tensor x = random_normal({1, kDim}, 2, 0.02f);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(dynamic_int8 ? linear_dynamic_int8(x, copies[i])
                                          : linear_weight_only(x, copies[i]));
    i = (i + 1) % copies.size();
  }
  const double bytes =
      static_cast<double>(copies[0].nbytes()) * static_cast<double>(state.iterations());
  state.counters["weight_GBps"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["dram_GBps"] = dram_read_gbps(threads);
}

/// The weight-only GEMV on float32 activations (set_gemv_activations(kFloat32)), for comparison
/// with the default int16 activations of BM_GemvDram.
void BM_GemvDramFloatActivations(benchmark::State& state, DType dtype, int64_t group) {
  const GemvActivations saved = gemv_activations();
  set_gemv_activations(GemvActivations::kFloat32);
  BM_GemvDram(state, dtype, group, false);
  set_gemv_activations(saved);
}

void BM_SgemvDram(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  openblas_set_num_threads(threads);
  std::vector<Tensor> copies;
  for (int64_t total = 0; total < kDramBytes; total += weight_f32().nbytes())
    copies.push_back(weight_f32().clone());
  const Tensor x = random_normal({1, kDim}, 2, 0.02f);
  Tensor y = Tensor::empty({kDim}, DType::kFloat32);
  size_t i = 0;
  for (auto _ : state) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, kDim, kDim, 1.0f, copies[i].data<float>(), kDim,
                x.data<float>(), 1, 0.0f, y.data<float>(), 1);
    benchmark::ClobberMemory();
    i = (i + 1) % copies.size();
  }
  state.counters["weight_GBps"] = benchmark::Counter(
      static_cast<double>(kDim * kDim * 4) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["dram_GBps"] = dram_read_gbps(threads);
}

void BM_GemmResident(benchmark::State& state, DType dtype, int64_t group, bool dynamic_int8) {
  const int64_t m = state.range(0);
  set_num_threads(2);
  const PackedLinearWeight p = packed(dtype, group);
  const Tensor x = random_normal({m, kDim}, 3, 0.02f);
  for (auto _ : state) {
    benchmark::DoNotOptimize(dynamic_int8 ? linear_dynamic_int8(x, p) : linear_weight_only(x, p));
  }
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * m * kDim * kDim * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}

void BM_SgemmResident(benchmark::State& state) {
  const int64_t m = state.range(0);
  openblas_set_num_threads(2);
  const Tensor x = random_normal({m, kDim}, 3, 0.02f);
  const Tensor& w = weight_f32();  // generated here, outside the timed loop
  Tensor y = Tensor::empty({m, kDim}, DType::kFloat32);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), kDim, kDim, 1.0f,
                x.data<float>(), kDim, w.data<float>(), kDim, 0.0f, y.data<float>(), kDim);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * m * kDim * kDim * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}

BENCHMARK(BM_SgemvDram)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w8a16_perchannel, DType::kInt8, 0, false)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w4a16_g32, DType::kInt4, 32, false)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w4a16_g128, DType::kInt4, 128, false)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w4a16_perchannel, DType::kInt4, 0, false)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w2a16_g32, DType::kInt2, 32, false)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDramFloatActivations, w4a16_g32_fp32act, DType::kInt4, 32)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDramFloatActivations, w4a16_perchannel_fp32act, DType::kInt4, 0)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w8a8_pertoken, DType::kInt8, 0, true)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w4a8_g32_pertoken, DType::kInt4, 32, true)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvDram, w4a8_perchannel_pertoken, DType::kInt4, 0, true)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SgemmResident)
    ->Arg(4)
    ->Arg(8)
    ->Arg(32)
    ->Arg(128)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemmResident, w4a16_g32, DType::kInt4, 32, false)
    ->Arg(4)
    ->Arg(8)
    ->Arg(32)
    ->Arg(128)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemmResident, w4a8_g32_pertoken, DType::kInt4, 32, true)
    ->Arg(4)
    ->Arg(8)
    ->Arg(32)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemmResident, w4a8_perchannel_pertoken, DType::kInt4, 0, true)
    ->Arg(4)
    ->Arg(8)
    ->Arg(32)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemmResident, w8a8_pertoken, DType::kInt8, 0, true)
    ->Arg(4)
    ->Arg(8)
    ->Arg(32)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemmResident, w8a16_perchannel, DType::kInt8, 0, false)
    ->Arg(4)
    ->Arg(8)
    ->Arg(32)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// After the run, prints one line per case: ours, the anchor measured in the same run, ratio.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      const auto& c = run.counters;
      std::string name = run.benchmark_name();
      name = name.substr(0, name.find("/real_time"));
      if (c.count("weight_GBps")) {
        lines_.push_back(
            {name, c.at("weight_GBps").value, "dram_read_bw", c.at("dram_GBps").value, "GB/s"});
      } else if (c.count("GFLOPS")) {
        const std::string m = name.substr(name.rfind('/'));
        if (name.rfind("BM_SgemmResident", 0) == 0) sgemm_[m] = c.at("GFLOPS").value;
        lines_.push_back({name, c.at("GFLOPS").value, "fp32_sgemm",
                          sgemm_.count(m) ? sgemm_[m] : 0.0, "GFLOPS"});
      }
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nkernel level: %s\n", std::string(isa_name(active_isa())).c_str());
    std::printf("%-44s %9s %-13s %9s %6s %s\n", "case (/threads or /M)", "ours", "anchor_name",
                "anchor", "ratio", "unit");
    for (const Line& l : lines_) {
      std::printf("%-44s %9.2f %-13s %9.2f %6.2f %s\n", l.name.c_str(), l.ours,
                  l.anchor_name.c_str(), l.anchor, l.anchor > 0 ? l.ours / l.anchor : 0.0,
                  l.unit.c_str());
    }
  }

 private:
  struct Line {
    std::string name;
    double ours;
    std::string anchor_name;
    double anchor;
    std::string unit;
  };
  std::vector<Line> lines_;
  std::map<std::string, double> sgemm_;
};

}  // namespace

int main(int argc, char** argv) {
  quantkit::reexec_with_tuned_blas(argv);
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}

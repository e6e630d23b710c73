// Quantize / dequantize throughput on a 4096x4096 float32 matrix (int8 per-channel, int4 g32),
// beside a memcpy of the same float bytes measured in the same run. Each case reports GB/s of
// float data processed and `vs_memcpy` = ours / memcpy (target >= 0.5).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "quantkit/core/random.h"
#include "quantkit/kernels/blas.h"
#include "quantkit/kernels/isa.h"
#include "quantkit/quant/affine.h"
#include "quantkit/quant/qtensor.h"

namespace {

using namespace quantkit;
constexpr int64_t kRows = 4096, kCols = 4096;
constexpr double kFloatBytes = static_cast<double>(kRows * kCols * 4);

const Tensor& matrix() {
  static const Tensor m = random_normal({kRows, kCols}, 1, 0.02f);
  return m;
}

/// memcpy bandwidth of the same number of bytes, best of several runs, measured once.
double memcpy_gbps() {
  static const double gbps = [] {
    const Tensor& src = matrix();
    Tensor dst = Tensor::empty(src.shape(), DType::kFloat32);
    double best = 0.0;
    for (int rep = 0; rep < 8; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      std::memcpy(dst.bytes(), src.bytes(), static_cast<size_t>(src.nbytes()));
      benchmark::ClobberMemory();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, kFloatBytes / s / 1e9);
    }
    return best;
  }();
  return gbps;
}

AffineSpec spec_for(int bits) {
  return bits == 8 ? AffineSpec::for_dtype(DType::kInt8, Granularity::per_axis(0))
                   : AffineSpec::for_dtype(DType::kInt4, Granularity::per_group(32));
}

void report(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(kFloatBytes));
  state.counters["GBps"] = benchmark::Counter(
      kFloatBytes / 1e9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["memcpy_GBps"] = memcpy_gbps();
}

void BM_Memcpy(benchmark::State& state) {
  const Tensor& src = matrix();
  Tensor dst = Tensor::empty(src.shape(), DType::kFloat32);
  for (auto _ : state) {
    std::memcpy(dst.bytes(), src.bytes(), static_cast<size_t>(src.nbytes()));
    benchmark::ClobberMemory();
  }
  report(state);
}

void BM_Quantize(benchmark::State& state) {
  const AffineSpec spec = spec_for(static_cast<int>(state.range(0)));
  const QParams qp = choose_qparams(matrix(), spec);
  for (auto _ : state) benchmark::DoNotOptimize(quantize(matrix(), spec, qp));
  report(state);
}

void BM_Dequantize(benchmark::State& state) {
  const QTensor q = quantize(matrix(), spec_for(static_cast<int>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(q.dequantize());
  report(state);
}

/// The same work into buffers allocated once, as a runtime does: no page faults in the loop.
void BM_QuantizeInto(benchmark::State& state) {
  const AffineSpec spec = spec_for(static_cast<int>(state.range(0)));
  const QParams qp = choose_qparams(matrix(), spec);
  Tensor codes = Tensor::zeros(matrix().shape(), spec.dtype);
  for (auto _ : state) benchmark::DoNotOptimize(quantize_into(matrix(), spec, qp, codes));
  report(state);
}

void BM_DequantizeInto(benchmark::State& state) {
  const QTensor q = quantize(matrix(), spec_for(static_cast<int>(state.range(0))));
  Tensor out = Tensor::zeros(q.shape(), DType::kFloat32);
  for (auto _ : state) {
    dequantize_into(q, out);
    benchmark::ClobberMemory();
  }
  report(state);
}

void BM_ChooseQParamsAndQuantize(benchmark::State& state) {
  const AffineSpec spec = spec_for(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(quantize(matrix(), spec));
  report(state);
}

BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Quantize)
    ->ArgName("bits")
    ->Arg(8)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Dequantize)
    ->ArgName("bits")
    ->Arg(8)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_QuantizeInto)
    ->ArgName("bits")
    ->Arg(8)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_DequantizeInto)
    ->ArgName("bits")
    ->Arg(8)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ChooseQParamsAndQuantize)
    ->ArgName("bits")
    ->Arg(8)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// Prints ours / memcpy for every case after the run, so the ratio is read in one place.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      const auto it = run.counters.find("GBps");
      if (it == run.counters.end()) continue;
      results_.emplace_back(run.benchmark_name(), it->second.value);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double anchor = memcpy_gbps();
    std::printf("\nkernel level: %s\n", std::string(isa_name(active_isa())).c_str());
    std::printf("\n%-40s %10s %12s %8s\n", "case", "GB/s", "memcpy GB/s", "ratio");
    for (const auto& [name, gbps] : results_) {
      std::printf("%-40s %10.2f %12.2f %8.2f\n", name.c_str(), gbps, anchor, gbps / anchor);
    }
  }

 private:
  std::vector<std::pair<std::string, double>> results_;
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

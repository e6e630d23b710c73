// Quantized modules against their float counterparts on the same shapes, in one run: static int8
// Linear and Conv2d (uint8 in and out, per-channel weights), dynamic int8 Linear, and the float
// modules (OpenBLAS sgemm). Each quantized case reports GOPS and `vs_float` = float time / ours
// (> 1: faster than float), the float time being measured in the same process.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <map>

#include "quantkit/core/random.h"
#include "quantkit/kernels/blas.h"
#include "quantkit/nn/quantized.h"

namespace {

using namespace quantkit;

struct LinearShape {
  int64_t m, k, n;
};
struct ConvShape {
  int64_t batch, in, out, hw;
};

const std::vector<LinearShape> kLinear = {{1, 1024, 1024}, {64, 1024, 1024}, {256, 768, 3072}};
const std::vector<ConvShape> kConv = {{64, 16, 32, 14}, {8, 64, 64, 28}, {1, 128, 128, 14}};

double seconds_per_call(const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    int calls = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double s = 0;
    do {
      f();
      ++calls;
      s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (s < 0.05);
    best = std::min(best, s / calls);
  }
  return best;
}

Int8Weight int8_weight(const Tensor& w) {
  const int64_t out = w.size(0), per = w.numel() / out;
  Tensor codes = Tensor::empty(w.shape(), DType::kInt8);
  std::vector<double> scales(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    float amax = 0;
    for (int64_t i = 0; i < per; ++i)
      amax = std::max(amax, std::fabs(w.data<float>()[o * per + i]));
    scales[o] = amax > 0 ? amax / 127.0 : 1.0;
    for (int64_t i = 0; i < per; ++i) {
      codes.data<int8_t>()[o * per + i] =
          static_cast<int8_t>(std::nearbyint(w.data<float>()[o * per + i] / scales[o]));
    }
  }
  return Int8Weight(codes, scales, std::vector<int64_t>(static_cast<size_t>(out), 0));
}

void finish(benchmark::State& state, double ops, double float_seconds) {
  state.counters["GOPS"] = benchmark::Counter(ops / 1e9 * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate);
  state.counters["float_GFLOPS"] = ops / float_seconds / 1e9;
}

void BM_Linear(benchmark::State& state, LinearShape s, int kind) {
  Linear fl(s.k, s.n);
  fl.weight = random_normal({s.n, s.k}, 1, 0.05f);
  fl.bias = random_normal({s.n}, 2, 0.1f);
  const Tensor x = random_normal({s.m, s.k}, 3);
  const double float_s = seconds_per_call([&] { fl(x); });
  const OutputQParams in_q{0.03, 128, DType::kUInt8};
  const Value xq = quantize_value(x, in_q);
  StaticQuantizedLinear sq(int8_weight(fl.weight), fl.bias, {0.05, 128, DType::kUInt8}, false);
  DynamicQuantizedLinear dq(int8_weight(fl.weight), fl.bias, QEngine::kOneDNN);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (kind == 0) benchmark::DoNotOptimize(fl(x));
    if (kind == 1) benchmark::DoNotOptimize(sq(xq));
    if (kind == 2) benchmark::DoNotOptimize(dq(x));
  }
  const double ours = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                      static_cast<double>(state.iterations());
  const double ops = 2.0 * static_cast<double>(s.m * s.k * s.n);
  finish(state, ops, float_s);
  state.counters["vs_float"] = float_s / ours;
}

void BM_Conv2d(benchmark::State& state, ConvShape s, int kind) {
  const ConvOptions o{s.in, s.out, {3}, {1}, {1}, {1}, 1, true};
  Conv fc(2, o);
  fc.weight = random_normal(fc.weight.shape(), 1, 0.05f);
  fc.bias = random_normal({s.out}, 2, 0.1f);
  const Tensor x = random_normal({s.batch, s.in, s.hw, s.hw}, 3);
  const double float_s = seconds_per_call([&] { fc(x); });
  const Value xq = quantize_value(x, {0.03, 128, DType::kUInt8});
  StaticQuantizedConv qc(2, o, int8_weight(fc.weight), fc.bias, {0.05, 0, DType::kUInt8}, true);
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (kind == 0) benchmark::DoNotOptimize(fc(x));
    if (kind == 1) benchmark::DoNotOptimize(qc(xq));
  }
  const double ours = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                      static_cast<double>(state.iterations());
  const double ops = 2.0 * static_cast<double>(s.batch * s.hw * s.hw * s.out * s.in * 9);
  finish(state, ops, float_s);
  state.counters["vs_float"] = float_s / ours;
}

const int kRegistered = [] {
  for (const auto& s : kLinear) {
    const std::string shape =
        "/m" + std::to_string(s.m) + "_k" + std::to_string(s.k) + "_n" + std::to_string(s.n);
    benchmark::RegisterBenchmark(("linear_float" + shape).c_str(), BM_Linear, s, 0);
    benchmark::RegisterBenchmark(("linear_static_int8" + shape).c_str(), BM_Linear, s, 1);
    benchmark::RegisterBenchmark(("linear_dynamic_int8" + shape).c_str(), BM_Linear, s, 2);
  }
  for (const auto& s : kConv) {
    const std::string shape = "/n" + std::to_string(s.batch) + "_c" + std::to_string(s.in) + "_o" +
                              std::to_string(s.out) + "_" + std::to_string(s.hw) + "x" +
                              std::to_string(s.hw);
    benchmark::RegisterBenchmark(("conv3x3_float" + shape).c_str(), BM_Conv2d, s, 0);
    benchmark::RegisterBenchmark(("conv3x3_static_int8_relu" + shape).c_str(), BM_Conv2d, s, 1);
  }
  return 0;
}();

}  // namespace

int main(int argc, char** argv) {
  quantkit::reexec_with_tuned_blas(argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

// `quantkit bench kernels`: kernel throughput beside anchors measured in the same run (streaming
// DRAM read, OpenBLAS fp32 sgemv/sgemm, oneDNN's u8s8 int8 matmul), as a table or as JSON
// records.
#include "bench_kernels.h"

#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "quantkit/core/random.h"
#include "quantkit/kernels/bandwidth.h"
#include "quantkit/kernels/isa.h"
#include "quantkit/kernels/linear.h"
#include "table.h"

#if QUANTKIT_HAVE_ONEDNN
#include "onednn_anchor.h"
#endif

namespace quantkit::cli {
namespace {

struct Record {
  std::string name;
  double ours;
  std::string anchor_name;
  double anchor;
  std::string unit;
  /// False for the anchors' own records (anchor_name "-", anchor 0): they have no ratio.
  bool anchored() const { return anchor > 0; }
};

/// Best time (seconds) of each of `fns` over `rounds` rounds that call every fn in turn, each
/// call timed right after an untimed one (so its weights are in cache: the last-level cache
/// keeps only about 64 MiB per thread between calls, less than the cases of one M together).
/// This host is shared and its speed drifts by 10-30 % over seconds (oneDNN's M = 128 figure
/// read 2600 and 4050 GOPS in two runs a minute apart when each case took its own five calls):
/// interleaved, a slow spell slows ours and the anchors alike.
std::vector<double> best_seconds_interleaved(int rounds,
                                             const std::vector<std::function<void()>>& fns) {
  std::vector<double> best(fns.size(), 1e30);
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < fns.size(); ++i) {
      fns[i]();
      const auto t0 = std::chrono::steady_clock::now();
      fns[i]();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best[i] = std::min(best[i], s);
    }
  }
  return best;
}

/// Rounds of the cache-resident cases. With 5, W8A8's ratio to oneDNN at M = 128 read 0.85 /
/// 1.02 / 0.89 in three runs minutes apart (a slow spell that covered most of a case's calls);
/// with 15, 0.97-1.00 (M = 512: 0.98-1.00 -> 0.99), for 2-3 s more per run.
constexpr int kResidentRounds = 15;

/// Mean time per call over `calls` back-to-back calls (seconds), after `calls` / 2 warm-up
/// calls. DRAM cases cycle through distinct copies, so this is the sustained streaming rate; a
/// best single call would flatter them against the bandwidth probe, which reads whole passes.
double mean_seconds(int calls, const std::function<void(int)>& fn) {
  for (int i = 0; i < calls / 2; ++i) fn(i);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) fn(i);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
}

/// A DRAM case: `calls` calls per pass (cycling its copies), call i given to fn.
struct DramCase {
  int calls;
  std::function<void(int)> fn;
};

/// mean_seconds of each case, in `rounds` rounds that run every case in turn; the best round of
/// each. The host's DRAM rate drifts between about 47 and 85 GB/s over seconds: measured one
/// after the other, a case and its anchor could each land in another spell (a W4A16 ratio to
/// the probe read 0.52 and 0.92 in two runs a minute apart).
std::vector<double> mean_seconds_interleaved(int rounds, const std::vector<DramCase>& cases) {
  std::vector<double> best(cases.size(), 1e30);
  for (int round = 0; round < rounds; ++round) {
    for (size_t i = 0; i < cases.size(); ++i)
      best[i] = std::min(best[i], mean_seconds(cases[i].calls, cases[i].fn));
  }
  return best;
}

struct WeightCase {
  std::string label;
  DType dtype;
  int64_t group;
  bool dynamic_int8;
  GemvActivations gemv = GemvActivations::kInt16;  // weight-only GEMV: int16 (default) or fp32 x
};

PackedLinearWeight pack(const Tensor& w, const WeightCase& c) {
  AffineSpec spec = AffineSpec::for_dtype(
      c.dtype, c.group ? Granularity::per_group(c.group) : Granularity::per_axis(0));
  spec.mapping = MappingType::kSymmetric;
  spec.zero_point_domain = ZeroPointDomain::kNone;
  spec.scale_dtype = DType::kFloat16;  // as the quantizers choose by default: compact metadata
  const QTensor q = quantize(w, spec);
  // Dynamic int8 cases as WeightOnlyLinear packs them for that kernel.
  return pack_linear_weight(
      q, c.dynamic_int8 ? dynamic_int8_code_layout(q.dtype(), q.scheme().block_size[1], w.size(1))
                        : CodeLayout::kRows);
}

Tensor run(const Tensor& x, const PackedLinearWeight& p, const WeightCase& c) {
  return c.dynamic_int8 ? linear_dynamic_int8(x, p) : linear_weight_only(x, p, nullptr, c.gemv);
}

/// Distinct copies of `packed` adding up to at least `bytes`, so that cycling through them reads
/// from DRAM (the L3 here holds a 4096 x 4096 int8 matrix many times over).
std::vector<PackedLinearWeight> dram_copies(const PackedLinearWeight& packed, int64_t bytes) {
  std::vector<PackedLinearWeight> copies;
  for (int64_t total = 0; total < bytes; total += packed.nbytes()) {
    copies.push_back(packed.clone());
  }
  return copies;
}

std::string rows_label(int64_t m) {
  return "_m" + std::to_string(m);
}

#if QUANTKIT_HAVE_ONEDNN
/// oneDNN's u8s8 matmul of m rows against `copies` prepacked copies of w's int8 codes (codes
/// derived from w, activations a fixed pattern: the speed does not depend on the values).
class OneDnnAnchor {
 public:
  OneDnnAnchor(const Tensor& w, int64_t m, int64_t copies, int threads)
      : copies_(copies),
        x_(static_cast<size_t>(m * w.size(1))),
        y_(static_cast<size_t>(m * w.size(0))),
        mm_(m, w.size(1), w.size(0)) {
    std::vector<int8_t> codes(static_cast<size_t>(w.numel()));
    for (size_t i = 0; i < codes.size(); ++i)
      codes[i] = static_cast<int8_t>(std::lround(w.data<float>()[i] * 2000.0f) % 127);
    for (size_t i = 0; i < x_.size(); ++i) x_[i] = static_cast<uint8_t>((i * 37) % 251);
    omp_set_num_threads(threads);
    for (int64_t c = 0; c < copies; ++c) mm_.add_weights(codes.data());
  }
  int64_t copies() const { return copies_; }
  /// One matmul on copy i % copies().
  void run(int i) { mm_.run(x_.data(), i % copies_, y_.data()); }

 private:
  int64_t copies_;
  std::vector<uint8_t> x_;
  std::vector<float> y_;
  OneDnnU8S8Matmul mm_;
};

#endif

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
  const ReadBandwidthProbe probe(dram_bytes, threads);
  const double dram = probe.measure();
  records.push_back({"dram_read_bw", dram, "-", 0.0, "GB/s"});
  // Each single-token DRAM case against the probe read right before and right after it, in two
  // rounds (probe, case, probe, case, probe): the seconds per call of the case's best round, and
  // the mean of the probes around that round, each the best of two passes as the case is the
  // best of two rounds (single passes, drifting 15 % on a busy host, read below OpenBLAS's
  // sgemv beside them: ratios 1.13-1.53, Zen 3).
  auto against_probe = [&](int calls, const std::function<void(int)>& fn) {
    double seconds = 1e30, probe_gbps = 0.0, before = probe.measure(2);
    for (int round = 0; round < 2; ++round) {
      const double s = mean_seconds(calls, fn), after = probe.measure(2);
      if (s < seconds) seconds = s, probe_gbps = (before + after) / 2;
      before = after;
    }
    return std::pair{seconds, probe_gbps};
  };

  const Tensor w = random_normal({dim, dim}, 1, 0.02f);
  const Tensor x1 = random_normal({1, dim}, 2, 0.02f);
  {  // fp32 GEMV from OpenBLAS over the same number of bytes
    std::vector<Tensor> copies;
    for (int64_t total = 0; total < dram_bytes; total += w.nbytes()) copies.push_back(w.clone());
    Tensor y = Tensor::empty({dim}, DType::kFloat32);
    openblas_set_num_threads(threads);
    const auto [s, beside] = against_probe(static_cast<int>(copies.size()) * 2, [&](int i) {
      const Tensor& a = copies[static_cast<size_t>(i) % copies.size()];
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(dim), static_cast<int>(dim), 1.0f,
                  a.data<float>(), static_cast<int>(dim), x1.data<float>(), 1, 0.0f,
                  y.data<float>(), 1);
    });
    openblas_set_num_threads(1);
    records.push_back({"gemv_fp32_openblas_m1_dram", static_cast<double>(w.nbytes()) / s / 1e9,
                       "dram_read_bw", beside, "GB/s"});
  }
  const std::vector<WeightCase> gemv_cases = {
      {"w8a16_perchannel", DType::kInt8, 0, false},
      {"w4a16_g32", DType::kInt4, 32, false},
      {"w4a16_g64", DType::kInt4, 64, false},
      {"w4a16_g128", DType::kInt4, 128, false},
      {"w4a16_perchannel", DType::kInt4, 0, false},
      {"w2a16_g32", DType::kInt2, 32, false},
      // Float8 weights (quanto's float8 qtypes) on float32 activations.
      {"fp8e4m3_perchannel", DType::kFloat8E4M3, 0, false},
      {"fp8e5m2_perchannel", DType::kFloat8E5M2, 0, false},
      {"w8a8_pertoken", DType::kInt8, 0, true},
      {"w4a8_g32_pertoken", DType::kInt4, 32, true},
      // The seed's quantize_activation layout: per-channel weights only.
      {"w4a8_perchannel_pertoken", DType::kInt4, 0, true},
      // The same weight-only kernels on float32 activations (set_gemv_activations(kFloat32)).
      {"w8a16_perchannel_fp32act", DType::kInt8, 0, false, GemvActivations::kFloat32},
      {"w4a16_g32_fp32act", DType::kInt4, 32, false, GemvActivations::kFloat32},
      {"w4a16_perchannel_fp32act", DType::kInt4, 0, false, GemvActivations::kFloat32}};
  for (const WeightCase& c : gemv_cases) {
    const std::vector<PackedLinearWeight> copies = dram_copies(pack(w, c), dram_bytes);
    const auto [s, beside] = against_probe(static_cast<int>(copies.size()) * 2, [&](int i) {
      (void)run(x1, copies[static_cast<size_t>(i) % copies.size()], c);
    });
    records.push_back({"gemv_" + c.label + "_m1_dram",
                       static_cast<double>(copies[0].nbytes()) / s / 1e9, "dram_read_bw", beside,
                       "GB/s"});
  }
  std::vector<WeightCase> dynamic_cases;
  for (const WeightCase& c : gemv_cases)
    if (c.dynamic_int8) dynamic_cases.push_back(c);
  std::vector<WeightCase> gemm_cases = {gemv_cases[1]};  // w4a16_g32 beside the dynamic ones
  gemm_cases.insert(gemm_cases.end(), dynamic_cases.begin(), dynamic_cases.end());
  // Integer activations beyond one row with weights still streamed from DRAM: batched decode.
  // oneDNN's u8s8 beside the probe (m = 1), or beside our cases of that m in interleaved rounds.
  for (int64_t m : {int64_t{1}, int64_t{8}, int64_t{32}}) {
    const double ops = 2.0 * static_cast<double>(m * dim * dim);
    std::vector<DramCase> cases;
#if QUANTKIT_HAVE_ONEDNN
    OneDnnAnchor onednn(w, m, (dram_bytes + dim * dim - 1) / (dim * dim), threads);
    const DramCase anchor_case{static_cast<int>(onednn.copies()) * 2,
                               [&](int i) { onednn.run(i); }};
    if (m == 1) {
      const auto [s, beside] = against_probe(anchor_case.calls, anchor_case.fn);
      records.push_back({"gemv_onednn_u8s8_m1_dram", static_cast<double>(dim * dim) / s / 1e9,
                         "dram_read_bw", beside, "GB/s"});
      continue;  // ours at m = 1 is above, in GB/s against the probe
    }
    cases.push_back(anchor_case);
#else
    if (m == 1) continue;  // no anchor to measure at m = 1
#endif
    const Tensor x = random_normal({m, dim}, 4, 0.02f);
    std::vector<std::vector<PackedLinearWeight>> copies;
    for (const WeightCase& c : dynamic_cases) {
      copies.push_back(dram_copies(pack(w, c), dram_bytes));
      cases.push_back(
          {static_cast<int>(copies.back().size()) * 2, [&, i = copies.size() - 1, c](int call) {
             const auto& mine = copies[i];
             (void)run(x, mine[static_cast<size_t>(call) % mine.size()], c);
           }});
    }
    const std::vector<double> seconds = mean_seconds_interleaved(2, cases);
    std::string anchor_name = "-";
    double anchor = 0.0;
    size_t first = 0;
#if QUANTKIT_HAVE_ONEDNN
    anchor_name = "onednn_u8s8";
    anchor = ops / seconds[0] / 1e9;
    first = 1;
    records.push_back({"gemm_onednn_u8s8" + rows_label(m) + "_dram", anchor, "-", 0.0, "GOPS"});
#endif
    for (size_t i = 0; i < dynamic_cases.size(); ++i) {
      records.push_back({"gemm_" + dynamic_cases[i].label + rows_label(m) + "_dram",
                         ops / seconds[first + i] / 1e9, anchor_name, anchor, "GOPS"});
    }
  }
  for (int64_t m : options.gemm_rows) {
    const Tensor x = random_normal({m, dim}, 3, 0.02f);
    Tensor y = Tensor::empty({m, dim}, DType::kFloat32);
    const double flops =
        2.0 * static_cast<double>(m) * static_cast<double>(dim) * static_cast<double>(dim);
    // OpenBLAS's sgemm (context only) in rounds of its own, then a pause: its worker threads
    // spin for a while after each call and took the cores from whatever ran next (our W8A8
    // M = 32 right after an sgemm: best call 1400 against 1600 GOPS, mean 135 against 1490).
    const double sgemm_seconds = best_seconds_interleaved(
        5, {[&] {
          // OpenBLAS at the benchmark's thread count, then back to quantkit's setting: its kernels
          // call sgemm from inside their own thread pool.
          openblas_set_num_threads(threads);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                      static_cast<int>(dim), static_cast<int>(dim), 1.0f, x.data<float>(),
                      static_cast<int>(dim), w.data<float>(), static_cast<int>(dim), 0.0f,
                      y.data<float>(), static_cast<int>(dim));
          openblas_set_num_threads(1);
        }})[0];
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    // The int8 anchor and our cases of this M, timed in interleaved rounds.
    std::vector<std::function<void()>> fns;
#if QUANTKIT_HAVE_ONEDNN
    OneDnnAnchor onednn(w, m, 1, threads);
    fns.emplace_back([&] { onednn.run(0); });
#endif
    std::vector<PackedLinearWeight> packed;
    for (const WeightCase& c : gemm_cases) packed.push_back(pack(w, c));
    for (size_t i = 0; i < gemm_cases.size(); ++i)
      fns.emplace_back([&, i] { (void)run(x, packed[i], gemm_cases[i]); });
    const std::vector<double> seconds = best_seconds_interleaved(kResidentRounds, fns);
    auto rate = [&](size_t i) { return flops / seconds[i] / 1e9; };
    const double sgemm = flops / sgemm_seconds / 1e9;
    records.push_back({"gemm_fp32_openblas" + rows_label(m), sgemm, "-", 0.0, "GFLOPS"});
    std::string int8_anchor_name = "fp32_sgemm";
    double int8_anchor = sgemm;
    size_t first_case = 0;
#if QUANTKIT_HAVE_ONEDNN
    int8_anchor_name = "onednn_u8s8";
    int8_anchor = rate(0);
    first_case = 1;
    records.push_back(
        {"gemm_onednn_u8s8" + rows_label(m), int8_anchor, "fp32_sgemm", sgemm, "GOPS"});
#endif
    for (size_t i = 0; i < gemm_cases.size(); ++i) {
      const WeightCase& c = gemm_cases[i];
      const double ours = rate(first_case + i);
      if (c.dynamic_int8) {
        records.push_back(
            {"gemm_" + c.label + rows_label(m), ours, int8_anchor_name, int8_anchor, "GOPS"});
      } else {
        records.push_back({"gemm_" + c.label + rows_label(m), ours, "fp32_sgemm", sgemm, "GFLOPS"});
      }
    }
  }

  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Record& r : records) {
      // null, not a ratio of 0 that a reader could take for a measurement.
      const bool anchored = r.anchored();
      out.push_back({{"name", r.name},
                     {"ours", r.ours},
                     {"anchor_name", anchored ? nlohmann::json(r.anchor_name) : nullptr},
                     {"anchor", anchored ? nlohmann::json(r.anchor) : nullptr},
                     {"ratio", anchored ? nlohmann::json(r.ours / r.anchor) : nullptr},
                     {"unit", r.unit}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  Table table({"case", "ours", "anchor", "anchor value", "ratio", "unit"},
              {false, true, false, true, true, false});
  for (const Record& r : records) {
    table.add({r.name, fixed(r.ours, 2), r.anchor_name, r.anchored() ? fixed(r.anchor, 2) : "-",
               r.anchored() ? fixed(r.ours / r.anchor, 2) : "-", r.unit});
  }
  table.print(stdout);
  return 0;
}

}  // namespace quantkit::cli

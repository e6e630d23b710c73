// Pieces shared by the weight-only and the dynamic int8 linear paths. Private to the library.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gemv.h"
#include "quantkit/kernels/linear.h"

namespace quantkit {

// Above this many activation rows, dequantizing tiles of W and calling sgemm beats the GEMV on
// float32 activations (the int16 GEMV holds out longer: gemm_min_rows in linear.cpp).
constexpr int64_t kGemmMinRows = 64;

/// The kernels' view of `p` writing y [m, N] (all rows; run_row_slices narrows it).
kernels::GemvWeights gemv_weights(const PackedLinearWeight& p, float* y);

/// p when its codes are in rows (CodeLayout::kRows), else a copy in rows made in `storage`: for
/// the kernels that read rows.
const PackedLinearWeight& in_rows(const PackedLinearWeight& p, PackedLinearWeight& storage);

/// Prefetches (into L2) the compact group metadata of rows [n0, n0 + rows) that exist: the
/// next slice's, so that expanding it does not wait on DRAM: W4A8 g32 on channel tiles (which
/// read float32 parameters), 4096^2 over 1 GiB, 2 threads, Zen 5, interleaved: M = 1 43.3 ->
/// 46.5 GB/s, M = 8 890 -> 930 GOPS.
void prefetch_compact_params(const PackedLinearWeight& p, int64_t n0, int64_t rows);

/// One weight's share of run_row_slices: the kernel's arguments for all rows of *p.
template <class Args>
struct RowSliceJob {
  const PackedLinearWeight* p;
  Args args;
  bool reads_compact;  // the kernel reads compact group metadata itself
};

/// Calls kernel(args) with args.w narrowed to slices of `slice_rows` rows of W (a multiple of 16)
/// on `threads` threads; 16 rows keep each thread's writes to y on separate cache lines. Threads
/// take slices as they finish: on this shared machine one core often runs slower for a while, and
/// with a static split the other waited at every barrier (8-layer decode: 12 % -> 8 % of samples
/// spinning in libgomp, 42 -> 46 tokens/s; W4A16 g32 GEMV 15-17 -> 22-24 GB/s, interleaved runs).
/// Guided rather than 4 slices at a time: each grab restarted a thread's stream from DRAM cold,
/// while guided hands out half, a quarter, ... of what is left, long runs of contiguous rows
/// (4096^2 M = 1 GEMV from DRAM: W8A16 1.10x, W4A16 g64 / g128 / per-channel 1.14-1.18x).
/// Compact group metadata (linear.h) is expanded to float32 per slice, into a buffer the thread
/// keeps in L1/L2, and the kernel sees the slice as a matrix of its own: the kernels only ever
/// read float32 scales, while DRAM delivers 3 bytes a group instead of 8. A kernel that reads
/// the compact form itself (reads_compact) gets it untouched, with the rows narrowed as usual.
/// Several jobs (weights sharing an input) run in the same pass: one fork and join for all.
template <class Args, class Kernel>
void run_row_slices(const std::vector<RowSliceJob<Args>>& jobs, Kernel kernel, int threads,
                    int64_t slice_rows = 16) {
  std::vector<int64_t> first_slice(jobs.size() + 1, 0);
  int64_t expand_groups = 0;  // the widest row of group params a job expands per slice
  for (size_t j = 0; j < jobs.size(); ++j) {
    first_slice[j + 1] = first_slice[j] + (jobs[j].args.w.n_end + slice_rows - 1) / slice_rows;
    if (jobs[j].p->compact() && !jobs[j].reads_compact)
      expand_groups = std::max(expand_groups, jobs[j].p->groups);
  }
  const int64_t slices = first_slice.back();
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> params(static_cast<size_t>(2 * slice_rows * expand_groups));
#pragma omp for schedule(guided, 4)
    for (int64_t s = 0; s < slices; ++s) {
      size_t j = 0;
      while (s >= first_slice[j + 1]) ++j;
      const PackedLinearWeight& p = *jobs[j].p;
      const Args& whole = jobs[j].args;
      Args args = whole;
      const int64_t n0 = (s - first_slice[j]) * slice_rows,
                    rows = std::min<int64_t>(slice_rows, whole.w.n_end - n0);
      if (!p.compact() || jobs[j].reads_compact) {
        args.w.n_begin = n0;
        args.w.n_end = n0 + rows;
      } else {
        float* scales = params.data();
        float* offsets = params.data() + slice_rows * p.groups;
        p.group_params(n0, rows, scales, p.has_offsets ? offsets : nullptr);
        prefetch_compact_params(p, n0 + slice_rows, slice_rows);
        args.w.codes = whole.w.codes + n0 * p.row_bytes;
        args.w.y = whole.w.y + n0;
        args.w.scales = scales;
        args.w.offsets = p.has_offsets ? offsets : nullptr;
        args.w.scales_f16 = nullptr;
        args.w.zero_points = nullptr;
        args.w.n_begin = 0;
        args.w.n_end = rows;
      }
      kernel(args);
    }
  }
}

/// run_row_slices for one weight.
template <class Args, class Kernel>
void run_row_slices(const PackedLinearWeight& p, Args args, Kernel kernel, int threads,
                    bool reads_compact = false, int64_t slice_rows = 16) {
  run_row_slices(std::vector<RowSliceJob<Args>>{{&p, args, reads_compact}}, kernel, threads,
                 slice_rows);
}

/// Throws ShapeError unless bias is null or float32 [out_features].
void check_bias(const Tensor* bias, const PackedLinearWeight& p);
/// The checks of the *_shared_input calls (`op` names the call in the error): at least one
/// weight, and no biases or one per weight.
void check_shared_weights(const char* op, const std::vector<const PackedLinearWeight*>& weights,
                          const std::vector<const Tensor*>& biases);
/// y[r, :] += bias for r < rows (no-op for a null bias).
void add_bias(const Tensor* bias, int64_t rows, Tensor& y);

}  // namespace quantkit

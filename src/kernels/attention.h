// Scaled dot-product attention kernels, one table per ISA. Private to the library.
#pragma once

#include <cstdint>

#include "quantkit/kernels/isa.h"

namespace quantkit::kernels {

/// Query rows that attend over the same key/value rows: the query heads of one KV head (grouped-
/// query attention), or every query position of one BERT head. Reading each key and value row
/// once for all of them is what makes the kernel cheap at long contexts.
struct AttentionArgs {
  const float* q;     // query i at q + i * q_stride, `dim` floats
  int64_t q_stride;   //
  int64_t queries;    //
  const float* keys;  // position j at keys + j * kv_stride (values likewise)
  const float* values;
  int64_t kv_stride;
  int64_t len;  // positions [0, len) are visible (masked ones are simply not passed)
  int64_t dim;
  float scale;
  float* out;  // query i's result at out + i * out_stride, overwritten
  int64_t out_stride;
  float* scores;  // scratch: queries * len floats
};

struct AttentionKernels {
  /// out_i = sum_j softmax_j(scale * q_i . k_j) v_j. The reference uses std::exp and 8 partial
  /// sums per dot product; the AVX2 level FMA lanes and a polynomial exp (vector_exp.h), which
  /// agree with it within 1e-6 relative to max |v| (tests/attention_test.cpp).
  void (*attend)(const AttentionArgs& args);
};

namespace reference {
extern const AttentionKernels kAttentionTable;
}
namespace avx2 {  // the avx512 level shares it: dim is 64 or 128 in the models we run
extern const AttentionKernels kAttentionTable;
}

/// The table of the active ISA level.
const AttentionKernels& attention_kernels();
const AttentionKernels& attention_kernels_for(Isa isa);

}  // namespace quantkit::kernels

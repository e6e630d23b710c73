#pragma once
// The inner loop of scaled dot-product attention, shared by the BERT encoder and the Llama
// decoder: one query head against the rows of one key/value head.

#include <cstdint>

namespace quantkit {

/// Rows of one attention head inside a larger activation: row j starts at data + j * stride.
struct HeadRows {
  const float* data;
  int64_t stride;
};

/// a . b over 8 independent partial sums, which the compiler turns into vector lanes: a single
/// running sum is a chain of dependent adds, 4 cycles per element.
float dot_lanes(const float* a, const float* b, int64_t n);

/// out[0, dim) += sum_j softmax_j(scale * q . keys_j) * values_j over j in [0, len): the
/// attention of one query over `len` positions (masked positions are simply not passed).
/// `scores` is caller-owned scratch of `len` floats, so a thread reuses it across heads.
void attend_one_head(const float* q, HeadRows keys, HeadRows values, int64_t len, int64_t dim,
                     float scale, float* scores, float* out);

}  // namespace quantkit

#include "attention.h"

#include <algorithm>
#include <cmath>

namespace quantkit {

float dot_lanes(const float* a, const float* b, int64_t n) {
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) part[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) part[0] += a[i] * b[i];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

void attend_one_head(const float* q, HeadRows keys, HeadRows values, int64_t len, int64_t dim,
                     float scale, float* scores, float* out) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    scores[j] = dot_lanes(q, keys.data + j * keys.stride, dim) * scale;
    mx = std::max(mx, scores[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < len; ++j) sum += (scores[j] = std::exp(scores[j] - mx));
  const float inv_sum = 1.0f / sum;
  for (int64_t j = 0; j < len; ++j) {
    const float w = scores[j] * inv_sum;
    const float* __restrict v = values.data + j * values.stride;
    float* __restrict o = out;
    for (int64_t e = 0; e < dim; ++e) o[e] += w * v[e];
  }
}

}  // namespace quantkit

#include "quantkit/core/random.h"

#include <random>

namespace quantkit {

Tensor random_normal(const Shape& shape, uint32_t seed, float stddev) {
  QK_CHECK(stddev >= 0.0f, ValueError, "random_normal: stddev must be >= 0, got ", stddev);
  Tensor t = Tensor::empty(shape, DType::kFloat32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

}  // namespace quantkit

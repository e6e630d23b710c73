// Reproducible random tensors (tests, benchmarks, examples).
#pragma once

#include <cstdint>

#include "quantkit/core/tensor.h"

namespace quantkit {

/// float32 tensor of N(0, stddev^2) samples from a Mersenne twister seeded with `seed`.
Tensor random_normal(const Shape& shape, uint32_t seed, float stddev = 1.0f);

}  // namespace quantkit

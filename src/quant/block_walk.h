// Iteration over the blocks of a blockwise-quantized tensor, row by row. Private to quant/.
#pragma once

#include <algorithm>
#include <vector>

#include "quantkit/core/tensor.h"

namespace quantkit::detail {

/// Calls fn(row_start, row_length, first_block, last_dim_block) for every row of the last
/// dimension of `shape` (a 0-d shape is one row of one element). Inside a row, element j belongs
/// to block first_block + j / last_dim_block of the row-major block grid.
template <typename Fn>
void for_each_row(const Shape& shape, const Shape& block, Fn&& fn) {
  if (shape.empty()) {
    fn(int64_t{0}, int64_t{1}, int64_t{0}, int64_t{1});
    return;
  }
  const size_t rank = shape.size();
  const int64_t row_length = shape.back();
  const int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  std::vector<int64_t> grid_stride(rank, 1);
  for (size_t d = rank - 1; d-- > 0;) {
    const int64_t next_blocks = (shape[d + 1] + block[d + 1] - 1) / block[d + 1];
    grid_stride[d] = grid_stride[d + 1] * next_blocks;
  }
  std::vector<int64_t> index(rank, 0);
  const int64_t rows = numel / row_length;
  for (int64_t row = 0; row < rows; ++row) {
    int64_t first_block = 0;
    for (size_t d = 0; d + 1 < rank; ++d) first_block += (index[d] / block[d]) * grid_stride[d];
    fn(row * row_length, row_length, first_block, block.back());
    for (size_t d = rank - 1; d-- > 0;) {  // odometer over the leading dimensions
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
}

/// Calls fn(offset, length, block_index) for every run of consecutive elements sharing a block.
template <typename Fn>
void for_each_block_run(const Shape& shape, const Shape& block, Fn&& fn) {
  for_each_row(shape, block, [&](int64_t start, int64_t length, int64_t first, int64_t group) {
    for (int64_t j = 0; j < length; j += group)
      fn(start + j, std::min(group, length - j), first + j / group);
  });
}

}  // namespace quantkit::detail

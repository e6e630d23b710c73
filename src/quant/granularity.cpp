#include "quantkit/quant/affine.h"

namespace quantkit {

Granularity Granularity::per_tensor() {
  return Granularity{};
}

Granularity Granularity::per_axis(int64_t axis) {
  Granularity g;
  g.kind_ = Kind::kPerAxis;
  g.axis_ = axis;
  return g;
}

Granularity Granularity::per_group(int64_t group_size, int64_t axis) {
  QK_CHECK(group_size > 0, ValueError, "per_group: group_size must be positive, got ", group_size);
  Granularity g;
  g.kind_ = Kind::kPerGroup;
  g.group_size_ = group_size;
  g.axis_ = axis;
  return g;
}

Granularity Granularity::per_token() {
  Granularity g;
  g.kind_ = Kind::kPerToken;
  return g;
}

Granularity Granularity::blocks(Shape block_size) {
  for (int64_t b : block_size) {
    QK_CHECK(b > 0 || b == -1, ValueError,
             "blocks: every block extent must be positive or -1, got ",
             shape_to_string(block_size));
  }
  Granularity g;
  g.kind_ = Kind::kBlocks;
  g.blocks_ = std::move(block_size);
  return g;
}

namespace {
int64_t normalize_axis(int64_t axis, int64_t rank, const char* what) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  QK_CHECK(a >= 0 && a < rank, ShapeError, what, ": axis ", axis,
           " is out of range for a tensor of rank ", rank);
  return a;
}
}  // namespace

Shape Granularity::block_size_for(const Shape& shape) const {
  const auto rank = static_cast<int64_t>(shape.size());
  // A zero extent still gets block extent 1 so that block counts stay well defined.
  Shape block(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) block[d] = std::max<int64_t>(shape[d], 1);
  switch (kind_) {
    case Kind::kPerTensor:
      break;
    case Kind::kPerAxis:
      block[static_cast<size_t>(normalize_axis(axis_, rank, "per_axis"))] = 1;
      break;
    case Kind::kPerGroup: {
      const auto a = static_cast<size_t>(normalize_axis(axis_, rank, "per_group"));
      for (size_t d = 0; d < shape.size(); ++d) block[d] = d == a ? group_size_ : 1;
      break;
    }
    case Kind::kPerToken:
      QK_CHECK(rank >= 1, ShapeError, "per_token needs a tensor of rank >= 1, got a 0-d tensor");
      for (size_t d = 0; d + 1 < shape.size(); ++d) block[d] = 1;
      break;
    case Kind::kBlocks:
      QK_CHECK(blocks_.size() == shape.size(), ShapeError, "block shape ", shape_to_string(blocks_),
               " has rank ", blocks_.size(), " but the tensor ", shape_to_string(shape),
               " has rank ", rank);
      for (size_t d = 0; d < shape.size(); ++d) {
        if (blocks_[d] != -1) block[d] = blocks_[d];
      }
      break;
  }
  return block;
}

std::string Granularity::to_string() const {
  switch (kind_) {
    case Kind::kPerTensor:
      return "per-tensor";
    case Kind::kPerAxis:
      return "per-axis(" + std::to_string(axis_) + ")";
    case Kind::kPerGroup:
      return "per-group(" + std::to_string(group_size_) + ", axis " + std::to_string(axis_) + ")";
    case Kind::kPerToken:
      return "per-token";
    case Kind::kBlocks:
      return "blocks" + shape_to_string(blocks_);
  }
  return "?";
}

}  // namespace quantkit

// One block's scale and zero point from its range. Private to quant/: choose_qparams and the
// clipping search (mse_search.cpp) derive every candidate the same way.
#pragma once

#include "quantkit/quant/affine.h"

namespace quantkit::detail {

struct BlockQParams {
  float scale;
  float zero_point;  // integral for the int domain
};

/// `scale` as the spec stores it: unchanged, or the nearest float16 (at least the smallest
/// positive one, so that a constant block keeps a usable scale). Throws ValueError above 65504.
float stored_scale(float scale, const AffineSpec& spec);

/// The qparams choose_qparams gives a block whose values span [mn, mx].
BlockQParams qparams_for_range(float mn, float mx, const AffineSpec& spec);

}  // namespace quantkit::detail

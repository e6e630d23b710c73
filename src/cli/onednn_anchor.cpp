#include "onednn_anchor.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <vector>

#include "quantkit/core/error.h"

namespace quantkit::cli {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

struct OneDnnU8S8Matmul::Impl {
  int64_t k, n;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul matmul;
  std::vector<dnnl::memory> weights;
};

OneDnnU8S8Matmul::OneDnnU8S8Matmul(int64_t m, int64_t k, int64_t n) : impl_(new Impl) {
  impl_->k = k;
  impl_->n = n;
  try {
    const dnnl::memory::desc src({m, k}, dt::u8, tag::ab);
    const dnnl::memory::desc wei({k, n}, dt::s8, tag::any);
    const dnnl::memory::desc dst({m, n}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 1, std::vector<float>(static_cast<size_t>(n), 1e-3f));
    impl_->pd =
        dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), attr, impl_->engine);
    impl_->matmul = dnnl::matmul(impl_->pd);
  } catch (const dnnl::error& e) {
    throw Error(std::string("oneDNN u8s8 matmul ") + std::to_string(m) + "x" + std::to_string(k) +
                "x" + std::to_string(n) + ": " + e.what());
  }
}

OneDnnU8S8Matmul::~OneDnnU8S8Matmul() = default;

int64_t OneDnnU8S8Matmul::add_weights(const int8_t* w) {
  // [n, k] row-major is the (k, n) matrix in "ba" order.
  dnnl::memory user({{impl_->k, impl_->n}, dt::s8, tag::ba}, impl_->engine, const_cast<int8_t*>(w));
  dnnl::memory packed(impl_->pd.weights_desc(), impl_->engine);
  dnnl::reorder(user, packed).execute(impl_->stream, user, packed);
  impl_->stream.wait();
  impl_->weights.push_back(packed);
  return static_cast<int64_t>(impl_->weights.size()) - 1;
}

void OneDnnU8S8Matmul::run(const uint8_t* x, int64_t weights, float* y) {
  dnnl::memory src(impl_->pd.src_desc(), impl_->engine, const_cast<uint8_t*>(x));
  dnnl::memory dst(impl_->pd.dst_desc(), impl_->engine, y);
  impl_->matmul.execute(impl_->stream,
                        {{DNNL_ARG_SRC, src},
                         {DNNL_ARG_WEIGHTS, impl_->weights[static_cast<size_t>(weights)]},
                         {DNNL_ARG_DST, dst}});
  impl_->stream.wait();
}

}  // namespace quantkit::cli

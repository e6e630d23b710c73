// The attention kernel (a private kernel table, src/kernels/attention.h) at every ISA level
// against a double-precision softmax attention, on odd sizes, tails and strided rows.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "quantkit/core/random.h"
#include "test_util.h"

namespace quantkit {
namespace {

struct Case {
  int64_t queries, len, dim;
};

/// out_i = sum_j softmax_j(scale * q_i . k_j) v_j, in double.
std::vector<double> attend_in_double(const kernels::AttentionArgs& a) {
  std::vector<double> out(static_cast<size_t>(a.queries * a.dim), 0.0);
  for (int64_t i = 0; i < a.queries; ++i) {
    std::vector<double> s(static_cast<size_t>(a.len));
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < a.len; ++j) {
      double d = 0.0;
      for (int64_t e = 0; e < a.dim; ++e)
        d += static_cast<double>(a.q[i * a.q_stride + e]) * a.keys[j * a.kv_stride + e];
      s[static_cast<size_t>(j)] = d * a.scale;
      mx = std::max(mx, s[static_cast<size_t>(j)]);
    }
    for (double& v : s) sum += (v = std::exp(v - mx));
    for (int64_t j = 0; j < a.len; ++j) {
      for (int64_t e = 0; e < a.dim; ++e) {
        out[static_cast<size_t>(i * a.dim + e)] +=
            s[static_cast<size_t>(j)] / sum * a.values[j * a.kv_stride + e];
      }
    }
  }
  return out;
}

TEST(Attention, EveryIsaMatchesSoftmaxAttentionInDouble) {
  testing::IsaGuard guard;
  const std::vector<Case> cases = {{1, 1, 1},  {1, 7, 7},     {3, 33, 32},   {8, 40, 64},
                                   {8, 9, 64}, {5, 200, 100}, {17, 17, 32},  {2, 300, 128},
                                   {1, 5, 15}, {4, 64, 17},   {12, 129, 24}, {1, 1000, 64}};
  uint32_t seed = 1;
  for (const Case& c : cases) {
    // Rows strided wider than dim, as heads inside a hidden state are.
    const int64_t q_stride = c.dim + 3, kv_stride = c.dim * 2 + 1, out_stride = c.dim + 5;
    const Tensor q = random_normal({c.queries * q_stride}, seed++, 2.0f);
    const Tensor k = random_normal({c.len * kv_stride}, seed++);
    const Tensor v = random_normal({c.len * kv_stride}, seed++);
    std::vector<float> scores(static_cast<size_t>(c.queries * c.len));
    std::vector<float> out(static_cast<size_t>(c.queries * out_stride), -1.0f);
    kernels::AttentionArgs args{
        q.data<float>(), q_stride,        c.queries,
        k.data<float>(), v.data<float>(), kv_stride,
        c.len,           c.dim,           1.0f / std::sqrt(static_cast<float>(c.dim)),
        out.data(),      out_stride,      scores.data()};
    const std::vector<double> want = attend_in_double(args);
    double max_v = 0.0;
    for (int64_t i = 0; i < v.numel(); ++i)
      max_v = std::max<double>(max_v, std::fabs(v.data<float>()[i]));
    for (Isa isa : supported_isas()) {
      set_active_isa(isa);
      kernels::attention_kernels().attend(args);
      for (int64_t i = 0; i < c.queries; ++i) {
        for (int64_t e = 0; e < c.dim; ++e) {
          // float32 dot products (relative error ~dim * 2^-24 of |q||k|), a ~1 ulp exp and the
          // float sum over len positions, all relative to the largest |v|.
          ASSERT_NEAR(out[static_cast<size_t>(i * out_stride + e)],
                      want[static_cast<size_t>(i * c.dim + e)], 2e-5 * max_v)
              << isa_name(isa) << " queries=" << c.queries << " len=" << c.len << " dim=" << c.dim
              << " at (" << i << ", " << e << ")";
        }
        // The padding between rows is not written.
        for (int64_t e = c.dim; e < out_stride; ++e)
          ASSERT_EQ(out[static_cast<size_t>(i * out_stride + e)], -1.0f) << isa_name(isa);
      }
    }
  }
}

}  // namespace
}  // namespace quantkit

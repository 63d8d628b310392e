// The fused_lora ops on CUDA against fp64 autograd of the composite on the
// CPU (from the same rounded inputs), per dtype, at odd sizes: the projection
// and the MLP, forward and the gradients of x, A and B, fp32 adapters over a
// bf16 base as PEFT keeps them. Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fused_lora/fused_lora_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::DtypeName;
using testing::RelMaxErr;

struct Proj {
  at::Tensor w, a, b;  // w in the compute dtype (CUDA); a, b fp32 (CUDA)
  double scale;
};

Proj MakeProj(int64_t in, int64_t out, int64_t r, at::ScalarType dtype, double scale) {
  auto opts = at::TensorOptions().device(at::kCUDA);
  return Proj{(at::randn({out, in}, opts) * 0.2).to(dtype), at::randn({r, in}, opts) * 0.3,
              at::randn({out, r}, opts) * 0.3, scale};
}

ops::LoraProjection View(const Proj& p) {
  ops::LoraProjection v;
  at::Tensor w = p.w;
  v.base_weight = [w](at::ScalarType dtype) { return w.to(dtype); };
  v.lora_a = p.a.clone().requires_grad_(true);
  v.lora_b = p.b.clone().requires_grad_(true);
  v.scale = p.scale;
  return v;
}

struct Leaves {
  at::Tensor a, b;
};
at::Tensor Composite64(const at::Tensor& x, const Proj& p, Leaves* l) {
  l->a = p.a.to(at::kCPU, at::kDouble).requires_grad_(true);
  l->b = p.b.to(at::kCPU, at::kDouble).requires_grad_(true);
  return at::matmul(x, p.w.to(at::kCPU, at::kDouble).t()) +
         at::matmul(at::matmul(x, l->a.t()), l->b.t()) * p.scale;
}

class FusedLoraOpCuda : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(FusedLoraOpCuda, MlpAndProjectionMatchFp64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::ScalarType dtype = GetParam();
  // bf16: inputs, A, B, xa and outputs each rounded to 8 mantissa bits.
  const double tol = dtype == at::kFloat ? 2e-5 : 3e-2;
  at::manual_seed(11);
  const int64_t h = 200, i = 344, r = 7;
  Proj gate = MakeProj(h, i, r, dtype, 2.0), up = MakeProj(h, i, r, dtype, 0.5),
       down = MakeProj(i, h, r, dtype, 1.5);
  at::Tensor x = at::randn({3, 41, h}, at::TensorOptions().device(at::kCUDA)).to(dtype);
  at::Tensor dy = at::randn({3, 41, h}, at::TensorOptions().device(at::kCUDA)).to(dtype);

  at::Tensor x64 = x.to(at::kCPU, at::kDouble).requires_grad_(true);
  Leaves lg, lu, ld;
  at::Tensor y64 =
      Composite64(at::silu(Composite64(x64, gate, &lg)) * Composite64(x64, up, &lu), down, &ld);
  y64.backward(dy.to(at::kCPU, at::kDouble));

  testing::Poison(x.device());
  ops::LoraProjection vg = View(gate), vu = View(up), vd = View(down);
  at::Tensor xc = x.clone().requires_grad_(true);
  at::Tensor y = ops::FusedLoraMlp(xc, vg, vu, vd);
  ASSERT_EQ(y.scalar_type(), dtype);
  y.backward(dy);
  SCOPED_TRACE(DtypeName(dtype));
  EXPECT_LT(RelMaxErr(y.to(at::kCPU, at::kDouble), y64.detach()), tol);
  EXPECT_LT(RelMaxErr(xc.grad().to(at::kCPU, at::kDouble), x64.grad()), tol);
  for (auto [got, want] : {std::pair{vg.lora_a, lg.a}, std::pair{vg.lora_b, lg.b},
                           std::pair{vu.lora_a, lu.a}, std::pair{vu.lora_b, lu.b},
                           std::pair{vd.lora_a, ld.a}, std::pair{vd.lora_b, ld.b}}) {
    ASSERT_EQ(got.grad().scalar_type(), at::kFloat);
    EXPECT_LT(RelMaxErr(got.grad().to(at::kCPU, at::kDouble), want.grad()), tol);
  }

  // One projection (q_proj-like) on the same input.
  at::Tensor x64b = x.to(at::kCPU, at::kDouble).requires_grad_(true);
  Leaves lq;
  at::Tensor q64 = Composite64(x64b, gate, &lq);
  at::Tensor dq = at::randn({3, 41, i}, at::TensorOptions().device(at::kCUDA)).to(dtype);
  q64.backward(dq.to(at::kCPU, at::kDouble));
  ops::LoraProjection vq = View(gate);
  at::Tensor xq = x.clone().requires_grad_(true);
  at::Tensor q = ops::FusedLoraLinear(xq, vq);
  q.backward(dq);
  EXPECT_LT(RelMaxErr(q.to(at::kCPU, at::kDouble), q64.detach()), tol);
  EXPECT_LT(RelMaxErr(xq.grad().to(at::kCPU, at::kDouble), x64b.grad()), tol);
  EXPECT_LT(RelMaxErr(vq.lora_a.grad().to(at::kCPU, at::kDouble), lq.a.grad()), tol);
  EXPECT_LT(RelMaxErr(vq.lora_b.grad().to(at::kCPU, at::kDouble), lq.b.grad()), tol);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedLoraOpCuda,
                         ::testing::Values(at::kFloat, at::kBFloat16),
                         [](const auto& info) { return DtypeName(info.param); });

}  // namespace
}  // namespace foak

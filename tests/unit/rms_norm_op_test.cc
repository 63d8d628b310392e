// The rms_norm op on the CPU (where it runs the reference) against LibTorch
// autograd of the composite in fp64: forward, both gradients, the frozen-weight
// path and the errors for mismatched inputs.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "gtest/gtest.h"
#include "kernels/rms_norm/rms_norm_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::RelMaxErr;

at::Tensor Composite(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor h = x * at::rsqrt(x.pow(2).mean(-1, true) + eps);
  return w * h;
}

TEST(RmsNormOp, MatchesFp64CompositeForwardAndBackward) {
  at::manual_seed(11);
  const double eps = 1e-5;
  at::Tensor x = at::randn({5, 7, 123}, at::kDouble);
  at::Tensor w = 1.0 + 0.1 * at::randn({123}, at::kDouble);
  at::Tensor dy = at::randn({5, 7, 123}, at::kDouble);

  at::Tensor x64 = x.clone().requires_grad_(true), w64 = w.clone().requires_grad_(true);
  Composite(x64, w64, eps).backward(dy);

  at::Tensor x32 = x.to(at::kFloat).requires_grad_(true);
  at::Tensor w32 = w.to(at::kFloat).requires_grad_(true);
  at::Tensor y = ops::RmsNorm(x32, w32, eps);
  EXPECT_EQ(y.sizes(), x.sizes());
  y.backward(dy.to(at::kFloat));
  EXPECT_LE(RelMaxErr(y, Composite(x, w, eps)), 1e-6);
  EXPECT_LE(RelMaxErr(x32.grad(), x64.grad()), 1e-5);
  EXPECT_LE(RelMaxErr(w32.grad(), w64.grad()), 1e-5);
}

TEST(RmsNormOp, FrozenWeightGetsNoGradient) {
  at::manual_seed(12);
  at::Tensor x = at::randn({3, 64}).requires_grad_(true);
  at::Tensor w = at::ones({64});
  ops::RmsNorm(x, w, 1e-6).sum().backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST(RmsNormOp, RejectsMismatchedWeight) {
  at::Tensor x = at::randn({3, 64});
  try {
    ops::RmsNorm(x, at::ones({63}), 1e-6);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden size is 64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::RmsNorm(x, at::ones({64}, at::kDouble), 1e-6), c10::Error);
  EXPECT_THROW(ops::RmsNorm(x.to(at::kInt), at::ones({64}, at::kInt), 1e-6), c10::Error);
}

}  // namespace
}  // namespace foak

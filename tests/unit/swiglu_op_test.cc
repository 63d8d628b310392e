// The swiglu op on the CPU (where it runs the reference) against LibTorch
// autograd of the composite at::silu(g) * u in fp64: forward, both gradients,
// frozen gate or up, strided and offset inputs, inputs and incoming gradient
// left untouched, bf16 through the fp32 round trip, and the errors for
// mismatched inputs.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <string>

#include "gtest/gtest.h"
#include "kernels/swiglu/swiglu_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::RelMaxErr;

at::Tensor Composite(const at::Tensor& g, const at::Tensor& u) { return at::silu(g) * u; }

// fp64 autograd of the composite: {y, dg, du}.
std::tuple<at::Tensor, at::Tensor, at::Tensor> Fp64(const at::Tensor& g, const at::Tensor& u,
                                                    const at::Tensor& dy) {
  at::Tensor g64 = g.detach().to(at::kDouble).requires_grad_(true);
  at::Tensor u64 = u.detach().to(at::kDouble).requires_grad_(true);
  at::Tensor y64 = Composite(g64, u64);
  y64.backward(dy.to(at::kDouble));
  return {y64.detach(), g64.grad(), u64.grad()};
}

TEST(SwiGluOp, MatchesFp64CompositeForwardAndBackward) {
  at::manual_seed(21);
  // Scale 4 puts some gates deep in sigmoid's tails.
  at::Tensor g = 4.0 * at::randn({5, 123, 123});
  at::Tensor u = at::randn({5, 123, 123});
  at::Tensor dy = at::randn({5, 123, 123});
  auto [y64, dg64, du64] = Fp64(g, u, dy);

  at::Tensor gf = g.clone().requires_grad_(true), uf = u.clone().requires_grad_(true);
  at::Tensor y = ops::SwiGlu(gf, uf);
  EXPECT_EQ(y.sizes(), g.sizes());
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  y.backward(dy);
  EXPECT_LE(RelMaxErr(y, y64), 1e-6);
  EXPECT_LE(RelMaxErr(gf.grad(), dg64), 1e-6);
  EXPECT_LE(RelMaxErr(uf.grad(), du64), 1e-6);
}

TEST(SwiGluOp, FrozenInputGetsNoGradient) {
  at::manual_seed(22);
  at::Tensor g = at::randn({3, 7, 45}), u = at::randn({3, 7, 45}), dy = at::randn({3, 7, 45});
  auto [y64, dg64, du64] = Fp64(g, u, dy);

  at::Tensor gf = g.clone().requires_grad_(true), uf = u.clone();
  ops::SwiGlu(gf, uf).backward(dy);
  EXPECT_LE(RelMaxErr(gf.grad(), dg64), 1e-6);
  EXPECT_FALSE(uf.grad().defined());

  at::Tensor gz = g.clone(), uz = u.clone().requires_grad_(true);
  ops::SwiGlu(gz, uz).backward(dy);
  EXPECT_FALSE(gz.grad().defined());
  EXPECT_LE(RelMaxErr(uz.grad(), du64), 1e-6);
}

TEST(SwiGluOp, StridedAndOffsetInputs) {
  at::manual_seed(23);
  // A transposed gate (not contiguous) and an up at storage offset 1 (the
  // misaligned case that takes the scalar CUDA path).
  at::Tensor gt = at::randn({37, 11}).t();
  at::Tensor buf = at::randn({11 * 37 + 1});
  at::Tensor uo = buf.narrow(0, 1, 11 * 37).view({11, 37});
  ASSERT_EQ(uo.storage_offset(), 1);
  at::Tensor dy = at::randn({11, 37});
  auto [y64, dg64, du64] = Fp64(gt, uo, dy);

  // requires_grad_ on the offset view itself, as the CUDA test does.
  at::Tensor gf = gt.detach().requires_grad_(true), uf = uo.requires_grad_(true);
  ASSERT_FALSE(gf.is_contiguous());
  at::Tensor y = ops::SwiGlu(gf, uf);
  y.backward(dy);
  EXPECT_LE(RelMaxErr(y, y64), 1e-6);
  ASSERT_EQ(gf.grad().sizes(), gf.sizes());
  ASSERT_EQ(uf.grad().sizes(), uf.sizes());
  EXPECT_LE(RelMaxErr(gf.grad(), dg64), 1e-6);
  EXPECT_LE(RelMaxErr(uf.grad(), du64), 1e-6);
}

TEST(SwiGluOp, LeavesInputsAndGradientUntouched) {
  at::manual_seed(24);
  at::Tensor g = at::randn({4, 33}).requires_grad_(true);
  at::Tensor u = at::randn({4, 33}).requires_grad_(true);
  at::Tensor dy = at::randn({4, 33});
  const at::Tensor g0 = g.detach().clone(), u0 = u.detach().clone(), dy0 = dy.clone();
  at::Tensor y = ops::SwiGlu(g, u);
  y.backward(dy, /*retain_graph=*/true);
  EXPECT_TRUE(at::equal(g.detach(), g0));
  EXPECT_TRUE(at::equal(u.detach(), u0));
  EXPECT_TRUE(at::equal(dy, dy0));
  // A second backward through the saved tensors accumulates the same gradient.
  const at::Tensor dg1 = g.grad().clone();
  y.backward(dy);
  EXPECT_TRUE(at::allclose(g.grad(), 2 * dg1));

  // An expanded incoming gradient (from sum()).
  at::Tensor g2 = g0.clone().requires_grad_(true), u2 = u0.clone().requires_grad_(true);
  ops::SwiGlu(g2, u2).sum().backward();
  auto [y64, dg64, du64] = Fp64(g0, u0, at::ones({4, 33}));
  EXPECT_LE(RelMaxErr(g2.grad(), dg64), 1e-6);
  EXPECT_LE(RelMaxErr(u2.grad(), du64), 1e-6);
}

TEST(SwiGluOp, Bf16RoundsOnce) {
  at::manual_seed(25);
  at::Tensor g = at::randn({5, 123, 123}).to(at::kBFloat16).requires_grad_(true);
  at::Tensor u = at::randn({5, 123, 123}).to(at::kBFloat16).requires_grad_(true);
  at::Tensor dy = at::randn({5, 123, 123}).to(at::kBFloat16);
  auto [y64, dg64, du64] = Fp64(g, u, dy);
  at::Tensor y = ops::SwiGlu(g, u);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  y.backward(dy);
  EXPECT_EQ(g.grad().scalar_type(), at::kBFloat16);
  // One rounding to bf16: half an ulp, 2^-9 of the value.
  EXPECT_LE(RelMaxErr(y, y64), 4e-3);
  EXPECT_LE(RelMaxErr(g.grad(), dg64), 4e-3);
  EXPECT_LE(RelMaxErr(u.grad(), du64), 4e-3);
}

TEST(SwiGluOp, EmptyInput) {
  at::Tensor g = at::randn({0, 16}).requires_grad_(true), u = at::randn({0, 16});
  at::Tensor y = ops::SwiGlu(g, u);
  EXPECT_EQ(y.sizes(), g.sizes());
  y.sum().backward();
  EXPECT_EQ(g.grad().sizes(), g.sizes());
}

TEST(SwiGluOp, RejectsBadInputs) {
  at::Tensor g = at::randn({3, 64});
  try {
    ops::SwiGlu(g, at::randn({3, 63}));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("swiglu up has shape [3, 63]"), std::string::npos)
        << e.what();
  }
  try {
    ops::SwiGlu(g, at::randn({3, 64}, at::kDouble));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("swiglu up has dtype"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::SwiGlu(g.to(at::kInt), g.to(at::kInt)), c10::Error);
  EXPECT_THROW(ops::SwiGlu(g.to(at::kDouble), g.to(at::kDouble)), c10::Error);
  EXPECT_THROW(ops::SwiGlu(at::randn({}), at::randn({})), c10::Error);
  EXPECT_THROW(ops::SwiGlu(at::Tensor(), g), c10::Error);
  EXPECT_THROW(ops::SwiGlu(g, at::Tensor()), c10::Error);
  EXPECT_THROW(ops::SwiGlu(g, at::randn({64, 3})), c10::Error);  // same numel, other shape
}

}  // namespace
}  // namespace foak

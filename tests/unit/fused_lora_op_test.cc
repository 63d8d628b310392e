// The fused_lora ops on the CPU against LibTorch autograd of the composite
// (base linear + x A^T B^T scale; silu(gate) * up for the MLP) in fp64, at
// odd sizes: forward, the gradients of x, A and B, a bias, frozen factors,
// bf16 inputs over fp32 adapters (PEFT's layout), that the base weight is
// materialised exactly once in forward and once in backward, and the errors.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fused_lora/fused_lora_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using ops::LoraProjection;
using testing::RelMaxErr;

struct Proj {
  at::Tensor w, bias, a, b;  // fp32 masters
  double scale;
};

Proj MakeProj(int64_t in, int64_t out, int64_t r, bool bias, double scale) {
  Proj p;
  p.w = at::randn({out, in}) * 0.2;
  p.bias = bias ? at::randn({out}) : at::Tensor();
  p.a = at::randn({r, in}) * 0.3;
  p.b = at::randn({out, r}) * 0.3;  // non-zero so B's path shows in every gradient
  p.scale = scale;
  return p;
}

// The op's view of `p`: factors as leaves of `dtype` requiring grad, the base
// cast to what the op asks for, counting its materialisations.
LoraProjection View(const Proj& p, at::ScalarType factor_dtype, int* calls) {
  LoraProjection v;
  at::Tensor w = p.w;
  v.base_weight = [w, calls](at::ScalarType dtype) {
    if (calls != nullptr) ++*calls;
    return w.to(dtype);
  };
  v.bias = p.bias;
  v.lora_a = p.a.to(factor_dtype).clone().requires_grad_(true);
  v.lora_b = p.b.to(factor_dtype).clone().requires_grad_(true);
  v.scale = p.scale;
  return v;
}

// fp64 composite of one projection on x (any dtype, cast to fp64).
at::Tensor Composite(const at::Tensor& x, const Proj& p, at::Tensor* a, at::Tensor* b) {
  *a = p.a.to(at::kDouble).requires_grad_(true);
  *b = p.b.to(at::kDouble).requires_grad_(true);
  at::Tensor y = at::matmul(x, p.w.to(at::kDouble).t());
  if (p.bias.defined()) y = y + p.bias.to(at::kDouble);
  return y + at::matmul(at::matmul(x, a->t()), b->t()) * p.scale;
}

TEST(FusedLoraOp, LinearMatchesFp64CompositeAtOddSizes) {
  at::manual_seed(3);
  const Proj p = MakeProj(/*in=*/37, /*out=*/23, /*r=*/5, /*bias=*/true, /*scale=*/1.75);
  at::Tensor x = at::randn({3, 7, 37});
  at::Tensor dy = at::randn({3, 7, 23});

  at::Tensor x64 = x.to(at::kDouble).requires_grad_(true), a64, b64;
  at::Tensor y64 = Composite(x64, p, &a64, &b64);
  y64.backward(dy.to(at::kDouble));

  int calls = 0;
  LoraProjection v = View(p, at::kFloat, &calls);
  at::Tensor xf = x.clone().requires_grad_(true);
  at::Tensor y = ops::FusedLoraLinear(xf, v);
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 7, 23}));
  y.backward(dy);
  EXPECT_EQ(calls, 2);  // once more in backward, for dx

  EXPECT_LT(RelMaxErr(y, y64), 1e-5);
  EXPECT_LT(RelMaxErr(xf.grad(), x64.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(v.lora_a.grad(), a64.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(v.lora_b.grad(), b64.grad()), 1e-5);
}

TEST(FusedLoraOp, LinearSkipsTheBaseInBackwardWhenXNeedsNoGradient) {
  at::manual_seed(4);
  const Proj p = MakeProj(16, 9, 2, /*bias=*/false, 2.0);
  int calls = 0;
  LoraProjection v = View(p, at::kFloat, &calls);
  at::Tensor x = at::randn({4, 16});  // no grad: the first layer's input
  at::Tensor x64 = x.to(at::kDouble), a64, b64;
  at::Tensor dy = at::randn({4, 9});
  Composite(x64, p, &a64, &b64).backward(dy.to(at::kDouble));
  ops::FusedLoraLinear(x, v).backward(dy);
  EXPECT_EQ(calls, 1);
  EXPECT_LT(RelMaxErr(v.lora_a.grad(), a64.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(v.lora_b.grad(), b64.grad()), 1e-5);
}

TEST(FusedLoraOp, Bf16InputsOverFp32AdaptersStayCloseAndGiveFp32Gradients) {
  at::manual_seed(5);
  const Proj p = MakeProj(64, 48, 8, /*bias=*/false, 2.0);
  at::Tensor x = at::randn({2, 5, 64});
  at::Tensor dy = at::randn({2, 5, 48});
  at::Tensor x64 = x.to(at::kBFloat16).to(at::kDouble).requires_grad_(true), a64, b64;
  Proj p16 = p;
  p16.w = p.w.to(at::kBFloat16).to(at::kFloat);  // the bf16 base both sides see
  at::Tensor y64 = Composite(x64, p16, &a64, &b64);
  y64.backward(dy.to(at::kBFloat16).to(at::kDouble));
  y64 = y64.detach();

  LoraProjection v = View(p16, at::kFloat, nullptr);
  at::Tensor xb = x.to(at::kBFloat16).requires_grad_(true);
  at::Tensor y = ops::FusedLoraLinear(xb, v);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  y.backward(dy.to(at::kBFloat16));
  EXPECT_EQ(v.lora_a.grad().scalar_type(), at::kFloat);
  EXPECT_EQ(v.lora_b.grad().scalar_type(), at::kFloat);
  EXPECT_EQ(xb.grad().scalar_type(), at::kBFloat16);
  // bf16: A, B, xa and the outputs each rounded to 8 bits of mantissa.
  EXPECT_LT(RelMaxErr(y.to(at::kDouble), y64), 2e-2);
  EXPECT_LT(RelMaxErr(xb.grad().to(at::kDouble), x64.grad()), 2e-2);
  EXPECT_LT(RelMaxErr(v.lora_a.grad(), a64.grad()), 2e-2);
  EXPECT_LT(RelMaxErr(v.lora_b.grad(), b64.grad()), 2e-2);
}

TEST(FusedLoraOp, MlpMatchesFp64CompositeAtOddSizes) {
  at::manual_seed(6);
  const int64_t h = 37, i = 53, r = 3;
  const Proj gate = MakeProj(h, i, r, false, 1.5);
  const Proj up = MakeProj(h, i, r, false, 0.5);
  const Proj down = MakeProj(i, h, r, true, 2.0);
  at::Tensor x = at::randn({2, 9, h});
  at::Tensor dy = at::randn({2, 9, h});

  at::Tensor x64 = x.to(at::kDouble).requires_grad_(true);
  at::Tensor ga, gb, ua, ub, da, db;
  at::Tensor hid = at::silu(Composite(x64, gate, &ga, &gb)) * Composite(x64, up, &ua, &ub);
  at::Tensor y64 = Composite(hid, down, &da, &db);
  y64.backward(dy.to(at::kDouble));

  int calls = 0;
  LoraProjection vg = View(gate, at::kFloat, &calls), vu = View(up, at::kFloat, &calls),
                 vd = View(down, at::kFloat, &calls);
  at::Tensor xf = x.clone().requires_grad_(true);
  at::Tensor y = ops::FusedLoraMlp(xf, vg, vu, vd);
  EXPECT_EQ(calls, 3);
  y.backward(dy);
  EXPECT_EQ(calls, 6);

  EXPECT_LT(RelMaxErr(y, y64), 1e-5);
  EXPECT_LT(RelMaxErr(xf.grad(), x64.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(vg.lora_a.grad(), ga.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(vg.lora_b.grad(), gb.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(vu.lora_a.grad(), ua.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(vu.lora_b.grad(), ub.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(vd.lora_a.grad(), da.grad()), 1e-5);
  EXPECT_LT(RelMaxErr(vd.lora_b.grad(), db.grad()), 1e-5);
}

// The model's rope kernel rotates q and k in place: the op's output must
// accept in-place changes, viewed in another shape as attention does.
TEST(FusedLoraOp, OutputsMayBeChangedInPlaceThroughAView) {
  at::manual_seed(8);
  const Proj p = MakeProj(16, 12, 3, false, 1.0);
  LoraProjection v = View(p, at::kFloat, nullptr);
  at::Tensor x = at::randn({2, 5, 16}).requires_grad_(true);
  at::Tensor y = ops::FusedLoraLinear(x, v);
  y.view({2, 5, 3, 4}).mul_(2.0);
  y.sum().backward();
  LoraProjection w = View(p, at::kFloat, nullptr);
  at::Tensor x2 = x.detach().clone().requires_grad_(true);
  (ops::FusedLoraLinear(x2, w) * 2.0).sum().backward();
  EXPECT_TRUE(at::allclose(x.grad(), x2.grad()));
  EXPECT_TRUE(at::allclose(v.lora_a.grad(), w.lora_a.grad()));

  const Proj gate = MakeProj(16, 24, 3, false, 1.0), up = MakeProj(16, 24, 3, false, 1.0),
             down = MakeProj(24, 16, 3, false, 1.0);
  at::Tensor m = ops::FusedLoraMlp(x, View(gate, at::kFloat, nullptr),
                                   View(up, at::kFloat, nullptr), View(down, at::kFloat, nullptr));
  m.view({2, 5, 4, 4}).add_(1.0);
  m.sum().backward();  // throws if autograd refuses the in-place change
}

TEST(FusedLoraOp, FrozenFactorsGetNoGradient) {
  at::manual_seed(7);
  const Proj p = MakeProj(8, 8, 2, false, 1.0);
  LoraProjection v = View(p, at::kFloat, nullptr);
  v.lora_a.requires_grad_(false);
  at::Tensor x = at::randn({3, 8}).requires_grad_(true);
  ops::FusedLoraLinear(x, v).sum().backward();
  EXPECT_FALSE(v.lora_a.grad().defined());
  EXPECT_TRUE(v.lora_b.grad().defined());
  EXPECT_TRUE(x.grad().defined());
}

TEST(FusedLoraOp, ShapeErrorsNameTheProjectionAndTheExpectedShape) {
  const Proj p = MakeProj(8, 6, 2, false, 1.0);
  LoraProjection v = View(p, at::kFloat, nullptr);
  try {
    ops::FusedLoraLinear(at::randn({3, 9}), v);
    FAIL() << "a 9-wide input passed an adapter for 8";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("lora_A must be (r, 9)"), std::string::npos) << e.what();
  }
  LoraProjection bad_base = v;
  bad_base.base_weight = [](at::ScalarType dtype) { return at::zeros({5, 8}, dtype); };
  try {
    ops::FusedLoraLinear(at::randn({3, 8}), bad_base);
    FAIL() << "a (5, 8) base passed for an adapter with 6 outputs";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("base weight must be (6, 8)"), std::string::npos)
        << e.what();
  }
  try {
    ops::FusedLoraMlp(at::randn({2, 8}), v, v, v);
    FAIL() << "a down_proj of the wrong width passed";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("down_proj"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace foak

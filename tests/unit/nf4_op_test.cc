// The NF4 LibTorch ops on the CPU (the reference): Nf4Quantize /
// Nf4Dequantize shapes, dtypes, byte counts and errors; Nf4Linear against
// at::linear with the dequantised weight, forward and backward (dx, bias
// gradient, no weight gradient), at odd shapes in fp32 and bf16.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/nf4/nf4.h"
#include "kernels/nf4/nf4_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::ExpectTorchError;
using testing::RelMaxErr;

TEST(Nf4Op, QuantizeShapesAndBytes) {
  at::manual_seed(1);
  at::Tensor w = at::randn({123, 192});  // 23616 elements, 369 blocks, 2 groups
  const ops::Nf4Weight single = ops::Nf4Quantize(w, /*double_quant=*/false);
  EXPECT_EQ(single.shape, (std::vector<int64_t>{123, 192}));
  EXPECT_EQ(single.dtype, at::kFloat);
  EXPECT_EQ(single.numel(), 123 * 192);
  EXPECT_FALSE(single.double_quant());
  EXPECT_EQ(single.packed.scalar_type(), at::kByte);
  EXPECT_EQ(single.packed.numel(), 123 * 192 / 2);
  EXPECT_EQ(single.absmax.scalar_type(), at::kFloat);
  EXPECT_EQ(single.absmax.numel(), 369);
  EXPECT_EQ(single.nbytes(), 123 * 192 / 2 + 369 * 4);

  const ops::Nf4Weight dq = ops::Nf4Quantize(w, /*double_quant=*/true);
  EXPECT_TRUE(dq.double_quant());
  EXPECT_FALSE(dq.absmax.defined());
  EXPECT_EQ(dq.absmax_q.numel(), 369);
  EXPECT_EQ(dq.absmax_q.scalar_type(), at::kByte);
  EXPECT_EQ(dq.absmax_scale.numel(), 2);
  EXPECT_EQ(dq.absmax_offset.dim(), 0);
  EXPECT_EQ(dq.nbytes(), 123 * 192 / 2 + 369 + 2 * 4 + 4);
  // The 4-bit codes come from the exact absmax with or without DQ.
  EXPECT_TRUE(at::equal(single.packed, dq.packed));
}

TEST(Nf4Op, DequantizeDtypesAndRoundTrip) {
  at::manual_seed(2);
  at::Tensor w = at::randn({3, 5, 64}).to(at::kBFloat16);
  const ops::Nf4Weight q = ops::Nf4Quantize(w, false);
  EXPECT_EQ(q.dtype, at::kBFloat16);
  at::Tensor d_default = ops::Nf4Dequantize(q);
  EXPECT_EQ(d_default.scalar_type(), at::kBFloat16);
  EXPECT_EQ(d_default.sizes(), w.sizes());
  at::Tensor d32 = ops::Nf4Dequantize(q, at::kFloat);
  at::Tensor d16 = ops::Nf4Dequantize(q, at::kHalf);
  EXPECT_EQ(d16.scalar_type(), at::kHalf);
  // The 16-bit results are the fp32 values rounded once.
  EXPECT_TRUE(at::equal(d_default, d32.to(at::kBFloat16)));
  EXPECT_TRUE(at::equal(d16, d32.to(at::kHalf)));
  // NF4's error on normal data: about a tenth of the std, at most half a
  // code gap (0.16 of absmax) anywhere.
  const double rel = (d32 - w.to(at::kFloat)).pow(2).mean().sqrt().item<double>() /
                     w.to(at::kFloat).std().item<double>();
  EXPECT_LT(rel, 0.15);
  // Quantising the dequantised weight again gives the same codes (the values
  // are NF4 values times absmax, and absmax is among them).
  const ops::Nf4Weight again = ops::Nf4Quantize(d32, false);
  EXPECT_TRUE(at::equal(again.packed, q.packed));
  EXPECT_TRUE(at::equal(again.absmax, q.absmax));
}

TEST(Nf4Op, DoubleQuantDequantizesCloseToSingle) {
  at::manual_seed(3);
  at::Tensor w = at::randn({517, 128});
  at::Tensor d1 = ops::Nf4Dequantize(ops::Nf4Quantize(w, false));
  at::Tensor d2 = ops::Nf4Dequantize(ops::Nf4Quantize(w, true));
  const double e1 = (d1 - w).pow(2).mean().sqrt().item<double>();
  const double e2 = (d2 - w).pow(2).mean().sqrt().item<double>();
  EXPECT_LT(e2, 1.02 * e1);
  EXPECT_GE(e2, 0.98 * e1);
}

TEST(Nf4Op, QuantizeErrors) {
  ExpectTorchError([] { ops::Nf4Quantize(at::randn({123, 100}), false); },
                   "weight of shape [123, 100] has 12300 elements, not a positive multiple of "
                   "the NF4 block size 64");
  ExpectTorchError([] { ops::Nf4Quantize(at::randn({0, 64}), false); }, "has 0 elements");
  ExpectTorchError([] { ops::Nf4Quantize(at::randn({2, 64}, at::kDouble), false); },
                   "nf4 quantize: the weight has dtype Double");
  ExpectTorchError([] { ops::Nf4Quantize(at::Tensor(), false); }, "undefined");
  at::Tensor bad = at::randn({2, 64});
  bad[1][5] = std::nan("");
  ExpectTorchError([&] { ops::Nf4Quantize(bad, false); }, "NaN or infinite");
}

TEST(Nf4Op, DequantizeErrors) {
  ops::Nf4Weight q = ops::Nf4Quantize(at::randn({4, 64}), false);
  ExpectTorchError([&] { ops::Nf4Dequantize(q, at::kDouble); },
                   "NF4 dequantises to float32, bfloat16 or float16");
  ops::Nf4Weight wrong_shape = q;
  wrong_shape.shape = {4, 32};
  ExpectTorchError([&] { ops::Nf4Dequantize(wrong_shape); },
                   "packed has 128 elements, expected 64");
  ops::Nf4Weight no_scale = q;
  no_scale.absmax = at::Tensor();
  ExpectTorchError([&] { ops::Nf4Dequantize(no_scale); }, "absmax is undefined");
  ExpectTorchError([] { ops::Nf4Dequantize(ops::Nf4Weight{}); }, "no packed codes");
}

// Nf4Linear against at::linear on the dequantised weight, both in `dtype`.
void CheckLinear(const std::vector<int64_t>& x_shape, int64_t out, bool with_bias,
                 bool double_quant, at::ScalarType dtype, double tol) {
  SCOPED_TRACE(testing::DtypeName(dtype) + (with_bias ? " bias" : " no bias") +
               (double_quant ? " dq" : ""));
  const int64_t in = x_shape.back();
  at::Tensor w = at::randn({out, in}).to(dtype);
  const ops::Nf4Weight q = ops::Nf4Quantize(w, double_quant);
  const at::Tensor wd = ops::Nf4Dequantize(q, dtype);
  at::Tensor x0 = at::randn(x_shape).to(dtype);
  at::Tensor b0 = at::randn({out}).to(dtype);
  std::vector<int64_t> y_shape = x_shape;
  y_shape.back() = out;
  at::Tensor dy = at::randn(y_shape).to(dtype);

  at::Tensor x = x0.clone().requires_grad_(true);
  at::Tensor b = with_bias ? b0.clone().requires_grad_(true) : at::Tensor();
  at::Tensor y = ops::Nf4Linear(x, q, b);
  ASSERT_EQ(y.sizes(), at::IntArrayRef(y_shape));
  ASSERT_EQ(y.scalar_type(), dtype);
  y.backward(dy);

  at::Tensor xr = x0.clone().requires_grad_(true);
  at::Tensor br = with_bias ? b0.clone().requires_grad_(true) : at::Tensor();
  at::Tensor yr = at::linear(xr, wd, with_bias ? c10::optional<at::Tensor>(br) : c10::nullopt);
  yr.backward(dy);
  EXPECT_LE(RelMaxErr(y, yr), tol) << "y";
  EXPECT_LE(RelMaxErr(x.grad(), xr.grad()), tol) << "dx";
  // dx = dy W_deq in fp64. LibTorch 1.13's CPU bf16 matmul rounds partial
  // sums to bf16 (about 2.5e-2 here over 123 terms), so bf16 gets more room.
  at::Tensor dx64 = at::matmul(dy.to(at::kDouble), wd.to(at::kDouble));
  const double tol64 = dtype == at::kBFloat16 ? 5e-2 : tol;
  EXPECT_LE(RelMaxErr(x.grad(), dx64), tol64) << "dx vs fp64";
  if (with_bias) {
    EXPECT_LE(RelMaxErr(b.grad(), br.grad()), tol) << "dbias";
  }
}

TEST(Nf4Op, LinearMatchesDequantizedLinear) {
  at::manual_seed(4);
  for (bool bias : {false, true}) {
    for (bool dq : {false, true}) {
      CheckLinear({5, 7, 192}, 123, bias, dq, at::kFloat, 1e-5);
      CheckLinear({5, 7, 192}, 123, bias, dq, at::kBFloat16, 1e-2);
    }
  }
  CheckLinear({11, 64}, 1, true, false, at::kFloat, 1e-5);
  CheckLinear({64}, 3, true, true, at::kFloat, 1e-5);  // a single vector
}

TEST(Nf4Op, LinearFreezesWeightAndSavesNoInput) {
  at::manual_seed(5);
  const ops::Nf4Weight q = ops::Nf4Quantize(at::randn({32, 64}), true);
  const at::Tensor packed0 = q.packed.clone();
  // x without grad, bias with: only the bias gradient is made.
  at::Tensor x = at::randn({3, 64});
  at::Tensor b = at::zeros({32}).requires_grad_(true);
  at::Tensor y = ops::Nf4Linear(x, q, b);
  y.sum().backward();
  EXPECT_FALSE(x.grad().defined());
  ASSERT_TRUE(b.grad().defined());
  EXPECT_TRUE(at::allclose(b.grad(), at::full({32}, 3.0f)));
  EXPECT_TRUE(at::equal(q.packed, packed0));
  // Nothing requires grad: no graph at all.
  at::Tensor y2 = ops::Nf4Linear(x, q, at::Tensor());
  EXPECT_FALSE(y2.requires_grad());
  // Changing x in place after forward is fine: x is not saved for backward
  // (autograd would refuse a saved tensor modified in place).
  at::Tensor x3 = at::randn({3, 64}).requires_grad_(true);
  at::Tensor x3v = x3 * 1.0;
  at::Tensor y3 = ops::Nf4Linear(x3v, q, at::Tensor());
  {
    at::NoGradGuard no_grad;
    x3v.mul_(2.0);
  }
  y3.sum().backward();
  at::Tensor expect = at::ones({3, 32}).matmul(ops::Nf4Dequantize(q));
  EXPECT_LE(RelMaxErr(x3.grad(), expect), 1e-6);
  // A second backward through a retained graph gives the same gradient again.
  at::Tensor x4 = at::randn({2, 64}).requires_grad_(true);
  at::Tensor y4 = ops::Nf4Linear(x4, q, at::Tensor());
  y4.sum().backward({}, /*retain_graph=*/true);
  const at::Tensor g1 = x4.grad().clone();
  y4.sum().backward();
  EXPECT_TRUE(at::allclose(x4.grad(), 2 * g1));
}

TEST(Nf4Op, LinearErrors) {
  const ops::Nf4Weight q = ops::Nf4Quantize(at::randn({32, 64}), false);
  ExpectTorchError([&] { ops::Nf4Linear(at::randn({3, 63}), q, at::Tensor()); },
                   "x has shape [3, 63] but the weight has shape [32, 64]");
  ExpectTorchError([&] { ops::Nf4Linear(at::randn({3, 64}), q, at::randn({31})); },
                   "bias has shape [31]");
  ExpectTorchError(
      [&] { ops::Nf4Linear(at::randn({3, 64}), q, at::randn({32}, at::kBFloat16)); },
      "bias has dtype");
  ExpectTorchError([&] { ops::Nf4Linear(at::randn({3, 64}, at::kDouble), q, at::Tensor()); },
                   "nf4 linear: x has dtype Double");
  const ops::Nf4Weight q3 = ops::Nf4Quantize(at::randn({2, 2, 64}), false);
  ExpectTorchError([&] { ops::Nf4Linear(at::randn({3, 64}), q3, at::Tensor()); },
                   "a linear weight is (out, in)");
}

}  // namespace
}  // namespace foak

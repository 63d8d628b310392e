// The cross_entropy op on CUDA against an fp64 reference (autograd of the
// composite in double on the GPU, from the same rounded logits) and against
// the plain LibTorch composite (fp32 upcast), for every dtype, option and
// reduction, at odd shapes including a 256k vocabulary. Free memory is
// poisoned with NaN first. Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <string>

#include "gtest/gtest.h"
#include "kernels/cross_entropy/cross_entropy_op.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/loss_reference.h"

namespace foak {
namespace {

using ops::LossOptions;
using ops::LossReduction;
using testing::RelMaxErr;
using testing::RelNormErr;

struct Case {
  std::string name;
  int64_t n, v;
  at::ScalarType dtype;
  bool all_options;
  LossReduction reduction;
};

// The gradient is stored in the logits' dtype. Divided by the token count,
// most of an fp16 gradient row sits in fp16's subnormal range (the composite
// loses the same digits), hence fp16's looser bound.
double GradTol(at::ScalarType t) {
  return t == at::kFloat ? 1e-5 : (t == at::kHalf ? 5e-3 : 4e-3);
}

class CrossEntropyCuda : public ::testing::TestWithParam<Case> {};

TEST_P(CrossEntropyCuda, MatchesFp64AndComposite) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  auto opts = at::TensorOptions().device(at::kCUDA);
  at::Tensor z = (4.0 * at::randn({c.n, c.v}, opts)).to(c.dtype);
  at::Tensor labels = at::randint(0, c.v, {c.n}, opts.dtype(at::kLong));
  labels.index_put_({at::arange(0, c.n, 5, opts.dtype(at::kLong))}, -100);
  LossOptions o;
  o.reduction = c.reduction;
  if (c.all_options) {
    o.label_smoothing = 0.1;
    o.z_loss = 1e-4;
    o.softcap = 10.0;
    o.logit_scale = 0.5;
  }
  at::Tensor z64 = z.to(at::kDouble).requires_grad_(true);
  auto [rows, zrows] = testing::CompositeRowLosses(z64, labels, o);
  at::Tensor want = testing::CompositeReduce(rows, labels, o);
  at::Tensor go = want.dim() == 0 ? at::full({}, 2.0, opts.dtype(at::kDouble))
                                  : at::rand(want.sizes(), opts.dtype(at::kDouble));
  want.backward(go);

  at::Tensor zc = z.clone().requires_grad_(true);
  auto [rows_c, zr_c] = testing::CompositeRowLosses(zc.to(at::kFloat), labels, o);
  testing::CompositeReduce(rows_c, labels, o).backward(go.to(at::kFloat));

  testing::Poison(z.device());
  at::Tensor leaf = z.clone().requires_grad_(true);
  at::Tensor logits = leaf * 1;  // the op overwrites it with the gradient
  ops::LossResult got = ops::CrossEntropy(logits, labels, o);
  got.loss.backward(go.to(at::kFloat));
  EXPECT_LE(RelMaxErr(got.loss, want), 1e-5) << "loss";
  EXPECT_LE(RelMaxErr(got.z_loss, testing::CompositeReduce(zrows, labels, o), 1e-12), 1e-4);
  EXPECT_LE(RelNormErr(leaf.grad(), z64.grad()), GradTol(c.dtype)) << "dlogits vs fp64";
  EXPECT_LE(RelNormErr(leaf.grad(), zc.grad()), GradTol(c.dtype) + RelNormErr(zc.grad(), z64.grad()))
      << "dlogits vs composite";
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, CrossEntropyCuda,
    ::testing::Values(Case{"fp32", 615, 32003, at::kFloat, true, LossReduction::kMean},
                      Case{"bf16", 615, 32003, at::kBFloat16, true, LossReduction::kMean},
                      Case{"fp16", 615, 32003, at::kHalf, true, LossReduction::kMean},
                      Case{"bf16_sum_plain", 123, 32003, at::kBFloat16, false, LossReduction::kSum},
                      Case{"fp32_none", 123, 5003, at::kFloat, true, LossReduction::kNone},
                      Case{"bf16_vocab_256000", 64, 256000, at::kBFloat16, false,
                           LossReduction::kMean},
                      Case{"fp32_vocab_256000", 16, 256000, at::kFloat, true,
                           LossReduction::kMean}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace foak

// The cross_entropy op on the CPU (its reference) against LibTorch autograd of
// the composite in fp64, for every option and reduction; the in-place
// gradient, grad_output scaling, no-grad evaluation and the input errors.
#include <ATen/ATen.h>
#include <torch/autograd.h>

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

struct Case {
  const char* name;
  LossOptions o;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (LossReduction r : {LossReduction::kMean, LossReduction::kSum, LossReduction::kNone}) {
    LossOptions o;
    o.reduction = r;
    cases.push_back({"plain", o});
    LossOptions all = o;
    all.label_smoothing = 0.1;
    all.z_loss = 1e-3;
    all.softcap = 4.0;
    all.logit_scale = 0.25;
    cases.push_back({"smoothing+zloss+softcap+scale", all});
  }
  LossOptions norm;
  norm.normalizer = 57.0;
  cases.push_back({"normalizer", norm});
  LossOptions ign;
  ign.ignore_index = 3;  // a non-default ignore index
  cases.push_back({"ignore_index=3", ign});
  return cases;
}

TEST(CrossEntropyOp, MatchesFp64CompositeForEveryOption) {
  at::manual_seed(21);
  const int64_t n = 37, v = 1031;
  at::Tensor z = 3.0 * at::randn({n, v}, at::kDouble);
  at::Tensor base_labels = at::randint(0, v, {n}, at::kLong);
  base_labels.index_put_({at::arange(0, n, 5)}, -100);
  base_labels[1] = 3;
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const at::Tensor labels = base_labels.masked_fill(base_labels.eq(-100), c.o.ignore_index);
    at::Tensor z64 = z.clone().requires_grad_(true);
    auto [rows, zrows] = testing::CompositeRowLosses(z64, labels, c.o);
    at::Tensor want = testing::CompositeReduce(rows, labels, c.o);
    at::Tensor want_z = testing::CompositeReduce(zrows, labels, c.o);
    at::Tensor go = want.dim() == 0 ? at::full({}, 1.5, at::kDouble) : at::randn({n}, at::kDouble);
    want.backward(go);

    at::Tensor z32 = z.to(at::kFloat).requires_grad_(true);
    at::Tensor logits = z32 * 1.0;  // a non-leaf the op may overwrite
    ops::LossResult got = ops::CrossEntropy(logits, labels, c.o);
    EXPECT_LE(RelMaxErr(got.loss, want), 1e-5);
    EXPECT_LE(RelMaxErr(got.z_loss, want_z, 1e-12), 1e-5);
    EXPECT_FALSE(got.z_loss.requires_grad());
    got.loss.backward(go.to(at::kFloat));
    EXPECT_LE(RelMaxErr(z32.grad(), z64.grad()), 1e-5);
  }
}

TEST(CrossEntropyOp, GradientIsWrittenOverTheLogitsUnlessAskedNotTo) {
  at::manual_seed(22);
  at::Tensor leaf = at::randn({6, 50}).requires_grad_(true);
  at::Tensor labels = at::randint(0, 50, {6}, at::kLong);
  at::Tensor logits = leaf * 1.0;
  at::Tensor before = logits.detach().clone();
  ops::LossResult r = ops::CrossEntropy(logits, labels, {});
  EXPECT_FALSE(at::equal(logits.detach(), before)) << "in place: the logits hold the gradient";
  r.loss.backward();
  EXPECT_TRUE(at::allclose(leaf.grad(), logits.detach()))
      << leaf.grad().slice(1, 0, 4) << logits.detach().slice(1, 0, 4);

  at::Tensor leaf2 = before.clone().requires_grad_(true);
  at::Tensor logits2 = leaf2 * 1.0;
  ops::LossResult r2 = ops::CrossEntropy(logits2, labels, {}, /*inplace_grad=*/false);
  EXPECT_TRUE(at::equal(logits2.detach(), before));
  r2.loss.backward();
  EXPECT_TRUE(at::allclose(leaf2.grad(), leaf.grad(), 1e-6, 1e-7));
}

TEST(CrossEntropyOp, SecondBackwardIsRefusedWithAReason) {
  at::Tensor leaf = at::randn({3, 7}).requires_grad_(true);
  at::Tensor loss = ops::CrossEntropy(leaf * 1.0, at::tensor({1, 2, 3}, at::kLong), {}).loss;
  loss.backward({}, /*retain_graph=*/true);
  testing::ExpectTorchError([&] { loss.backward(); }, "retain_graph");
}

TEST(CrossEntropyOp, NoGradLeavesLogitsAlone) {
  at::Tensor logits = at::randn({4, 9}).requires_grad_(true);
  at::Tensor labels = at::tensor({0, 1, -100, 8}, at::kLong);
  at::Tensor before = logits.detach().clone();
  at::NoGradGuard no_grad;
  ops::LossResult r = ops::CrossEntropy(logits, labels, {});
  EXPECT_TRUE(at::equal(logits.detach(), before));
  EXPECT_FALSE(r.loss.requires_grad());
  auto [rows, z] = testing::CompositeRowLosses(before.to(at::kDouble), labels, {});
  EXPECT_NEAR(r.loss.item<double>(), rows.sum().item<double>() / 3.0, 1e-5);
}

TEST(CrossEntropyOp, OutOfRangeLabelGivesNaN) {
  at::Tensor logits = at::randn({2, 9});
  ops::LossOptions o;
  o.reduction = ops::LossReduction::kNone;
  ops::LossResult r = ops::CrossEntropy(logits, at::tensor({9, 1}, at::kLong), o);
  EXPECT_TRUE(std::isnan(r.loss[0].item<float>()));
  EXPECT_FALSE(std::isnan(r.loss[1].item<float>()));
}

TEST(CrossEntropyOp, RejectsBadInput) {
  at::Tensor logits = at::randn({4, 9});
  auto expect_error = [](auto fn, const std::string& needle) { testing::ExpectTorchError(fn, needle); };
  expect_error([&] { ops::CrossEntropy(logits, at::zeros({4}, at::kInt), {}); }, "int64");
  expect_error([&] { ops::CrossEntropy(logits, at::zeros({5}, at::kLong), {}); }, "one label per row");
  ops::LossOptions bad;
  bad.label_smoothing = 1.0;
  expect_error([&] { ops::CrossEntropy(logits, at::zeros({4}, at::kLong), bad); }, "label_smoothing");
  expect_error([&] { ops::CrossEntropy(logits.to(at::kDouble), at::zeros({4}, at::kLong), {}); },
               "float32, bfloat16 or float16");
}

}  // namespace
}  // namespace foak

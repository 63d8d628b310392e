// The fused linear cross-entropy on the CPU (its reference) against LibTorch
// autograd of the composite (x W^T, then the loss) in fp64: every option and
// reduction, compaction of ignored rows with and without the host count,
// forced small chunks, a frozen head, tied embeddings, gradient accumulation
// with an external normaliser, and the input errors.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <string>

#include "gtest/gtest.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy_op.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/loss_reference.h"

namespace foak {
namespace {

using ops::FusedLinearCrossEntropyOptions;
using ops::LossReduction;
using testing::RelMaxErr;

struct Inputs {
  at::Tensor x, w, labels;  // fp64 x (N, H), w (V, H); labels (N)
  int64_t valid = 0;
};

Inputs MakeInputs(int64_t n, int64_t h, int64_t v, uint64_t seed) {
  at::manual_seed(seed);
  Inputs in;
  in.x = at::randn({n, h}, at::kDouble);
  in.w = 0.3 * at::randn({v, h}, at::kDouble);
  in.labels = at::randint(0, v, {n}, at::kLong);
  in.labels.index_put_({at::arange(1, n, 4)}, -100);
  in.valid = in.labels.ne(-100).sum().item<int64_t>();
  return in;
}

void ExpectMatchesComposite(const Inputs& in, const FusedLinearCrossEntropyOptions& o,
                            bool x_grad, bool w_grad) {
  at::Tensor x64 = in.x.clone().requires_grad_(x_grad), w64 = in.w.clone().requires_grad_(w_grad);
  auto [rows, zrows] = testing::CompositeRowLosses(at::matmul(x64, w64.t()), in.labels, o.loss);
  at::Tensor want = testing::CompositeReduce(rows, in.labels, o.loss);
  at::Tensor want_z = testing::CompositeReduce(zrows, in.labels, o.loss);
  at::Tensor go = want.dim() == 0 ? at::full({}, 0.7, at::kDouble) : at::randn(want.sizes(), at::kDouble);
  want.backward(go);

  at::Tensor x32 = in.x.to(at::kFloat).requires_grad_(x_grad);
  at::Tensor w32 = in.w.to(at::kFloat).requires_grad_(w_grad);
  ops::LossResult got = ops::FusedLinearCrossEntropy(x32, w32, in.labels, o);
  EXPECT_LE(RelMaxErr(got.loss, want), 1e-5);
  EXPECT_LE(RelMaxErr(got.z_loss, want_z, 1e-12), 1e-5);
  got.loss.backward(go.to(at::kFloat));
  if (x_grad) {
    EXPECT_LE(RelMaxErr(x32.grad(), x64.grad()), 1e-5);
  } else {
    EXPECT_FALSE(x32.grad().defined());
  }
  if (w_grad) {
    EXPECT_LE(RelMaxErr(w32.grad(), w64.grad()), 1e-5);
  } else {
    EXPECT_FALSE(w32.grad().defined());
  }
}

TEST(FusedLinearCrossEntropyOp, MatchesFp64CompositeForEveryOptionAndReduction) {
  const Inputs in = MakeInputs(29, 24, 157, 31);
  for (LossReduction r : {LossReduction::kMean, LossReduction::kSum, LossReduction::kNone}) {
    for (bool all_options : {false, true}) {
      for (bool hint : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "reduction " << static_cast<int>(r) << " options "
                                        << all_options << " hint " << hint);
        FusedLinearCrossEntropyOptions o;
        o.loss.reduction = r;
        if (all_options) {
          o.loss.label_smoothing = 0.05;
          o.loss.z_loss = 1e-3;
          o.loss.softcap = 3.0;
          o.loss.logit_scale = 0.5;
        }
        if (hint) o.num_valid = in.valid;
        ExpectMatchesComposite(in, o, true, true);
      }
    }
  }
}

TEST(FusedLinearCrossEntropyOp, FrozenHeadAndFrozenInput) {
  const Inputs in = MakeInputs(17, 16, 61, 32);
  FusedLinearCrossEntropyOptions o;
  o.num_valid = in.valid;
  ExpectMatchesComposite(in, o, /*x_grad=*/true, /*w_grad=*/false);
  ExpectMatchesComposite(in, o, /*x_grad=*/false, /*w_grad=*/true);
}

TEST(FusedLinearCrossEntropyOp, NormaliserAccumulatesAcrossMicroBatches) {
  // Two micro-batches each divided by the step's total target count give the
  // gradient of the mean over both.
  const Inputs a = MakeInputs(13, 8, 40, 33), b = MakeInputs(11, 8, 40, 34);
  at::Tensor w_ref = a.w.clone().requires_grad_(true);
  at::Tensor x_all = at::cat({a.x, b.x});
  at::Tensor l_all = at::cat({a.labels, b.labels});
  auto [rows, z] = testing::CompositeRowLosses(at::matmul(x_all, w_ref.t()), l_all, {});
  at::Tensor mean = testing::CompositeReduce(rows, l_all, {});
  mean.backward();

  at::Tensor w32 = a.w.to(at::kFloat).requires_grad_(true);
  FusedLinearCrossEntropyOptions o;
  o.loss.normalizer = static_cast<double>(a.valid + b.valid);
  at::Tensor total = at::zeros({}, at::kFloat);
  for (const Inputs* in : {&a, &b}) {
    ops::LossResult r = ops::FusedLinearCrossEntropy(in->x.to(at::kFloat), w32, in->labels, o);
    r.loss.backward();
    total += r.loss.detach();
  }
  EXPECT_LE(RelMaxErr(total, mean), 1e-5);
  EXPECT_LE(RelMaxErr(w32.grad(), w_ref.grad()), 1e-5);
}

TEST(FusedLinearCrossEntropyOp, TiedEmbeddingGradientsAdd) {
  const Inputs in = MakeInputs(9, 12, 30, 35);
  at::Tensor ids = at::randint(0, 30, {9}, at::kLong);
  at::Tensor w64 = in.w.clone().requires_grad_(true);
  auto [rows, z] = testing::CompositeRowLosses(at::matmul(w64.index_select(0, ids), w64.t()),
                                               in.labels, {});
  testing::CompositeReduce(rows, in.labels, {}).backward();

  at::Tensor w32 = in.w.to(at::kFloat).requires_grad_(true);
  at::Tensor hidden = w32.index_select(0, ids);  // the embedding lookup
  ops::FusedLinearCrossEntropy(hidden, w32, in.labels, {}).loss.backward();
  EXPECT_LE(RelMaxErr(w32.grad(), w64.grad()), 1e-5);
}

TEST(FusedLinearCrossEntropyOp, ChunkRowsFollowTheBudget) {
  const int64_t budget = int64_t{464} << 20;
  // bf16 logits: 1856 rows fit at V = 128256; 8192 rows take 5 chunks of 1664.
  EXPECT_EQ(FusedLinearCrossEntropyChunkRows(8192, 128256, 2, budget), 1664);
  EXPECT_EQ(FusedLinearCrossEntropyChunkRows(2048, 128256, 2, budget), 1024);
  EXPECT_EQ(FusedLinearCrossEntropyChunkRows(8192, 256000, 2, budget), 832);
  EXPECT_EQ(FusedLinearCrossEntropyChunkRows(8192, 128256, 4, budget), 832);
  EXPECT_EQ(FusedLinearCrossEntropyChunkRows(100, 128256, 2, budget), 128);
  EXPECT_EQ(FusedLinearCrossEntropyChunkRows(8192, 128256, 2, 1), 64);
}

TEST(FusedLinearCrossEntropyOp, ThreeDimensionalInputsAndNoGrad) {
  const Inputs in = MakeInputs(12, 8, 33, 36);
  at::Tensor x3 = in.x.to(at::kFloat).view({3, 4, 8});
  at::Tensor l2 = in.labels.view({3, 4});
  at::NoGradGuard no_grad;
  FusedLinearCrossEntropyOptions o;
  o.loss.reduction = LossReduction::kNone;
  ops::LossResult r = ops::FusedLinearCrossEntropy(x3, in.w.to(at::kFloat), l2, o);
  EXPECT_EQ(r.loss.sizes(), l2.sizes());
  auto [rows, z] = testing::CompositeRowLosses(at::matmul(in.x, in.w.t()), in.labels, o.loss);
  EXPECT_LE(RelMaxErr(r.loss.reshape({-1}), rows), 1e-5);
}

TEST(FusedLinearCrossEntropyOp, SecondBackwardIsRefusedWithAReason) {
  const Inputs in = MakeInputs(6, 8, 20, 37);
  at::Tensor x = in.x.to(at::kFloat).requires_grad_(true);
  at::Tensor loss = ops::FusedLinearCrossEntropy(x, in.w.to(at::kFloat), in.labels, {}).loss;
  loss.backward({}, /*retain_graph=*/true);
  testing::ExpectTorchError([&] { loss.backward(); }, "retain_graph");
}

TEST(FusedLinearCrossEntropyOp, RejectsBadInput) {
  at::Tensor x = at::randn({4, 8}), w = at::randn({10, 8});
  at::Tensor labels = at::zeros({4}, at::kLong);
  auto expect_error = [](auto fn, const std::string& needle) { testing::ExpectTorchError(fn, needle); };
  expect_error([&] { ops::FusedLinearCrossEntropy(x, at::randn({10, 7}), labels, {}); },
               "expected (V, 8)");
  expect_error([&] { ops::FusedLinearCrossEntropy(x, w.to(at::kHalf), labels, {}); }, "dtype");
  expect_error([&] { ops::FusedLinearCrossEntropy(x, w, at::zeros({5}, at::kLong), {}); },
               "one label per row");
  FusedLinearCrossEntropyOptions o;
  o.num_valid = 5;
  expect_error([&] { ops::FusedLinearCrossEntropy(x, w, labels, o); }, "num_valid");
}

}  // namespace
}  // namespace foak

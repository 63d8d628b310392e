// The fused linear cross-entropy on CUDA against an fp64 reference (autograd
// of x W^T + the loss composite, in double on the GPU from the same rounded
// inputs) and against the plain LibTorch composite in the input dtype: every
// dtype, odd shapes (V = 32003, H = 123), several chunks, all options,
// compaction with and without the host count, reduction 'none', a frozen
// head, and the memory bound (no (N, V) logits). Free memory is poisoned with
// NaN before each run. Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#ifdef FOAK_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <string>

#include "gtest/gtest.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy_op.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/loss_reference.h"

namespace foak {
namespace {

using ops::FusedLinearCrossEntropyOptions;
using ops::LossReduction;
using testing::RelMaxErr;
using testing::RelNormErr;

struct Case {
  std::string name;
  int64_t n, h, v;
  at::ScalarType dtype;
  bool all_options = false;
  LossReduction reduction = LossReduction::kMean;
  bool hint = true;
  int64_t chunk_rows = 0;
  bool w_grad = true;
};

// Tolerances: loss relative to its magnitude; gradients as relative norm
// error (the targets' measure; eager bf16 itself sits near 1.7e-3). Like the
// eager head, the op keeps bf16/fp16 inputs' logits in their dtype: a row's
// loss moves by ~|logit| 2^-9 (bf16), which a mean over hundreds of rows
// averages down and reduction 'none' does not.
double LossTol(at::ScalarType t, LossReduction r) {
  if (t == at::kFloat) return 1e-5;
  const double bf16 = r == LossReduction::kNone ? 1e-3 : 3e-5;
  return t == at::kBFloat16 ? bf16 : bf16 / 4;
}
double GradTol(at::ScalarType t) {
  return t == at::kFloat ? 1e-5 : (t == at::kHalf ? 1e-3 : 4e-3);
}

class FlceCuda : public ::testing::TestWithParam<Case> {};

TEST_P(FlceCuda, MatchesFp64AndComposite) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  auto opts = at::TensorOptions().device(at::kCUDA);
  at::Tensor x = at::randn({c.n, c.h}, opts.dtype(c.dtype));
  at::Tensor w = (0.05 * at::randn({c.v, c.h}, opts)).to(c.dtype);
  at::Tensor labels = at::randint(0, c.v, {c.n}, opts.dtype(at::kLong));
  labels.index_put_({at::arange(2, c.n, 7, opts.dtype(at::kLong))}, -100);
  const int64_t valid = labels.ne(-100).sum().item<int64_t>();

  FusedLinearCrossEntropyOptions o;
  o.loss.reduction = c.reduction;
  if (c.all_options) {
    o.loss.label_smoothing = 0.1;
    o.loss.z_loss = 1e-4;
    o.loss.softcap = 30.0;
    o.loss.logit_scale = 1.0 / 1.7;
  }
  if (c.hint) o.num_valid = valid;
  o.chunk_rows = c.chunk_rows;

  // fp64 reference.
  at::Tensor x64 = x.to(at::kDouble).requires_grad_(true);
  at::Tensor w64 = w.to(at::kDouble).requires_grad_(c.w_grad);
  auto [rows64, z64] = testing::CompositeRowLosses(at::matmul(x64, w64.t()), labels, o.loss);
  at::Tensor want = testing::CompositeReduce(rows64, labels, o.loss);
  at::Tensor go = want.dim() == 0 ? at::full({}, 1.0, opts.dtype(at::kDouble))
                                  : at::rand(want.sizes(), opts.dtype(at::kDouble));
  want.backward(go);

  // The composite in the input dtype (logits in the dtype, loss in fp32).
  at::Tensor xc = x.clone().requires_grad_(true), wc = w.clone().requires_grad_(c.w_grad);
  auto [rows_c, zc] = testing::CompositeRowLosses(at::matmul(xc, wc.t()).to(at::kFloat), labels, o.loss);
  at::Tensor loss_c = testing::CompositeReduce(rows_c, labels, o.loss);
  loss_c.backward(go.to(at::kFloat));

  testing::Poison(x.device());
  at::Tensor xf = x.clone().requires_grad_(true), wf = w.clone().requires_grad_(c.w_grad);
  ops::LossResult got = ops::FusedLinearCrossEntropy(xf, wf, labels, o);
  got.loss.backward(go.to(at::kFloat));

  // Against the composite: within the triangle bound of the two errors
  // against fp64 (the fp16 composite loses its gradients to subnormals, see
  // the header of fused_linear_cross_entropy.h; the op does not).
  // Loss: within the dtype's tolerance, or at most 25% above the eager
  // composite's own error (its logits are rounded to the dtype as the op's
  // chunks are; at H = 4096 that alone can exceed 3e-5 in bf16).
  const double loss_comp = RelMaxErr(loss_c.detach(), want);
  EXPECT_LE(RelMaxErr(got.loss, want), std::max(LossTol(c.dtype, c.reduction), 1.25 * loss_comp))
      << "loss (composite: " << loss_comp << ")";
  // Gradients: within the dtype's tolerance, or at most 25% above the error
  // of the eager composite itself (large logits, e.g. at H = 4096, leave
  // bf16 gradients of both a little over 4e-3).
  const double dx_comp = RelNormErr(xc.grad(), x64.grad());
  EXPECT_LE(RelNormErr(xf.grad(), x64.grad()), std::max(GradTol(c.dtype), 1.25 * dx_comp))
      << "dx vs fp64 (composite: " << dx_comp << ")";
  EXPECT_LE(RelNormErr(xf.grad(), xc.grad()), std::max(GradTol(c.dtype), 1.25 * dx_comp) + dx_comp)
      << "dx vs composite";
  if (c.w_grad) {
    EXPECT_EQ(wf.grad().scalar_type(), c.dtype);
    const double dw_comp = RelNormErr(wc.grad(), w64.grad());
    EXPECT_LE(RelNormErr(wf.grad(), w64.grad()), std::max(GradTol(c.dtype), 1.25 * dw_comp))
        << "dW vs fp64 (composite: " << dw_comp << ")";
    EXPECT_LE(RelNormErr(wf.grad(), wc.grad()), std::max(GradTol(c.dtype), 1.25 * dw_comp) + dw_comp)
        << "dW vs composite";
  } else {
    EXPECT_FALSE(wf.grad().defined());
  }
  if (c.all_options) {
    auto zw = testing::CompositeReduce(z64, labels, o.loss);
    EXPECT_LE(RelMaxErr(got.z_loss, zw, 1e-12), 1e-4) << "z_loss";
  }
}

std::string Name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    OddShapes, FlceCuda,
    ::testing::Values(
        Case{"fp32_all_options", 615, 123, 32003, at::kFloat, true},
        Case{"bf16_all_options", 615, 123, 32003, at::kBFloat16, true},
        Case{"fp16_all_options", 615, 123, 32003, at::kHalf, true},
        Case{"bf16_chunks_of_64_no_hint_sum", 615, 128, 32003, at::kBFloat16, false,
             LossReduction::kSum, false, 64},
        Case{"fp32_chunks_of_64_none", 300, 64, 5003, at::kFloat, true, LossReduction::kNone,
             true, 64},
        Case{"bf16_none_no_hint", 300, 64, 5003, at::kBFloat16, true, LossReduction::kNone,
             false},
        Case{"bf16_frozen_head", 615, 123, 32003, at::kBFloat16, false, LossReduction::kMean,
             true, 0, false},
        Case{"bf16_llama_width", 1024, 4096, 8192, at::kBFloat16, false}),
    Name);

TEST(FlceCudaMemory, NeverHoldsTheFullLogits) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
#ifdef FOAK_WITH_CUDA
  const int64_t n = 8192, h = 256, v = 32000;
  auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  at::Tensor x = at::randn({n, h}, opts).requires_grad_(true);
  at::Tensor w = (0.05 * at::randn({v, h}, opts)).detach().requires_grad_(true);
  at::Tensor labels = at::randint(0, v, {n}, opts.dtype(at::kLong));
  FusedLinearCrossEntropyOptions o;
  o.chunk_rows = 512;
  o.num_valid = n;
  torch::cuda::synchronize();
  const int64_t base = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  ops::FusedLinearCrossEntropy(x, w, labels, o).loss.backward();
  torch::cuda::synchronize();
  const int64_t peak = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak;
  const double logits_bytes = 2.0 * n * v;  // the bf16 logits an eager head would hold
  EXPECT_LT(static_cast<double>(peak - base), 0.5 * logits_bytes)
      << "peak extra " << (peak - base) << " bytes";
#endif
}

}  // namespace
}  // namespace foak

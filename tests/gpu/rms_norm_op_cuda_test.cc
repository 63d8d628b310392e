// The rms_norm op on CUDA against an fp64 reference (autograd of the
// composite on the CPU, from the same rounded inputs) and against the plain
// LibTorch composite in the same dtype, forward and backward, per dtype, at
// odd shapes; free memory is poisoned with NaN before each run and inputs are
// fresh random draws. Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <string>

#include "gtest/gtest.h"
#include "kernels/rms_norm/rms_norm_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::DtypeName;
using testing::RelMaxErr;

struct Case {
  std::vector<int64_t> shape;  // (..., H)
  at::ScalarType dtype;
  double tol;  // vs fp64, relative to the largest reference magnitude
};

at::Tensor Composite(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, true) + eps);
  return w * h.to(x.scalar_type());
}

class RmsNormOpCuda : public ::testing::TestWithParam<Case> {};

TEST_P(RmsNormOpCuda, MatchesFp64AndComposite) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  const double eps = 1e-5;
  const int64_t hidden = c.shape.back();
  auto opts = at::TensorOptions().dtype(c.dtype).device(at::kCUDA);
  at::Tensor x = at::randn(c.shape, opts);
  at::Tensor w = (1.0 + 0.1 * at::randn({hidden}, opts));
  at::Tensor dy = at::randn(c.shape, opts);

  // fp64 reference from the same rounded inputs.
  at::Tensor x64 = x.to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor w64 = w.to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor y64 = w64 * (x64 * at::rsqrt(x64.pow(2).mean(-1, true) + eps));
  y64.backward(dy.to(at::kCPU, at::kDouble));

  for (bool weight_grad : {true, false}) {
    testing::Poison(x.device());
    at::Tensor xf = x.clone().requires_grad_(true);
    at::Tensor wf = w.clone().requires_grad_(weight_grad);
    at::Tensor y = ops::RmsNorm(xf, wf, eps);
    y.backward(dy);
    EXPECT_LE(RelMaxErr(y, y64), c.tol) << "y";
    EXPECT_LE(RelMaxErr(xf.grad(), x64.grad()), c.tol) << "dx";
    if (weight_grad) {
      EXPECT_LE(RelMaxErr(wf.grad(), w64.grad()), c.tol) << "dw";
    } else {
      EXPECT_FALSE(wf.grad().defined());
    }

    // The composite in the same dtype lands within the same tolerance.
    at::Tensor xc = x.clone().requires_grad_(true);
    at::Tensor wc = w.clone().requires_grad_(weight_grad);
    at::Tensor yc = Composite(xc, wc, eps);
    yc.backward(dy);
    EXPECT_LE(RelMaxErr(y, yc), 2 * c.tol) << "y vs composite";
    EXPECT_LE(RelMaxErr(xf.grad(), xc.grad()), 2 * c.tol) << "dx vs composite";
    if (weight_grad) {
      EXPECT_LE(RelMaxErr(wf.grad(), wc.grad()), 2 * c.tol) << "dw vs composite";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, RmsNormOpCuda,
    ::testing::Values(Case{{5, 123, 123}, at::kFloat, 1e-5}, Case{{5, 123, 123}, at::kBFloat16, 1e-2},
                      Case{{5, 123, 123}, at::kHalf, 2e-3}, Case{{3, 41, 4096}, at::kBFloat16, 1e-2},
                      Case{{1031, 4096}, at::kHalf, 2e-3}, Case{{517, 4096}, at::kFloat, 1e-5},
                      Case{{7, 20000}, at::kBFloat16, 1e-2}),
    [](const ::testing::TestParamInfo<Case>& info) {
      std::string name;
      for (int64_t d : info.param.shape) name += std::to_string(d) + "x";
      return name + DtypeName(info.param.dtype);
    });

}  // namespace
}  // namespace foak

// The rms_norm CUDA kernel against its CPU reference, at odd shapes, per dtype,
// forward and backward (weight gradient on and off). Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/rms_norm/rms_norm.h"
#ifdef FOAK_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace foak {
namespace {

struct Case {
  int64_t rows, hidden;
  at::ScalarType dtype;
  double tol;  // relative to the reference's max |value|
};

ScalarKind KindOf(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return ScalarKind::kBF16;
    case at::kHalf: return ScalarKind::kF16;
    default: return ScalarKind::kF32;
  }
}

// Max |got - want| over max |want| (or over `scale` when that is larger).
double RelErr(const at::Tensor& got, const at::Tensor& want, double scale = 0.0) {
  auto g = got.to(at::kCPU, at::kDouble);
  auto w = want.to(at::kCPU, at::kDouble);
  scale = std::max({1e-12, scale, w.abs().max().item<double>()});
  return (g - w).abs().max().item<double>() / scale;
}

class RmsNormCuda : public ::testing::TestWithParam<Case> {};

TEST_P(RmsNormCuda, MatchesReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
#ifdef FOAK_WITH_CUDA
  const Case c = GetParam();
  at::manual_seed(7);
  auto opts = at::TensorOptions().dtype(c.dtype).device(at::kCUDA);
  auto x = at::randn({c.rows, c.hidden}, opts);
  auto w = (1.0 + 0.1 * at::randn({c.hidden}, at::kFloat)).to(opts);
  auto dy = at::randn({c.rows, c.hidden}, opts);
  RmsNormParams p{c.rows, c.hidden, 1e-6f, KindOf(c.dtype)};

  // Reference on the same (rounded) inputs, in fp32 on the CPU.
  auto xf = x.to(at::kCPU, at::kFloat).contiguous();
  auto wf = w.to(at::kCPU, at::kFloat).contiguous();
  auto dyf = dy.to(at::kCPU, at::kFloat).contiguous();
  auto y_ref = at::empty_like(xf), rstd_ref = at::empty({c.rows}, at::kFloat);
  auto dx_ref = at::empty_like(xf), dw_ref = at::empty_like(wf);
  RmsNormForwardRef(p, xf.data_ptr<float>(), wf.data_ptr<float>(), y_ref.data_ptr<float>(),
                    rstd_ref.data_ptr<float>());
  RmsNormBackwardRef(p, xf.data_ptr<float>(), wf.data_ptr<float>(), rstd_ref.data_ptr<float>(),
                     dyf.data_ptr<float>(), dx_ref.data_ptr<float>(), dw_ref.data_ptr<float>());

  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  auto y = at::empty_like(x);
  auto rstd = at::empty({c.rows}, opts.dtype(at::kFloat));
  RmsNormForwardCuda(p, x.data_ptr(), w.data_ptr(), y.data_ptr(), rstd.data_ptr<float>(), stream);
  auto dx = at::empty_like(x);
  auto dw = at::empty_like(w);
  auto ws = at::empty({RmsNormBackwardWorkspaceRows(p), c.hidden}, opts.dtype(at::kFloat));
  RmsNormBackwardCuda(p, x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(), dy.data_ptr(),
                      dx.data_ptr(), ws.data_ptr<float>(), dw.data_ptr(), stream);
  auto dx_frozen = at::empty_like(x);
  RmsNormBackwardCuda(p, x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(), dy.data_ptr(),
                      dx_frozen.data_ptr(), nullptr, nullptr, stream);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  EXPECT_LE(RelErr(rstd, rstd_ref), 1e-5);
  EXPECT_LE(RelErr(y, y_ref), c.tol) << "y";
  // dx = rstd * (w*dy - x * rstd^2 * mean(w*dy*x)): the two terms cancel
  // when hidden is tiny (hidden 1 leaves eps/(x^2+eps) of them), so dx is
  // compared at the scale of its first term, rstd * w * dy.
  const double dx_scale =
      (rstd_ref.unsqueeze(1) * wf.unsqueeze(0) * dyf).abs().max().item<double>();
  EXPECT_LE(RelErr(dx, dx_ref, dx_scale), c.tol) << "dx";
  EXPECT_LE(RelErr(dw, dw_ref), c.tol) << "dw";
  EXPECT_TRUE(at::equal(dx, dx_frozen)) << "dx must not depend on whether dw is computed";
#endif
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, RmsNormCuda,
    ::testing::Values(Case{5, 123, at::kFloat, 1e-5}, Case{1, 1, at::kFloat, 1e-5},
                      Case{517, 4096, at::kFloat, 1e-5}, Case{5, 123, at::kBFloat16, 1e-2},
                      Case{1031, 2048, at::kBFloat16, 1e-2}, Case{5, 123, at::kHalf, 2e-3},
                      Case{333, 5120, at::kHalf, 2e-3}),
    [](const ::testing::TestParamInfo<Case>& info) {
      return std::to_string(info.param.rows) + "x" + std::to_string(info.param.hidden) + "_" +
             c10::toString(info.param.dtype);
    });

}  // namespace
}  // namespace foak

// The model built with each FOAK kernel on CUDA gives the loss and gradients
// of the plain LibTorch model on CUDA: fp32 within 1e-4 (summation order) and
// bf16 within bf16 tolerance (2e-2 relative norm on gradients, whose rounding
// differs where the fused ops round once instead of per step). Skips without
// a GPU.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "tests/testing/model_kernels_check.h"

namespace foak {
namespace {

TEST(ModelKernelsCuda, EveryKernelSetMatchesPlainLibTorchFp32) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  testing::ExpectKernelSetsMatchPlain(at::TensorOptions().dtype(at::kFloat).device(at::kCUDA),
                                      1e-5, 1e-4);
}

TEST(ModelKernelsCuda, EveryKernelSetMatchesPlainLibTorchBf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  testing::ExpectKernelSetsMatchPlain(
      at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA), 5e-3, 5e-2);
}

}  // namespace
}  // namespace foak

// The model built with each FOAK kernel (their CPU references here) gives the
// loss and gradients of the plain LibTorch model, fp32, within 1e-5.
#include <gtest/gtest.h>

#include "tests/testing/model_kernels_check.h"

namespace foak {
namespace {

TEST(ModelKernels, EveryKernelSetMatchesPlainLibTorchOnCpu) {
  testing::ExpectKernelSetsMatchPlain(at::TensorOptions().dtype(at::kFloat), 1e-5, 1e-5);
}

}  // namespace
}  // namespace foak

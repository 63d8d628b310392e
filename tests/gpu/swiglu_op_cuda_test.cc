// The swiglu op on CUDA against an fp64 reference (autograd of the composite
// at::silu(g) * u on the CPU, from the same rounded inputs) and against the
// plain LibTorch composite in the same dtype, forward and backward, per dtype,
// for each set of gradients autograd can ask for (both, gate only, up only).
// Shapes are odd: numel not a multiple of the 16-byte vector, fewer elements
// than one vector, a long grid-stride loop, gates scaled into sigmoid's
// saturated tails, and inputs at storage offset 1 so their pointers are not
// 16-byte aligned and the scalar kernels run. Free memory is poisoned with NaN
// before each run and inputs are fresh random draws. Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/swiglu/swiglu_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::DtypeName;
using testing::RelMaxErr;

struct Case {
  std::vector<int64_t> shape;  // (..., I)
  at::ScalarType dtype;
  double tol;                  // vs fp64, relative to the largest reference magnitude
  bool misaligned = false;     // inputs at storage offset 1: the scalar kernels
  double gate_scale = 1.0;     // 10 puts many gates where sigmoid saturates
};

// A copy of t at storage offset 1 of a fresh buffer: contiguous, so the op
// keeps it as is, but its data pointer is not 16-byte aligned.
at::Tensor AtOddOffset(const at::Tensor& t) {
  at::Tensor buf = at::empty({t.numel() + 1}, t.options());
  at::Tensor v = buf.narrow(0, 1, t.numel()).view(t.sizes());
  v.copy_(t);
  return v;
}

bool Aligned16(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

class SwiGluOpCuda : public ::testing::TestWithParam<Case> {};

TEST_P(SwiGluOpCuda, MatchesFp64AndComposite) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  auto opts = at::TensorOptions().dtype(c.dtype).device(at::kCUDA);
  at::Tensor g = (c.gate_scale * at::randn(c.shape, opts)).to(c.dtype);
  at::Tensor u = at::randn(c.shape, opts);
  at::Tensor dy = at::randn(c.shape, opts);

  // fp64 reference from the same rounded inputs.
  at::Tensor g64 = g.to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor u64 = u.to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor y64 = at::silu(g64) * u64;
  y64.backward(dy.to(at::kCPU, at::kDouble));

  struct Needs {
    bool gate, up;
  };
  for (const Needs needs : {Needs{true, true}, Needs{true, false}, Needs{false, true}}) {
    SCOPED_TRACE(std::string("gate grad ") + (needs.gate ? "on" : "off") + ", up grad " +
                 (needs.up ? "on" : "off"));
    testing::Poison(g.device());
    at::Tensor gf = c.misaligned ? AtOddOffset(g) : g.clone();
    at::Tensor uf = c.misaligned ? AtOddOffset(u) : u.clone();
    at::Tensor dyf = c.misaligned ? AtOddOffset(dy) : dy.clone();
    ASSERT_EQ(!c.misaligned, Aligned16(gf) && Aligned16(uf) && Aligned16(dyf));
    gf.requires_grad_(needs.gate);
    uf.requires_grad_(needs.up);
    at::Tensor y = ops::SwiGlu(gf, uf);
    ASSERT_EQ(y.sizes(), g.sizes());
    ASSERT_EQ(y.scalar_type(), c.dtype);
    y.backward(dyf);
    EXPECT_LE(RelMaxErr(y, y64), c.tol) << "y";
    if (needs.gate) {
      EXPECT_LE(RelMaxErr(gf.grad(), g64.grad()), c.tol) << "dgate";
    } else {
      EXPECT_FALSE(gf.grad().defined());
    }
    if (needs.up) {
      EXPECT_LE(RelMaxErr(uf.grad(), u64.grad()), c.tol) << "dup";
    } else {
      EXPECT_FALSE(uf.grad().defined());
    }
    // Backward wrote fresh tensors: inputs and the incoming gradient are intact.
    EXPECT_TRUE(at::equal(gf.detach(), g)) << "gate overwritten";
    EXPECT_TRUE(at::equal(uf.detach(), u)) << "up overwritten";
    EXPECT_TRUE(at::equal(dyf, dy)) << "incoming gradient overwritten";

    // The composite in the same dtype lands within the same tolerance.
    at::Tensor gc = g.clone().requires_grad_(needs.gate);
    at::Tensor uc = u.clone().requires_grad_(needs.up);
    at::Tensor yc = at::silu(gc) * uc;
    yc.backward(dy);
    EXPECT_LE(RelMaxErr(y, yc), 2 * c.tol) << "y vs composite";
    if (needs.gate) {
      EXPECT_LE(RelMaxErr(gf.grad(), gc.grad()), 2 * c.tol) << "dgate vs composite";
    }
    if (needs.up) {
      EXPECT_LE(RelMaxErr(uf.grad(), uc.grad()), 2 * c.tol) << "dup vs composite";
    }
  }
}

// Inside one CUDA stream the op must agree with itself: a second call on the
// same inputs gives bitwise the same output (no uninitialized reads).
TEST(SwiGluOpCudaDeterminism, RepeatsBitwise) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto opts = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
  at::Tensor g = at::randn({3, 11008}, opts).requires_grad_(true);
  at::Tensor u = at::randn({3, 11008}, opts).requires_grad_(true);
  at::Tensor dy = at::randn({3, 11008}, opts);
  testing::Poison(g.device());
  at::Tensor y1 = ops::SwiGlu(g, u);
  y1.backward(dy);
  const at::Tensor dg1 = g.grad().clone(), du1 = u.grad().clone();
  g.mutable_grad() = at::Tensor();
  u.mutable_grad() = at::Tensor();
  testing::Poison(g.device());
  at::Tensor y2 = ops::SwiGlu(g, u);
  y2.backward(dy);
  EXPECT_TRUE(at::equal(y1, y2));
  EXPECT_TRUE(at::equal(dg1, g.grad()));
  EXPECT_TRUE(at::equal(du1, u.grad()));
}

// fp32 ~1e-5, fp16 ~2e-3, bf16 ~1e-2 (one rounding of the result each).
INSTANTIATE_TEST_SUITE_P(
    OddShapes, SwiGluOpCuda,
    ::testing::Values(
        Case{{5, 123, 123}, at::kFloat, 1e-5}, Case{{5, 123, 123}, at::kBFloat16, 1e-2},
        Case{{5, 123, 123}, at::kHalf, 2e-3},
        Case{{3, 11008}, at::kFloat, 1e-5}, Case{{3, 11008}, at::kBFloat16, 1e-2},
        Case{{3, 11008}, at::kHalf, 2e-3},
        // numel 91: 11 whole bf16 vectors and a tail of 3; 5 elements: no whole vector.
        Case{{7, 13}, at::kBFloat16, 1e-2}, Case{{7, 13}, at::kFloat, 1e-5},
        Case{{5}, at::kHalf, 2e-3},
        // Long grid-stride loop (several passes per thread) with an odd row count.
        Case{{1031, 8192}, at::kBFloat16, 1e-2}, Case{{1031, 4096}, at::kFloat, 1e-5},
        // Gates of |g| up to ~50: sigmoid saturates to 0 or 1, nothing may turn NaN.
        Case{{5, 123, 123}, at::kFloat, 1e-5, false, 10.0},
        Case{{5, 123, 123}, at::kBFloat16, 1e-2, false, 10.0},
        Case{{5, 123, 123}, at::kHalf, 2e-3, false, 10.0},
        // Not 16-byte aligned: the scalar kernels.
        Case{{5, 123, 123}, at::kFloat, 1e-5, true}, Case{{5, 123, 123}, at::kBFloat16, 1e-2, true},
        Case{{5, 123, 123}, at::kHalf, 2e-3, true}, Case{{3, 11008}, at::kBFloat16, 1e-2, true}),
    [](const ::testing::TestParamInfo<Case>& info) {
      std::string name;
      for (int64_t d : info.param.shape) name += std::to_string(d) + "x";
      name += DtypeName(info.param.dtype);
      if (info.param.gate_scale != 1.0) name += "_saturated";
      if (info.param.misaligned) name += "_misaligned";
      return name;
    });

}  // namespace
}  // namespace foak

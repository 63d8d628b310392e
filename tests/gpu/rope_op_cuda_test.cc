// The rope op on CUDA against an fp64 reference (autograd of the composite on
// the CPU, from the same rounded inputs, with the same fp32 angles) and
// against the plain LibTorch composite in the same dtype (llama.cc's: cos/sin
// cast to the dtype), forward and backward, per dtype, at odd shapes: the
// 16-byte vector path, the scalar path (head_dim / 2 not a multiple of the
// vector, or q and k starting one element into a buffer), 1, 2 and 4 units per
// thread and tokens split over several blocks; packed positions up to 1e5.
// Free memory is poisoned with NaN before each run and inputs are fresh
// random draws. Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/rope/rope_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::DtypeName;
using testing::RelMaxErr;

struct Case {
  int64_t b, t, q_heads, kv_heads, d;
  at::ScalarType dtype;
  double tol;               // vs fp64, relative to the largest reference magnitude
  int64_t max_pos;          // rows start at random positions below this
  bool misaligned = false;  // q and k start one element into a buffer
};

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// cos, sin (B, T, 1, d) of the fp32 angles, in `dtype` (the composite's
// rounding) or fp64 (the reference's).
std::pair<at::Tensor, at::Tensor> Tables(const at::Tensor& pos, const at::Tensor& inv_freq,
                                         at::ScalarType dtype) {
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq.to(at::kFloat);
  at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(2);
  if (dtype == at::kDouble) emb = emb.to(at::kDouble);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

// x (B, T, H, d) -> x * cos + rotate_half(x) * sin in x's dtype.
at::Tensor Composite(const at::Tensor& x, const at::Tensor& pos, const at::Tensor& inv_freq) {
  auto [cos, sin] = Tables(pos, inv_freq, x.scalar_type());
  return x * cos + RotateHalf(x) * sin;
}

// Packed rows: each starts at a random position below max_pos and restarts
// at 0 at a random point.
at::Tensor Positions(const Case& c) {
  at::Tensor start = at::randint(0, c.max_pos, {c.b, 1}, at::kLong);
  at::Tensor split = at::randint(0, c.t, {c.b, 1}, at::kLong);
  at::Tensor j = at::arange(c.t, at::kLong).unsqueeze(0);
  return at::where(j < split, start + j, j - split);
}

at::Tensor InvFreq(int64_t d) {
  return at::pow(500000.0, at::arange(0, d, 2, at::kLong).to(at::kFloat) / d).reciprocal();
}

// A non-leaf copy of `leaf` for the op to rotate in place: a plain clone, or
// (misaligned) a view starting one element into a larger buffer.
at::Tensor InputFrom(const at::Tensor& leaf, bool misaligned) {
  if (!misaligned) return leaf.clone();
  at::Tensor flat = at::cat({at::zeros({1}, leaf.options()), leaf.flatten()});
  return flat.narrow(0, 1, leaf.numel()).view(leaf.sizes());
}

class RopeOpCuda : public ::testing::TestWithParam<Case> {};

TEST_P(RopeOpCuda, MatchesFp64AndComposite) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  auto opts = at::TensorOptions().dtype(c.dtype).device(at::kCUDA);
  at::Tensor q = at::randn({c.b, c.t, c.q_heads, c.d}, opts);
  at::Tensor k = at::randn({c.b, c.t, c.kv_heads, c.d}, opts);
  at::Tensor dy_q = at::randn_like(q), dy_k = at::randn_like(k);
  at::Tensor pos_cpu = Positions(c), inv_freq_cpu = InvFreq(c.d);
  at::Tensor pos = pos_cpu.to(at::kCUDA), inv_freq = inv_freq_cpu.to(at::kCUDA);

  // fp64 reference from the same rounded inputs.
  at::Tensor q64 = q.to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor k64 = k.to(at::kCPU, at::kDouble).requires_grad_(true);
  at::Tensor yq64 = Composite(q64, pos_cpu, inv_freq_cpu);
  at::Tensor yk64 = Composite(k64, pos_cpu, inv_freq_cpu);
  torch::autograd::backward({yq64, yk64},
                            {dy_q.to(at::kCPU, at::kDouble), dy_k.to(at::kCPU, at::kDouble)});

  testing::Poison(q.device());
  at::Tensor q_leaf = q.clone().requires_grad_(true), k_leaf = k.clone().requires_grad_(true);
  at::Tensor q_in = InputFrom(q_leaf, c.misaligned), k_in = InputFrom(k_leaf, c.misaligned);
  auto [yq, yk] = ops::ApplyRope(q_in, k_in, pos, inv_freq, c.d);
  torch::autograd::backward({yq, yk}, {dy_q, dy_k});
  EXPECT_LE(RelMaxErr(yq, yq64), c.tol) << "q";
  EXPECT_LE(RelMaxErr(yk, yk64), c.tol) << "k";
  EXPECT_LE(RelMaxErr(q_leaf.grad(), q64.grad()), c.tol) << "dq";
  EXPECT_LE(RelMaxErr(k_leaf.grad(), k64.grad()), c.tol) << "dk";

  // The composite in the same dtype lands within the same tolerance.
  at::Tensor qc = q.clone().requires_grad_(true), kc = k.clone().requires_grad_(true);
  at::Tensor yqc = Composite(qc, pos, inv_freq), ykc = Composite(kc, pos, inv_freq);
  torch::autograd::backward({yqc, ykc}, {dy_q, dy_k});
  EXPECT_LE(RelMaxErr(yq, yqc), 2 * c.tol) << "q vs composite";
  EXPECT_LE(RelMaxErr(yk, ykc), 2 * c.tol) << "k vs composite";
  EXPECT_LE(RelMaxErr(q_leaf.grad(), qc.grad()), 2 * c.tol) << "dq vs composite";
  EXPECT_LE(RelMaxErr(k_leaf.grad(), kc.grad()), 2 * c.tol) << "dk vs composite";
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, RopeOpCuda,
    ::testing::Values(
        // Vector path, one unit per thread.
        Case{5, 123, 3, 1, 128, at::kFloat, 1e-5, 100000},
        Case{5, 123, 3, 1, 128, at::kBFloat16, 1e-2, 100000},
        Case{5, 123, 3, 1, 128, at::kHalf, 2e-3, 100000},
        Case{2, 257, 32, 8, 64, at::kBFloat16, 1e-2, 8192},
        Case{2, 257, 32, 8, 64, at::kHalf, 2e-3, 8192},
        Case{2, 257, 32, 8, 64, at::kFloat, 1e-5, 8192},
        Case{3, 40, 4, 2, 16, at::kBFloat16, 1e-2, 100000},  // one vector per half
        Case{3, 40, 4, 2, 8, at::kFloat, 1e-5, 100000},
        // Scalar path: head_dim / 2 = 3 or 5.
        Case{3, 50, 5, 2, 6, at::kFloat, 1e-5, 100000},
        Case{3, 50, 5, 2, 6, at::kBFloat16, 1e-2, 100000},
        Case{2, 77, 4, 4, 10, at::kHalf, 2e-3, 100000},
        // Two units per thread; four units per thread over two blocks per token.
        Case{2, 33, 64, 8, 128, at::kBFloat16, 1e-2, 100000},
        Case{1, 17, 64, 32, 256, at::kFloat, 1e-5, 100000},
        // Misaligned starts take the scalar path (one-tensor Functions: partial views).
        Case{3, 41, 8, 2, 128, at::kBFloat16, 1e-2, 100000, true},
        Case{1, 5, 128, 128, 128, at::kHalf, 2e-3, 100000, true},
        Case{2, 19, 3, 1, 64, at::kFloat, 1e-5, 100000, true}),
    [](const ::testing::TestParamInfo<Case>& info) {
      const Case& c = info.param;
      return std::to_string(c.b) + "x" + std::to_string(c.t) + "x" + std::to_string(c.q_heads) +
             "_" + std::to_string(c.kv_heads) + "x" + std::to_string(c.d) +
             DtypeName(c.dtype) + (c.misaligned ? "_misaligned" : "");
    });

// q as the per-head view of a 3-D linear output (the model's layout) and k as
// a plain linear output, rotated and combined: the gradients of the linear's
// input and weights match the same pipeline with the composite.
TEST(RopeOpCudaAutograd, LinearViewsMatchComposite) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (auto [dtype, tol] : {std::pair{at::kFloat, 1e-5}, std::pair{at::kBFloat16, 2e-2}}) {
    const int64_t b = 3, t = 45, hq = 8, hk = 2, d = 64, hidden = 96;
    auto opts = at::TensorOptions().dtype(dtype).device(at::kCUDA);
    at::Tensor x = at::randn({b, t, hidden}, opts), w = at::randn({b, t, hq, d}, opts);
    at::Tensor wq = 0.1 * at::randn({hq * d, hidden}, opts), bq = at::randn({hq * d}, opts);
    at::Tensor wk = 0.1 * at::randn({hk * d, hidden}, opts);
    at::Tensor pos = Positions(Case{b, t, hq, hk, d, dtype, tol, 100000}).to(at::kCUDA);
    at::Tensor inv_freq = InvFreq(d);  // on the CPU: the op moves it
    std::vector<std::vector<at::Tensor>> grads;
    for (bool fused : {true, false}) {
      testing::Poison(x.device());
      std::vector<at::Tensor> leaves;
      for (const at::Tensor& p : {x, wq, bq, wk}) leaves.push_back(p.clone().requires_grad_(true));
      at::Tensor q = at::linear(leaves[0], leaves[1], leaves[2]).view({b, t, hq, d});
      at::Tensor k = at::linear(leaves[0], leaves[3]).view({b, t, hk, d});
      if (fused) {
        std::tie(q, k) = ops::ApplyRope(q, k, pos, inv_freq, d);
      } else {
        q = Composite(q, pos, inv_freq.to(at::kCUDA));
        k = Composite(k, pos, inv_freq.to(at::kCUDA));
      }
      (q * k.repeat_interleave(hq / hk, 2) * w).sum().backward();
      grads.emplace_back();
      for (const at::Tensor& l : leaves) grads.back().push_back(l.grad());
    }
    const char* names[] = {"x", "wq", "bq", "wk"};
    for (int i = 0; i < 4; ++i) {
      EXPECT_LE(RelMaxErr(grads[0][i], grads[1][i]), tol) << names[i] << " " << DtypeName(dtype);
    }
  }
}

}  // namespace
}  // namespace foak

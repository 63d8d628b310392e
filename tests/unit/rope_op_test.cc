// The rope op on the CPU (where it runs the reference) against LibTorch
// autograd of the composite (q * cos + rotate_half(q) * sin) in fp64, from the
// same rounded inputs: forward and the gradients of q and k with packed
// position_ids (restarting at 0 mid-row), GQA, Llama-3-scaled inv_freq and
// positions near 7e4. Then the autograd cases the model meets: q and k as
// (views of) at::linear outputs, q without grad beside k with grad, a view of
// part of a larger tensor, results used further; and the errors for bad input.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/rope/rope_op.h"
#include "tests/testing/kernel_check.h"

namespace foak {
namespace {

using testing::RelMaxErr;

constexpr double kPi = 3.14159265358979323846;

struct Shape {
  int64_t b, t, q_heads, kv_heads, d;
};

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// x (B, T, H, d) fp64; the angle is the fp32 product, as transformers forms it.
at::Tensor Composite64(const at::Tensor& x, const at::Tensor& pos, const at::Tensor& inv_freq) {
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq.to(at::kFloat);  // (B, T, d/2)
  at::Tensor emb = at::cat({freqs, freqs}, -1).to(at::kDouble).unsqueeze(2);     // (B, T, 1, d)
  return x * emb.cos() + RotateHalf(x) * emb.sin();
}

// Positions of packed rows: each row restarts at 0 somewhere mid-row; every
// third row starts at 70000 (long-context positions).
at::Tensor PackedPositions(int64_t b, int64_t t) {
  std::vector<int64_t> v(b * t);
  for (int64_t r = 0; r < b; ++r) {
    const int64_t split = (r * 7 + 5) % t;
    const int64_t base = r % 3 == 2 ? 70000 : 0;
    for (int64_t j = 0; j < t; ++j) v[r * t + j] = j < split ? base + j : j - split;
  }
  return at::tensor(v, at::kLong).view({b, t});
}

// worker/model/llama.cc ComputeInvFreq for rope_type "llama3": theta 500000,
// factor 8, low_freq_factor 1, high_freq_factor 4, original context 8192.
at::Tensor Llama3InvFreq(int64_t dim) {
  const double factor = 8, low = 1, high = 4, old_len = 8192;
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / dim;
  at::Tensor inv_freq = at::pow(500000.0, exponent).reciprocal() * 1.0;
  const double low_wavelen = old_len / low, high_wavelen = old_len / high;
  at::Tensor wavelen = inv_freq.reciprocal() * (2 * kPi);
  at::Tensor llama = at::where(wavelen > low_wavelen, inv_freq / factor, inv_freq);
  at::Tensor smooth = (wavelen.reciprocal() * old_len - low) / (high - low);
  at::Tensor smoothed = (1 - smooth) * llama / factor + smooth * llama;
  at::Tensor medium = (wavelen < high_wavelen).logical_not() & (wavelen > low_wavelen).logical_not();
  return at::where(medium, smoothed, llama);
}

at::Tensor DefaultInvFreq(int64_t dim) {
  return at::pow(10000.0, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / dim).reciprocal();
}

// Runs the op on fresh non-leaf q, k (B, T, H * d) of `dtype` and compares
// the rotated values and the gradients with the fp64 composite.
void CheckAgainstComposite(const Shape& s, const at::Tensor& pos, const at::Tensor& inv_freq,
                           at::ScalarType dtype, bool four_d, double tol) {
  at::Tensor q = at::randn({s.b, s.t, s.q_heads, s.d}).to(dtype);
  at::Tensor k = at::randn({s.b, s.t, s.kv_heads, s.d}).to(dtype);
  at::Tensor dy_q = at::randn_like(q), dy_k = at::randn_like(k);

  at::Tensor q64 = q.to(at::kDouble).requires_grad_(true);
  at::Tensor k64 = k.to(at::kDouble).requires_grad_(true);
  at::Tensor yq64 = Composite64(q64, pos, inv_freq), yk64 = Composite64(k64, pos, inv_freq);
  torch::autograd::backward({yq64, yk64}, {dy_q.to(at::kDouble), dy_k.to(at::kDouble)});

  // Leaves of the caller's shape; the op gets clones (in place needs non-leaves).
  auto shape_of = [&](const at::Tensor& x) {
    return four_d ? x.sizes().vec() : std::vector<int64_t>{s.b, s.t, x.size(2) * s.d};
  };
  at::Tensor q_leaf = q.reshape(shape_of(q)).clone().requires_grad_(true);
  at::Tensor k_leaf = k.reshape(shape_of(k)).clone().requires_grad_(true);
  at::Tensor q_in = q_leaf.clone(), k_in = k_leaf.clone();
  auto [yq, yk] = ops::ApplyRope(q_in, k_in, pos, inv_freq, s.d);
  EXPECT_TRUE(yq.is_same(q_in));
  EXPECT_TRUE(yk.is_same(k_in));
  torch::autograd::backward({yq, yk}, {dy_q.reshape(yq.sizes()), dy_k.reshape(yk.sizes())});
  EXPECT_LE(RelMaxErr(yq.view_as(q), yq64), tol) << "q";
  EXPECT_LE(RelMaxErr(yk.view_as(k), yk64), tol) << "k";
  EXPECT_LE(RelMaxErr(q_leaf.grad().view_as(q), q64.grad()), tol) << "dq";
  EXPECT_LE(RelMaxErr(k_leaf.grad().view_as(k), k64.grad()), tol) << "dk";
}

TEST(RopeOp, PackedGqaMatchesFp64Composite) {
  at::manual_seed(21);
  const Shape s{3, 37, 6, 2, 10};
  CheckAgainstComposite(s, PackedPositions(s.b, s.t), DefaultInvFreq(s.d), at::kFloat,
                        /*four_d=*/false, 1e-6);
}

TEST(RopeOp, Llama3ScaledLongPositionsMatchesFp64Composite) {
  at::manual_seed(22);
  const Shape s{3, 19, 4, 1, 128};
  // Scaling actually applies: the low frequencies are divided by 8.
  at::Tensor scaled = Llama3InvFreq(s.d);
  at::Tensor plain = at::pow(500000.0, at::arange(0, s.d, 2, at::kLong).to(at::kFloat) / s.d);
  plain = plain.reciprocal();
  EXPECT_NEAR(scaled[63].item<double>() * 8, plain[63].item<double>(), 1e-12);
  EXPECT_EQ(scaled[0].item<float>(), plain[0].item<float>());
  CheckAgainstComposite(s, PackedPositions(s.b, s.t), scaled, at::kFloat, /*four_d=*/true, 1e-6);
}

TEST(RopeOp, Bf16AndBroadcastPositions) {
  at::manual_seed(23);
  const Shape s{2, 9, 2, 2, 16};
  // (1, T) positions serve every row; bf16 goes through the fp32 copy-back.
  at::Tensor pos = at::arange(100, 100 + s.t, at::kLong).view({1, s.t});
  CheckAgainstComposite(s, pos, DefaultInvFreq(s.d), at::kBFloat16, /*four_d=*/true, 1e-2);
}

// q (B, T, Hq, d) and k (B, T, Hk, d) combined the way attention combines
// them (each kv head serves Hq / Hk q heads), weighted and summed.
at::Tensor Scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& w) {
  const int64_t rep = q.size(2) / k.size(2);
  return (q * k.repeat_interleave(rep, 2) * w).sum();
}

TEST(RopeOp, LinearOutputViewsGetCorrectGradients) {
  at::manual_seed(24);
  const Shape s{2, 11, 4, 2, 8};
  const int64_t hidden = 24;
  at::Tensor pos = PackedPositions(s.b, s.t), inv_freq = DefaultInvFreq(s.d);
  at::Tensor x = at::randn({s.b, s.t, hidden}), wq = 0.2 * at::randn({s.q_heads * s.d, hidden});
  at::Tensor bq = at::randn({s.q_heads * s.d}), wk = 0.2 * at::randn({s.kv_heads * s.d, hidden});
  at::Tensor w = at::randn({s.b, s.t, s.q_heads, s.d});

  std::vector<at::Tensor> leaves32, leaves64;
  for (const at::Tensor& t : {x, wq, bq, wk}) {
    leaves32.push_back(t.clone().requires_grad_(true));
    leaves64.push_back(t.to(at::kDouble).requires_grad_(true));
  }
  // q: 3-D linear with bias, viewed per head (a view); k: linear without bias, 3-D.
  at::Tensor q = at::linear(leaves32[0], leaves32[1], leaves32[2]).view({s.b, s.t, s.q_heads, s.d});
  at::Tensor k = at::linear(leaves32[0], leaves32[3]);
  EXPECT_TRUE(q.is_view());
  auto [yq, yk] = ops::ApplyRope(q, k, pos, inv_freq, s.d);
  at::Tensor loss = Scores(yq, yk.view({s.b, s.t, s.kv_heads, s.d}), w);
  loss.backward();

  at::Tensor q64 = at::linear(leaves64[0], leaves64[1], leaves64[2]).view({s.b, s.t, s.q_heads, s.d});
  at::Tensor k64 = at::linear(leaves64[0], leaves64[3]).view({s.b, s.t, s.kv_heads, s.d});
  at::Tensor loss64 = Scores(Composite64(q64, pos, inv_freq), Composite64(k64, pos, inv_freq),
                             w.to(at::kDouble));
  loss64.backward();
  EXPECT_NEAR(loss.item<double>(), loss64.item<double>(), 1e-4 * std::abs(loss64.item<double>()));
  const char* names[] = {"x", "wq", "bq", "wk"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_LE(RelMaxErr(leaves32[i].grad(), leaves64[i].grad()), 1e-5) << names[i];
  }
}

TEST(RopeOp, QWithoutGradBesideKWithGrad) {
  at::manual_seed(25);
  const Shape s{2, 7, 3, 1, 6};
  at::Tensor pos = PackedPositions(s.b, s.t), inv_freq = DefaultInvFreq(s.d);
  at::Tensor w = at::randn({s.b, s.t, s.q_heads, s.d});
  at::Tensor k0 = at::randn({s.b, s.t, s.kv_heads * s.d});
  // q without grad: a plain tensor, a per-head view of one, a view of part of one.
  for (const char* kind : {"plain", "whole view", "partial view"}) {
    const std::string how = kind;
    at::Tensor q0 = at::randn({s.b, s.t, s.q_heads * s.d});
    at::Tensor q = q0.clone();
    if (how == "whole view") q = q.view({s.b, s.t, s.q_heads, s.d});
    if (how == "partial view") q = at::cat({at::zeros_like(q0), q0}, 0).narrow(0, s.b, s.b);
    EXPECT_EQ(q.is_view(), how != "plain") << how;
    at::Tensor k_leaf = k0.clone().requires_grad_(true);
    at::Tensor k = k_leaf * 2.0;
    auto [yq, yk] = ops::ApplyRope(q, k, pos, inv_freq, s.d);
    Scores(yq.view({s.b, s.t, s.q_heads, s.d}), yk.view({s.b, s.t, s.kv_heads, s.d}), w).backward();

    at::Tensor q64 = q0.to(at::kDouble).view({s.b, s.t, s.q_heads, s.d});
    at::Tensor k64 = k0.to(at::kDouble).requires_grad_(true);
    at::Tensor yk64 = Composite64((k64 * 2.0).view({s.b, s.t, s.kv_heads, s.d}), pos, inv_freq);
    at::Tensor yq64 = Composite64(q64, pos, inv_freq);
    Scores(yq64, yk64, w.to(at::kDouble)).backward();
    EXPECT_LE(RelMaxErr(yq.view_as(yq64), yq64), 1e-6) << how;
    EXPECT_LE(RelMaxErr(k_leaf.grad(), k64.grad()), 1e-6) << how;
  }
}

TEST(RopeOp, ViewOfPartOfATensorFallsBackCorrectly) {
  at::manual_seed(26);
  const Shape s{2, 5, 2, 1, 8};
  at::Tensor pos = PackedPositions(s.b, s.t), inv_freq = DefaultInvFreq(s.d);
  // q is rows 1..B of a (B + 1, T, Hq * d) buffer: a contiguous view of part of it.
  at::Tensor buf0 = at::randn({s.b + 1, s.t, s.q_heads * s.d});
  at::Tensor k0 = at::randn({s.b, s.t, s.kv_heads * s.d});
  at::Tensor c = at::randn_like(buf0), dy_k = at::randn_like(k0);
  at::Tensor buf_leaf = buf0.clone().requires_grad_(true), k_leaf = k0.clone().requires_grad_(true);
  at::Tensor buf = buf_leaf.clone();
  at::Tensor q = buf.narrow(0, 1, s.b);
  auto [yq, yk] = ops::ApplyRope(q, k_leaf.clone(), pos, inv_freq, s.d);
  ((buf * c).sum() + (yk * dy_k).sum()).backward();  // buf: row 0 as is, rows 1.. rotated

  at::Tensor b64 = buf0.to(at::kDouble).requires_grad_(true);
  at::Tensor k64 = k0.to(at::kDouble).requires_grad_(true);
  at::Tensor rows = Composite64(b64.narrow(0, 1, s.b).view({s.b, s.t, s.q_heads, s.d}), pos, inv_freq);
  at::Tensor buf64 = at::cat({b64.narrow(0, 0, 1), rows.reshape({s.b, s.t, -1})}, 0);
  at::Tensor yk64 = Composite64(k64.view({s.b, s.t, s.kv_heads, s.d}), pos, inv_freq);
  ((buf64 * c.to(at::kDouble)).sum() + (yk64.view_as(k64) * dy_k.to(at::kDouble)).sum()).backward();
  EXPECT_LE(RelMaxErr(buf, buf64), 1e-6);
  EXPECT_LE(RelMaxErr(buf_leaf.grad(), b64.grad()), 1e-6);
  EXPECT_LE(RelMaxErr(k_leaf.grad(), k64.grad()), 1e-6);
}

TEST(RopeOp, UnusedOutputAndNoGradMode) {
  at::manual_seed(27);
  const Shape s{1, 4, 2, 2, 4};
  at::Tensor pos = PackedPositions(s.b, s.t), inv_freq = DefaultInvFreq(s.d);
  at::Tensor q_leaf = at::randn({s.b, s.t, s.q_heads * s.d}).requires_grad_(true);
  at::Tensor k_leaf = at::randn({s.b, s.t, s.kv_heads * s.d}).requires_grad_(true);
  auto [yq, yk] = ops::ApplyRope(q_leaf.clone(), k_leaf.clone(), pos, inv_freq, s.d);
  yk.sum().backward();  // q's output unused: no gradient (or zeros) for q
  const at::Tensor gq = q_leaf.grad();
  EXPECT_TRUE(!gq.defined() || gq.abs().max().item<double>() == 0.0);
  EXPECT_TRUE(k_leaf.grad().defined());

  // Without autograd the op still rotates in place and bumps the version.
  at::NoGradGuard no_grad;
  at::Tensor q = q_leaf.detach().clone(), k = k_leaf.detach().clone();
  const auto version = q._version();
  ops::ApplyRope(q, k, pos, inv_freq, s.d);
  EXPECT_GT(q._version(), version);
  at::Tensor want = Composite64(q_leaf.detach().to(at::kDouble).view({s.b, s.t, s.q_heads, s.d}),
                                pos, inv_freq);
  EXPECT_LE(RelMaxErr(q.view_as(want), want), 1e-6);
}

// The error message of f(), or "" when it does not throw.
template <typename F>
std::string ErrorOf(F f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what();
  }
  return "";
}

TEST(RopeOp, RejectsBadInputWithMessages) {
  at::Tensor q = at::randn({2, 3, 4 * 16}), k = at::randn({2, 3, 2 * 16});
  at::Tensor pos = at::zeros({2, 3}, at::kLong), f = DefaultInvFreq(16);
  const at::Tensor q_before = q.clone();
  struct Bad {
    std::string want;
    std::function<void()> call;
  };
  const std::vector<Bad> cases = {
      {"head_dim must be a positive even number, got 15", [&] { ops::ApplyRope(q, k, pos, DefaultInvFreq(14), 15); }},
      {"not a multiple of head_dim 24", [&] { ops::ApplyRope(q, k, pos, DefaultInvFreq(24), 24); }},
      {"last dimension 16 but head_dim is 8", [&] { ops::ApplyRope(q.view({2, 3, 4, 16}), k, pos, DefaultInvFreq(8), 8); }},
      {"(B, T) must match", [&] { ops::ApplyRope(q, at::randn({2, 4, 32}), pos, f, 16); }},
      {"position_ids must be (B, T) = (2, 3)", [&] { ops::ApplyRope(q, k, at::zeros({2, 4}, at::kLong), f, 16); }},
      {"position_ids must be int64", [&] { ops::ApplyRope(q, k, at::zeros({2, 3}, at::kInt), f, 16); }},
      {"inv_freq must have head_dim / 2 = 8 elements", [&] { ops::ApplyRope(q, k, pos, DefaultInvFreq(12), 16); }},
      {"rope k has dtype", [&] { ops::ApplyRope(q, k.to(at::kHalf), pos, f, 16); }},
      {"rope q has dtype", [&] { ops::ApplyRope(q.to(at::kDouble), k.to(at::kDouble), pos, f, 16); }},
      {"must be contiguous", [&] { ops::ApplyRope(q.transpose(0, 1), k.transpose(0, 1), pos.t(), f, 16); }},
      {"different tensors", [&] { ops::ApplyRope(q, q, pos, f, 16); }},
      {"must be (B, T, heads * head_dim) or (B, T, heads, head_dim)", [&] { ops::ApplyRope(q.view({6, 64}), k, pos, f, 16); }},
      {"leaf tensor that requires grad", [&] { ops::ApplyRope(q.clone().requires_grad_(true), k, pos, f, 16); }},
  };
  for (const Bad& c : cases) {
    const std::string msg = ErrorOf(c.call);
    EXPECT_NE(msg.find(c.want), std::string::npos) << "want '" << c.want << "', got '" << msg << "'";
  }
  // Rejected calls left q untouched.
  EXPECT_TRUE(at::equal(q, q_before));
}

}  // namespace
}  // namespace foak

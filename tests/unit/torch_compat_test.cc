// worker/torch_compat.h on whichever LibTorch this is built with: the
// attention wrapper (SDPA on 2.x, the eager fallback on 1.13) against a
// double-precision eager reference, on CPU and, when present, CUDA; the fused
// AdamW wrapper against the AdamW formula on 2.x, and its refusal on 1.13.
#include "worker/torch_compat.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace foak {
namespace {

std::vector<torch::Device> Devices() {
  std::vector<torch::Device> devices = {torch::kCPU};
  if (torch::cuda::is_available()) devices.emplace_back(torch::kCUDA);
  return devices;
}

// softmax(q k^T * scale + mask) v in double; mask undefined = causal.
torch::Tensor EagerReference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& mask, double scale) {
  torch::Tensor qd = q.cpu().to(torch::kDouble), kd = k.cpu().to(torch::kDouble),
                vd = v.cpu().to(torch::kDouble);
  torch::Tensor scores = torch::matmul(qd, kd.transpose(2, 3)) * scale;
  const int64_t t = q.size(2);
  if (mask.defined()) {
    scores = scores + mask.cpu().to(torch::kDouble);
  } else {
    scores = scores.masked_fill(torch::ones({t, t}, torch::kBool).triu(1),
                                -std::numeric_limits<double>::infinity());
  }
  return torch::matmul(torch::softmax(scores, -1), vd);
}

double RelDiff(const torch::Tensor& got, const torch::Tensor& want) {
  torch::Tensor g = got.cpu().to(torch::kDouble), w = want.cpu().to(torch::kDouble);
  return (g - w).abs().max().item<double>() / w.abs().max().item<double>();
}

// Block-diagonal causal mask with a window, as LlamaBackbone builds it:
// row 0 packs sequences of 4 and 3 tokens, row 1 has a window of 3.
torch::Tensor PackedWindowMask() {
  const int64_t t = 7;
  torch::Tensor q = torch::arange(t).unsqueeze(1), k = torch::arange(t).unsqueeze(0);
  torch::Tensor causal = k <= q;
  torch::Tensor seq = (torch::arange(t) >= 4).to(torch::kInt64);
  torch::Tensor row0 = causal & (seq.unsqueeze(1) == seq.unsqueeze(0));
  torch::Tensor row1 = causal & (k > q - 3);
  torch::Tensor visible = torch::stack({row0, row1}).unsqueeze(1);  // (2, 1, T, T)
  return torch::zeros({2, 1, t, t}).masked_fill(visible.logical_not(),
                                                 std::numeric_limits<float>::lowest());
}

TEST(TorchCompatTest, AttentionMatchesEagerReference) {
  for (const torch::Device& device : Devices()) {
    for (torch::Dtype dtype : {torch::kFloat, torch::kBFloat16}) {
      SCOPED_TRACE(device.str() + " " + std::string(c10::toString(dtype)));
      torch::manual_seed(0);
      auto options = torch::TensorOptions().dtype(dtype).device(device);
      torch::Tensor q = torch::randn({2, 3, 7, 8}, options);
      torch::Tensor k = torch::randn({2, 3, 7, 8}, options);
      torch::Tensor v = torch::randn({2, 3, 7, 8}, options);
      const double tol = dtype == torch::kFloat ? 1e-5 : 3e-2;
      const double scale = 0.3;  // not 1/sqrt(8): the scale must be honoured

      torch::Tensor causal = compat::ScaledDotProductAttention(q, k, v, {}, scale);
      EXPECT_EQ(causal.scalar_type(), dtype);
      EXPECT_LE(RelDiff(causal, EagerReference(q, k, v, {}, scale)), tol);

      torch::Tensor mask = PackedWindowMask().to(device);  // fp32 whatever q's dtype
      torch::Tensor masked = compat::ScaledDotProductAttention(q, k, v, mask, scale);
      EXPECT_LE(RelDiff(masked, EagerReference(q, k, v, mask, scale)), tol);
      // The mask matters: it differs from plain causal after the packing point.
      EXPECT_GT(RelDiff(masked.slice(2, 4), causal.slice(2, 4)), 10 * tol);
    }
  }
}

TEST(TorchCompatTest, FusedAdamWFollowsTheAdamWFormula) {
  compat::FusedAdamWOptions options;
  options.lr = 0.01;
  options.beta1 = 0.9;
  options.beta2 = 0.95;
  options.weight_decay = 0.1;
  options.eps = 1e-8;
  if (!compat::FusedAdamWAvailable()) {
    std::vector<torch::Tensor> one(1, torch::zeros({3}));
    std::vector<torch::Tensor> step(1, torch::zeros({}));
    EXPECT_THROW(compat::FusedAdamWStep(one, one, one, one, step, options), c10::Error);
    GTEST_SKIP() << "LibTorch " << TORCH_VERSION << " has no at::_fused_adamw_";
  }
  for (const torch::Device& device : Devices()) {
    SCOPED_TRACE(device.str());
    torch::manual_seed(1);
    auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
    std::vector<torch::Tensor> params = {torch::randn({5, 3}, f32), torch::randn({7}, f32)};
    std::vector<torch::Tensor> want;
    std::vector<torch::Tensor> exp_avgs, exp_avg_sqs, steps, m_ref, v_ref;
    for (const torch::Tensor& p : params) {
      want.push_back(p.cpu().to(torch::kDouble));
      exp_avgs.push_back(torch::zeros_like(p));
      exp_avg_sqs.push_back(torch::zeros_like(p));
      steps.push_back(torch::zeros({}, f32));
      m_ref.push_back(torch::zeros_like(want.back()));
      v_ref.push_back(torch::zeros_like(want.back()));
    }
    for (int step = 1; step <= 3; ++step) {
      std::vector<torch::Tensor> grads;
      for (const torch::Tensor& p : params) grads.push_back(torch::randn(p.sizes(), f32));
      compat::FusedAdamWStep(params, grads, exp_avgs, exp_avg_sqs, steps, options);
      for (size_t i = 0; i < params.size(); ++i) {
        torch::Tensor g = grads[i].cpu().to(torch::kDouble);
        m_ref[i] = options.beta1 * m_ref[i] + (1 - options.beta1) * g;
        v_ref[i] = options.beta2 * v_ref[i] + (1 - options.beta2) * g * g;
        const double bc1 = 1 - std::pow(options.beta1, step);
        const double bc2 = 1 - std::pow(options.beta2, step);
        want[i] = want[i] * (1 - options.lr * options.weight_decay);
        want[i] = want[i] - options.lr / bc1 * m_ref[i] / (v_ref[i].sqrt() / std::sqrt(bc2) + options.eps);
      }
    }
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(steps[i].item<double>(), 3.0);
      EXPECT_LE(RelDiff(params[i], want[i]), 1e-5) << "param " << i;
      EXPECT_LE(RelDiff(exp_avgs[i], m_ref[i]), 1e-5) << "exp_avg " << i;
    }
  }
}

}  // namespace
}  // namespace foak

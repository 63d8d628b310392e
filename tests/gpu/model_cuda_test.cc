// The LibTorch model on CUDA against the same model on CPU.
//
// The CPU fp32 path is the one the parity fixtures pin to transformers, so it
// is the reference here: a CUDA run must give the same logits, loss and
// gradients. Why these tolerances:
//  - CUDA fp32 vs CPU fp32: only the summation order differs (cuBLAS, SDPA's
//    fused kernels), so 1e-4 relative is generous, PROVIDED TF32 is off:
//    with TF32 matmuls keep 10 mantissa bits and errors reach ~1e-3.
//  - CUDA bf16 vs CPU fp32: bf16 keeps 8 mantissa bits (relative rounding
//    2^-9 ~ 2e-3 per value); after two layers the logits sit near 1e-2 in
//    relative norm, so 3e-2 catches real bugs (a wrong mask, a missing scale)
//    without flaking on rounding.
// Every model has its norm weights and biases perturbed away from their
// 1/0 initial values so that a bug that drops them shows.
//
// On a machine without CUDA (the CPU CI, LibTorch 1.13) every test skips; the
// file still compiles there so that API drift is caught before the GPU host.
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/tiny_config.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"

namespace foak {
namespace {

// The tiny shape of the parity fixtures: 2 layers, hidden 64, 4 heads, 2 kv
// heads (GQA), vocab 250 (not a multiple of 64).
ModelConfig TinyConfig(const std::string& variant) {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 250;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  if (variant == "llama_tied") {
    c.tie_word_embeddings = true;
  } else if (variant == "llama3_rope") {
    testing::UseLlama3Rope(c);
  } else if (variant == "qwen2") {
    c.model_type = "qwen2";
    c.rope_theta = 1000000.0;
  } else if (variant == "mistral_window") {
    c.model_type = "mistral";
    c.sliding_window = 7;
  } else if (variant == "granite") {
    c.model_type = "granite";
    c.embedding_multiplier = 12.0;
    c.residual_multiplier = 0.22;
    c.attention_multiplier = 0.0078125;
    c.logits_scaling = 8.0;
  }
  return c;
}

// Builds the model on CPU in fp32 from `seed`, then perturbs every norm weight
// (1 + 0.1 N(0,1)) and bias (0.05 N(0,1)). Same seed, same parameters.
LlamaForCausalLM BuildModel(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM model(config);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (name.find("norm") != std::string::npos) {
      p.add_(torch::randn(p.sizes()) * 0.1);
    } else if (is_bias) {
      p.add_(torch::randn(p.sizes()) * 0.05);
    }
  }
  return model;
}

// (B, T) int64 token ids in [0, vocab), deterministic.
torch::Tensor RandomIds(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, vocab, {batch, seq}, torch::kLong);
}

// max|a - b| / max|b|, in fp64 on CPU.
double MaxAbsRel(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.detach().to(torch::kCPU, torch::kDouble);
  auto b64 = b.detach().to(torch::kCPU, torch::kDouble);
  const double denom = std::max(b64.abs().max().item<double>(), 1e-30);
  return (a64 - b64).abs().max().item<double>() / denom;
}

// ||a - b|| / ||b||, in fp64 on CPU.
double NormRel(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.detach().to(torch::kCPU, torch::kDouble);
  auto b64 = b.detach().to(torch::kCPU, torch::kDouble);
  const double denom = std::max(b64.norm().item<double>(), 1e-30);
  return (a64 - b64).norm().item<double>() / denom;
}

bool AllFinite(const torch::Tensor& t) {
  return torch::isfinite(t.detach().to(torch::kCPU, torch::kFloat)).all().item<bool>();
}

// Mean next-token loss and its backward; returns the loss value.
torch::Tensor LossAndBackward(LlamaForCausalLM& model, const torch::Tensor& ids) {
  torch::Tensor logits = model->forward(ids);
  LossParts parts = CausalLmLoss(logits, ids);
  torch::Tensor loss = parts.sum / parts.count.to(torch::kFloat);
  loss.backward();
  return loss.detach();
}

class ModelCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) {
      GTEST_SKIP() << "no CUDA device (LibTorch CUDA build and a visible GPU are needed)";
    }
    // Exact fp32 matmuls; restored in TearDown so other tests see the default.
    tf32_before_ = at::globalContext().allowTF32CuBLAS();
    at::globalContext().setAllowTF32CuBLAS(false);
  }
  void TearDown() override {
    if (torch::cuda::is_available()) at::globalContext().setAllowTF32CuBLAS(tf32_before_);
  }
  bool tf32_before_ = false;
};

class ModelCudaVariantTest : public ModelCudaTest,
                             public ::testing::WithParamInterface<std::string> {};

TEST_P(ModelCudaVariantTest, Fp32LogitsMatchCpu) {
  const ModelConfig config = TinyConfig(GetParam());
  LlamaForCausalLM cpu_model = BuildModel(config, 1234);
  LlamaForCausalLM cuda_model = BuildModel(config, 1234);
  cuda_model->to(torch::Device(torch::kCUDA));
  // T = 24 > sliding_window (7): the windowed mask is exercised too.
  const torch::Tensor ids = RandomIds(2, 24, config.vocab_size, 7);

  torch::NoGradGuard no_grad;
  const torch::Tensor cpu_logits = cpu_model->forward(ids);
  const torch::Tensor cuda_logits = cuda_model->forward(ids.to(torch::kCUDA));
  ASSERT_TRUE(cuda_logits.is_cuda());
  ASSERT_EQ(cuda_logits.scalar_type(), torch::kFloat);
  ASSERT_EQ(cuda_logits.sizes(), cpu_logits.sizes());
  ASSERT_EQ(cpu_logits.size(2), config.vocab_size);
  EXPECT_TRUE(AllFinite(cuda_logits));
  EXPECT_LE(MaxAbsRel(cuda_logits, cpu_logits), 1e-4) << GetParam();
}

TEST_P(ModelCudaVariantTest, Fp32BackwardMatchesCpu) {
  const ModelConfig config = TinyConfig(GetParam());
  LlamaForCausalLM cpu_model = BuildModel(config, 99);
  LlamaForCausalLM cuda_model = BuildModel(config, 99);
  cuda_model->to(torch::Device(torch::kCUDA));
  const torch::Tensor ids = RandomIds(2, 24, config.vocab_size, 11);

  const torch::Tensor cpu_loss = LossAndBackward(cpu_model, ids);
  const torch::Tensor cuda_loss = LossAndBackward(cuda_model, ids.to(torch::kCUDA));
  // A near-uniform softmax over 250 tokens gives a loss near log(250) = 5.52.
  EXPECT_GT(cpu_loss.item<double>(), 4.0);
  EXPECT_LE(MaxAbsRel(cuda_loss, cpu_loss), 1e-5);

  auto cpu_params = cpu_model->named_parameters();
  auto cuda_params = cuda_model->named_parameters();
  ASSERT_EQ(cpu_params.size(), cuda_params.size());
  ASSERT_GT(cpu_params.size(), 0u);
  for (const auto& item : cpu_params) {
    const std::string& name = item.key();
    const torch::Tensor* cuda_p = cuda_params.find(name);
    ASSERT_NE(cuda_p, nullptr) << name;
    const torch::Tensor& cpu_grad = item.value().grad();
    const torch::Tensor& cuda_grad = cuda_p->grad();
    ASSERT_TRUE(cpu_grad.defined()) << name << " has no gradient on CPU";
    ASSERT_TRUE(cuda_grad.defined()) << name << " has no gradient on CUDA";
    EXPECT_TRUE(cuda_grad.is_cuda()) << name;
    EXPECT_TRUE(AllFinite(cuda_grad)) << name;
    EXPECT_GT(cpu_grad.norm().item<double>(), 0.0) << name << " has an all-zero gradient";
    EXPECT_LE(NormRel(cuda_grad, cpu_grad), 1e-4) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelCudaVariantTest,
                         ::testing::Values("llama", "llama_tied", "llama3_rope", "qwen2",
                                           "mistral_window", "granite"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST_F(ModelCudaTest, Bf16LogitsAndGradsCloseToCpuFp32) {
  const ModelConfig config = TinyConfig("llama");
  LlamaForCausalLM cpu_model = BuildModel(config, 5);
  LlamaForCausalLM bf16_model = BuildModel(config, 5);
  bf16_model->to(torch::Device(torch::kCUDA), torch::kBFloat16);
  const torch::Tensor ids = RandomIds(2, 24, config.vocab_size, 13);

  {
    torch::NoGradGuard no_grad;
    const torch::Tensor ref = cpu_model->forward(ids);
    const torch::Tensor got = bf16_model->forward(ids.to(torch::kCUDA));
    ASSERT_EQ(got.scalar_type(), torch::kBFloat16);
    ASSERT_EQ(got.sizes(), ref.sizes());
    EXPECT_TRUE(AllFinite(got));
    EXPECT_LE(NormRel(got, ref), 3e-2);
  }

  const torch::Tensor ref_loss = LossAndBackward(cpu_model, ids);
  const torch::Tensor bf16_loss = LossAndBackward(bf16_model, ids.to(torch::kCUDA));
  EXPECT_EQ(bf16_loss.scalar_type(), torch::kFloat) << "the loss is computed in fp32";
  EXPECT_LE(MaxAbsRel(bf16_loss, ref_loss), 1e-2);

  // All gradients together: small per-tensor gradients (q/k at init) are
  // dominated by bf16 rounding, the whole vector is not.
  std::vector<torch::Tensor> ref_grads, bf16_grads;
  auto bf16_params = bf16_model->named_parameters();
  for (const auto& item : cpu_model->named_parameters()) {
    const torch::Tensor* p = bf16_params.find(item.key());
    ASSERT_NE(p, nullptr) << item.key();
    ASSERT_TRUE(p->grad().defined()) << item.key() << " has no gradient in bf16";
    EXPECT_EQ(p->grad().scalar_type(), torch::kBFloat16) << item.key();
    EXPECT_TRUE(AllFinite(p->grad())) << item.key();
    ref_grads.push_back(item.value().grad().flatten());
    bf16_grads.push_back(p->grad().flatten().to(torch::kCPU, torch::kFloat));
  }
  EXPECT_LE(NormRel(torch::cat(bf16_grads), torch::cat(ref_grads)), 5e-2);
}

// Packed rows: position_ids restarting at 0 start a new sequence, which must
// not see the tokens before it. On CUDA the packed logits equal the CPU ones
// and the logits of each packed segment equal those of the segment alone.
TEST_F(ModelCudaTest, PackedPositionIdsOnCuda) {
  const ModelConfig config = TinyConfig("llama");
  LlamaForCausalLM cpu_model = BuildModel(config, 21);
  LlamaForCausalLM cuda_model = BuildModel(config, 21);
  cuda_model->to(torch::Device(torch::kCUDA));
  const torch::Device cuda(torch::kCUDA);

  // Row 0: segments of 10 and 6 tokens; row 1: 5, 7 and 4 tokens.
  const std::vector<std::vector<int64_t>> segments = {{10, 6}, {5, 7, 4}};
  const int64_t seq = 16;
  const torch::Tensor ids = RandomIds(2, seq, config.vocab_size, 17);
  torch::Tensor pos = torch::empty({2, seq}, torch::kLong);
  for (int64_t b = 0; b < 2; ++b) {
    int64_t start = 0;
    for (int64_t len : segments[b]) {
      pos[b].slice(0, start, start + len).copy_(torch::arange(len, torch::kLong));
      start += len;
    }
    ASSERT_EQ(start, seq);
  }

  torch::NoGradGuard no_grad;
  const torch::Tensor cpu_logits = cpu_model->forward(ids, pos);
  const torch::Tensor cuda_logits = cuda_model->forward(ids.to(cuda), pos.to(cuda));
  EXPECT_LE(MaxAbsRel(cuda_logits, cpu_logits), 1e-4);

  for (int64_t b = 0; b < 2; ++b) {
    int64_t start = 0;
    for (int64_t len : segments[b]) {
      const torch::Tensor seg_ids = ids[b].slice(0, start, start + len).unsqueeze(0).to(cuda);
      const torch::Tensor alone = cuda_model->forward(seg_ids);  // positions 0..len-1
      const torch::Tensor packed = cuda_logits[b].slice(0, start, start + len).unsqueeze(0);
      EXPECT_LE(MaxAbsRel(packed, alone), 1e-4) << "row " << b << " segment at " << start;
      start += len;
    }
  }
  // The packing must matter: the second segment of row 0 run with plain
  // positions 0..T-1 (one long sequence) gives different logits.
  const torch::Tensor unpacked = cuda_model->forward(ids.to(cuda));
  EXPECT_GT(MaxAbsRel(unpacked[0].slice(0, 10, 16), cuda_logits[0].slice(0, 10, 16)), 1e-3);
}

}  // namespace
}  // namespace foak

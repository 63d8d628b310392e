// Method qlora's NF4 base on CUDA (worker/quant/nf4_linears.h):
//  - a checkpoint loaded straight into NF4 on the GPU holds the same codes as
//    on the CPU, bit for bit (the NF4 kernels agree with the reference), and
//    its fp32 logits agree with the CPU's within 1e-4 (TF32 off);
//  - a Llama-3-8B-shaped model built with QuantizeOnCreateHook in bf16 is
//    never whole in bf16: the peak of allocated memory stays near NF4 + the
//    bf16 embeddings and head (~5.7 GiB) instead of the dense ~15 GiB;
//  - LoRA on that base trains in bf16: a backward pass gives every adapter a
//    gradient and the base none.
// On a machine without CUDA every test skips; the file still compiles there.
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/testing/worker_run.h"
#include "worker/lora/lora.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/weights.h"
#include "worker/quant/nf4_linears.h"
#include "worker/train/memory_stats.h"

namespace foak {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

ModelConfig DebugConfig() {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(FOAK_SOURCE_DIR "/examples/debug_model");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::vector<Linear> Projections(LlamaForCausalLM& model) {
  std::vector<Linear> out;
  for (const auto& item : model->named_modules("", false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (linear != nullptr && item.key() != "lm_head") out.emplace_back(linear);
  }
  return out;
}

LlamaForCausalLM LoadNf4(const std::string& dir, torch::Device device) {
  ModelInit init;
  init.options = torch::TensorOptions().device(device);
  init.random = false;
  init.on_decoder_linear = ReleaseOnCreateHook();
  LlamaForCausalLM model(DebugConfig(), init);
  absl::StatusOr<Nf4Stats> stats = LoadNf4Weights(model, dir, Nf4Options());
  EXPECT_TRUE(stats.ok()) << stats.status();
  return model;
}

TEST(QloraCuda, LoadsTheCpuCodesBitForBit) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::globalContext().setAllowTF32CuBLAS(false);
  testing::TempDir tmp("qlora_cuda_test");
  torch::manual_seed(3);
  LlamaForCausalLM dense(DebugConfig());
  ASSERT_TRUE(SaveModel(dense, tmp.path() + "/model").ok());
  LlamaForCausalLM cpu = LoadNf4(tmp.path() + "/model", torch::kCPU);
  LlamaForCausalLM gpu = LoadNf4(tmp.path() + "/model", torch::Device(torch::kCUDA, 0));
  const std::vector<Linear> pc = Projections(cpu), pg = Projections(gpu);
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    const ops::Nf4Weight* wc = FindNf4Weight(*pc[i]);
    const ops::Nf4Weight* wg = FindNf4Weight(*pg[i]);
    ASSERT_TRUE(wc != nullptr && wg != nullptr);
    EXPECT_TRUE(wg->packed.is_cuda());
    EXPECT_TRUE(torch::equal(wg->packed.cpu(), wc->packed)) << i;
    EXPECT_TRUE(torch::equal(ops::Nf4Dequantize(*wg).cpu(), ops::Nf4Dequantize(*wc))) << i;
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, 258, {2, 17}, torch::kLong);
  const torch::Tensor want = cpu->forward(ids);
  const torch::Tensor got = gpu->forward(ids.cuda()).cpu();
  EXPECT_LE((got - want).abs().max().item<double>() / want.abs().max().item<double>(), 1e-4);
}

TEST(QloraCuda, An8bShapedBaseIsNeverWholeInBf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device device(torch::kCUDA, 0);
  ModelConfig c;  // Llama-3-8B
  c.model_type = "llama";
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 8192;
  c.rope_theta = 500000.0;
  // The caching allocator knows a device only once it has allocated there;
  // its stats for a device it has not seen are "Invalid device argument".
  torch::zeros({1}, torch::TensorOptions().device(device));
  ReleaseCachedMemory(device);
  ResetPeakMemory(device);
  const int64_t before = PeakMemoryBytes(device);
  {
    torch::manual_seed(1);
    ModelInit init;
    init.options = torch::TensorOptions().device(device).dtype(torch::kBFloat16);
    init.on_decoder_linear = QuantizeOnCreateHook(Nf4Options());
    LlamaForCausalLM model(c, init);
    const Nf4Stats stats = CountNf4(model);
    EXPECT_EQ(stats.linears, 7 * 32);
    EXPECT_LT(stats.BytesPerParam(), 0.52);
    const double peak = static_cast<double>(PeakMemoryBytes(device) - before);
    // NF4 (~3.6 GiB) + embeddings and head in bf16 (2 x 0.98 GiB) + one dense
    // projection and the quantiser's temporaries: well under 7 GiB, where the
    // dense bf16 base alone is 13 GiB.
    const double nf4 = static_cast<double>(stats.nf4_bytes) / kGiB;
    std::printf("8B-shaped NF4 base: %.2f GiB of NF4 (%.4f B/weight), peak %.2f GiB while built "
                "(dense bf16 projections: %.2f GiB)\n",
                nf4, stats.BytesPerParam(), peak / kGiB,
                static_cast<double>(stats.dense_bytes) / kGiB);
    EXPECT_LT(peak / kGiB, 7.0);

    // LoRA trains on it in bf16 (one layer's worth of sequence keeps it quick).
    LoraConfig lora;
    lora.r = 16;
    lora.alpha = 16;
    ASSERT_TRUE(ApplyLora(model, lora).ok());
    const torch::Tensor ids = torch::randint(0, c.vocab_size, {1, 64}, torch::kLong).to(device);
    LossParts loss = model->Loss(ids, {}, ids);
    (loss.sum / loss.count).backward();
    EXPECT_TRUE(std::isfinite(loss.sum.item<double>()));
    for (const auto& item : model->named_parameters()) {
      const bool is_lora = item.key().find(".lora_") != std::string::npos;
      EXPECT_EQ(item.value().grad().defined(), is_lora) << item.key();
    }
  }
  ReleaseCachedMemory(device);
}

}  // namespace
}  // namespace foak

// fused_lora on the debug model (examples/debug_model): a model built with
// kernels.fused_lora and LoRA applied gives the loss and adapter gradients of
// the same model without it (fp32 on the CPU, where both paths are exact up
// to summation order), over a dense base and over an NF4 base; which layers
// are fused (dropout keeps the composite); merging and removing undo the
// fusion.
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "worker/lora/lora.h"
#include "worker/lora/lora_fusion.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/quant/nf4_linears.h"

namespace foak {
namespace {

ModelConfig DebugConfig() {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(FOAK_SOURCE_DIR "/examples/debug_model");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

LlamaForCausalLM MakeModel(bool fused_lora) {
  torch::manual_seed(7);
  ModelInit init;
  init.kernels.fused_lora = fused_lora;
  return LlamaForCausalLM(DebugConfig(), init);
}

struct LoraRun {
  double loss;
  std::vector<std::pair<std::string, torch::Tensor>> grads;
};

// LoRA r 4 on every projection, B randomised so each adapter matters, one
// forward and backward of the loss.
LoraRun LossAndGrads(LlamaForCausalLM& model, double dropout = 0.0) {
  LoraConfig config;
  config.r = 4;
  config.alpha = 8.0;
  config.dropout = dropout;
  torch::manual_seed(5);  // lora_A's init draws from the global generator
  absl::StatusOr<std::vector<torch::Tensor>> params = ApplyLora(model, config);
  EXPECT_TRUE(params.ok()) << params.status();
  torch::manual_seed(3);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : LoraNamedParameters(model)) {
      if (name.find(".lora_B.") != std::string::npos) p.normal_(0.0, 0.05);
    }
  }
  torch::manual_seed(99);
  torch::Tensor ids = torch::randint(0, 258, {2, 13}, torch::kInt64);
  CausalLmLossOptions options;
  options.normalizer = 26.0;
  LossParts loss = model->Loss(ids, {}, ids, options);
  loss.normalized.backward();
  LoraRun run{loss.normalized.item<double>(), {}};
  for (auto& [name, p] : LoraNamedParameters(model)) run.grads.emplace_back(name, p.grad());
  return run;
}

void ExpectSameRun(const LoraRun& fused, const LoraRun& plain, double tol) {
  EXPECT_NEAR(fused.loss, plain.loss, tol * std::abs(plain.loss));
  ASSERT_EQ(fused.grads.size(), plain.grads.size());
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    SCOPED_TRACE(plain.grads[i].first);
    ASSERT_EQ(fused.grads[i].first, plain.grads[i].first);
    ASSERT_TRUE(fused.grads[i].second.defined());
    const double scale = plain.grads[i].second.abs().max().item<double>() + 1e-12;
    EXPECT_LT((fused.grads[i].second - plain.grads[i].second).abs().max().item<double>() / scale,
              tol);
  }
}

TEST(LoraFusion, FusedModelGivesTheLossAndGradientsOfTheComposite) {
  LlamaForCausalLM fused = MakeModel(/*fused_lora=*/true);
  LlamaForCausalLM plain = MakeModel(/*fused_lora=*/false);
  const LoraRun a = LossAndGrads(fused);
  const LoraRun b = LossAndGrads(plain);
  ExpectSameRun(a, b, 1e-5);
  // Every projection and every MLP of the debug model is fused.
  const int64_t layers = DebugConfig().num_hidden_layers;
  const LoraFusionStats stats = FuseLora(fused);  // idempotent: counts again
  EXPECT_EQ(stats.projections, 7 * layers);
  EXPECT_EQ(stats.mlps, layers);
}

TEST(LoraFusion, FusedOverAnNf4BaseMatchesTheCompositeOverTheSameBase) {
  LlamaForCausalLM fused = MakeModel(true);
  LlamaForCausalLM plain = MakeModel(false);
  for (LlamaForCausalLM* m : {&fused, &plain}) {
    absl::StatusOr<Nf4Stats> q = QuantizeDecoderLinears(*m, Nf4Options{});
    ASSERT_TRUE(q.ok()) << q.status();
  }
  ExpectSameRun(LossAndGrads(fused), LossAndGrads(plain), 1e-5);
}

TEST(LoraFusion, DropoutKeepsTheCompositePath) {
  LlamaForCausalLM model = MakeModel(true);
  LossAndGrads(model, /*dropout=*/0.1);
  const LoraFusionStats stats = FuseLora(model);
  EXPECT_EQ(stats.projections, 0);
  EXPECT_EQ(stats.mlps, 0);
}

TEST(LoraFusion, MergeAndRemoveUndoTheFusion) {
  LlamaForCausalLM fused = MakeModel(true);
  LlamaForCausalLM plain = MakeModel(false);
  LossAndGrads(fused);
  LossAndGrads(plain);
  ASSERT_TRUE(MergeLora(fused).ok());
  ASSERT_TRUE(MergeLora(plain).ok());
  for (const auto& item : fused->named_modules()) {
    if (auto l = std::dynamic_pointer_cast<LinearImpl>(item.value())) {
      EXPECT_FALSE(l->fused) << item.key();
    }
    if (auto m = std::dynamic_pointer_cast<MlpImpl>(item.value())) {
      EXPECT_FALSE(m->runner) << item.key();
    }
  }
  torch::NoGradGuard no_grad;
  torch::Tensor ids = torch::randint(0, 258, {1, 9}, torch::kInt64);
  EXPECT_TRUE(torch::allclose(fused->forward(ids), plain->forward(ids), 1e-5, 1e-5));
}

}  // namespace
}  // namespace foak

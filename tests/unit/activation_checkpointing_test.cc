// Activation checkpointing changes memory, not numbers: the loss and every
// gradient equal those of the plain model, with and without the fused ops,
// with packed position ids, and under LoRA with dropout (the recomputation
// replays the same random masks, and the frozen embedding's output still lets
// backward reach the first layer's adapters). Without a graph (evaluation)
// the layers simply run.
#include "worker/train/activation_checkpointing.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <set>
#include <vector>
#include <string>

#include "kernels/registry.h"
#include "tests/testing/tiny_config.h"
#include "worker/lora/lora.h"

namespace foak {
namespace {

struct Result {
  double loss = 0;
  std::map<std::string, torch::Tensor> grads;
};

Result LossAndGrads(LlamaForCausalLM& model, const torch::Tensor& ids, const torch::Tensor& pos,
                    int64_t seed) {
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  torch::manual_seed(seed);  // the same dropout draws in both runs
  LossParts parts = model->Loss(ids, pos, ids);
  torch::Tensor loss = parts.sum / parts.count.to(torch::kFloat);
  loss.backward();
  Result r;
  r.loss = loss.item<double>();
  for (const auto& p : model->named_parameters()) {
    if (p.value().requires_grad()) {
      EXPECT_TRUE(p.value().grad().defined()) << p.key() << " got no gradient";
      r.grads[p.key()] = p.value().grad().clone();
    }
  }
  return r;
}

void ExpectSame(const Result& plain, const Result& checkpointed) {
  EXPECT_NEAR(checkpointed.loss, plain.loss, 1e-6 * std::abs(plain.loss));
  ASSERT_EQ(checkpointed.grads.size(), plain.grads.size());
  for (const auto& [name, g] : plain.grads) {
    const torch::Tensor& c = checkpointed.grads.at(name);
    const double scale = g.abs().max().item<double>() + 1e-12;
    EXPECT_LE((c - g).abs().max().item<double>() / scale, 1e-5) << name;
  }
}

void CheckModel(LlamaForCausalLM& model, const torch::Tensor& pos) {
  torch::manual_seed(3);
  torch::Tensor ids = torch::randint(0, model->config().vocab_size, {2, 24});
  Result plain = LossAndGrads(model, ids, pos, 11);
  SetActivationCheckpointing(model, true);
  Result checkpointed = LossAndGrads(model, ids, pos, 11);
  SetActivationCheckpointing(model, false);
  ExpectSame(plain, checkpointed);
}

TEST(ActivationCheckpointing, SameLossAndGradientsAsThePlainModel) {
  torch::manual_seed(1);
  LlamaForCausalLM model(testing::TinyLlamaConfig());
  CheckModel(model, torch::Tensor());
}

TEST(ActivationCheckpointing, SameWithEveryFusedOpAndPackedPositions) {
  ModelInit init;
  init.kernels = ParseKernelSet({"all"}).value();
  torch::manual_seed(1);
  LlamaForCausalLM model(testing::TinyLlamaConfig(), init);
  // Two packed sequences per row: 0..9 then 0..13.
  torch::Tensor pos = torch::cat({torch::arange(10), torch::arange(14)}).unsqueeze(0).repeat({2, 1});
  CheckModel(model, pos);
}

TEST(ActivationCheckpointing, LoraWithDropoutReachesTheFirstLayersAdapters) {
  torch::manual_seed(1);
  LlamaForCausalLM model(testing::TinyLlamaConfig());
  LoraConfig lora;
  lora.r = 4;
  lora.dropout = 0.2;
  ASSERT_TRUE(ApplyLora(model, lora).ok());
  for (auto& p : LoraNamedParameters(model)) {
    // Non-zero B so every adapter's A gets a gradient too.
    if (p.first.find("lora_B") != std::string::npos) {
      torch::NoGradGuard no_grad;
      p.second.normal_(0, 0.02);
    }
  }
  CheckModel(model, torch::Tensor());
}

// The names of the autograd graph's nodes reachable from `root`.
std::vector<std::string> GraphNodeNames(const torch::Tensor& root) {
  std::vector<std::string> names;
  std::vector<torch::autograd::Node*> stack = {root.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  while (!stack.empty()) {
    torch::autograd::Node* node = stack.back();
    stack.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    names.push_back(node->name());
    for (const torch::autograd::Edge& e : node->next_edges()) stack.push_back(e.function.get());
  }
  return names;
}

TEST(ActivationCheckpointing, EachLayerIsOneNodeOfTheGraph) {
  torch::manual_seed(1);
  LlamaForCausalLM model(testing::TinyLlamaConfig());
  torch::Tensor ids = torch::randint(0, 250, {1, 16});
  const size_t plain = GraphNodeNames(model->forward(ids)).size();
  SetActivationCheckpointing(model, true);
  const std::vector<std::string> names = GraphNodeNames(model->forward(ids));
  int layers = 0;
  for (const std::string& n : names) layers += n.find("CheckpointedLayer") != std::string::npos;
  EXPECT_EQ(layers, 2);  // the tiny model's two decoder layers
  EXPECT_LT(names.size() * 3, plain) << "the layers' insides are not in the graph";
}

TEST(ActivationCheckpointing, WithoutAGraphTheLayersSimplyRun) {
  torch::manual_seed(1);
  LlamaForCausalLM model(testing::TinyLlamaConfig());
  torch::Tensor ids = torch::randint(0, 250, {1, 16});
  torch::NoGradGuard no_grad;
  torch::Tensor plain = model->forward(ids);
  SetActivationCheckpointing(model, true);
  torch::Tensor checkpointed = model->forward(ids);
  EXPECT_TRUE(torch::equal(plain, checkpointed));
  EXPECT_FALSE(checkpointed.requires_grad());
}

}  // namespace
}  // namespace foak

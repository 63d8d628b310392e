// ModelInit: where parameters are created and whether they are randomly
// initialised. Loading an 8B checkpoint must not pay for a random init it then
// overwrites, nor build an fp32 copy on the CPU first.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <string>

#include "worker/model/llama.h"
#include "tests/testing/tiny_config.h"
#include "worker/model/model_config.h"

namespace foak {
namespace {

ModelConfig TinyConfig() {
  ModelConfig c = testing::TinyLlamaConfig();
  c.attention_bias = true;
  c.pad_token_id = 3;
  return c;
}

TEST(ModelInitTest, RandomInitFollowsTransformers) {
  torch::manual_seed(5);
  LlamaForCausalLM model(TinyConfig());
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    const torch::Tensor& t = p.value();
    EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
    EXPECT_TRUE(t.requires_grad()) << name;
    if (name.find("norm") != std::string::npos) {
      EXPECT_TRUE(torch::equal(t, torch::ones_like(t))) << name;
    } else if (name.size() > 5 && name.substr(name.size() - 5) == ".bias") {
      EXPECT_TRUE(torch::equal(t, torch::zeros_like(t))) << name;
    } else {
      // normal(0, 0.02): the sample std of thousands of draws is within 10%.
      double std = t.std().item<double>();
      EXPECT_NEAR(std, 0.02, 0.002) << name;
    }
  }
  torch::Tensor pad_row = model->model->embed_tokens->weight[3];
  EXPECT_TRUE(torch::equal(pad_row, torch::zeros_like(pad_row))) << "padding row is zero";
}

TEST(ModelInitTest, SameSeedSameWeights) {
  torch::manual_seed(9);
  LlamaForCausalLM a(TinyConfig());
  torch::manual_seed(9);
  LlamaForCausalLM b(TinyConfig());
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

TEST(ModelInitTest, NoRandomInitDrawsNothingFromTheGenerator) {
  torch::manual_seed(11);
  torch::Tensor expected = torch::randn({8});
  torch::manual_seed(11);
  ModelInit init;
  init.random = false;
  LlamaForCausalLM model(TinyConfig(), init);
  EXPECT_TRUE(torch::equal(torch::randn({8}), expected))
      << "building a model for loading must not spend time on random init";
  EXPECT_EQ(model->parameters().size(), LlamaForCausalLM(TinyConfig())->parameters().size());
}

TEST(ModelInitTest, OptionsSetTheParameterDtypeButRopeStaysFp32) {
  ModelInit init;
  init.options = torch::TensorOptions().dtype(torch::kBFloat16);
  LlamaForCausalLM model(TinyConfig(), init);
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
  }
  EXPECT_EQ(model->model->rotary_emb->inv_freq.scalar_type(), torch::kFloat);
  torch::Tensor ids = torch::randint(0, 250, {2, 5}, torch::kLong);
  torch::Tensor logits = model->forward(ids);
  EXPECT_EQ(logits.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::isfinite(logits.to(torch::kFloat)).all().item<bool>());
}

}  // namespace
}  // namespace foak

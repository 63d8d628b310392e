// Generation: greedy decoding equals taking the argmax of a full forward at
// every step (and transformers' generate() where the fixture records it),
// stop tokens end it, top-k / top-p keep exactly the tokens Hugging Face's
// warpers keep, and sampling is seeded and follows the softmax distribution.
#include "worker/generate/generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "tests/testing/tiny_config.h"
#include "nlohmann/json.hpp"
#include "worker/generate/sampler.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/weights.h"

namespace foak {
namespace {

ModelConfig TinyConfig() {
  ModelConfig c = testing::TinyLlamaConfig();
  c.vocab_size = 97;
  c.initializer_range = 0.5;  // peaked logits: a clear argmax at every step
  return c;
}

std::vector<int64_t> GreedyByFullForward(LlamaForCausalLM& model, std::vector<int64_t> ids, int n) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    torch::Tensor logits =
        model->forward(torch::tensor(ids, torch::kLong).reshape({1, (int64_t)ids.size()}));
    int64_t next = logits[0][-1].argmax().item<int64_t>();
    ids.push_back(next);
    out.push_back(next);
  }
  return out;
}

TEST(GenerateTest, GreedyIsArgmaxOfTheFullForwardAtEveryStep) {
  torch::manual_seed(3);
  LlamaForCausalLM model(TinyConfig());
  model->eval();
  const std::vector<int64_t> prompt = {5, 17, 42, 8};
  GenerateOptions o;
  o.max_new_tokens = 10;
  auto g = Generate(model, prompt, o);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->ids, GreedyByFullForward(model, prompt, 10));
  EXPECT_FALSE(g->stopped);

  // A stop token ends generation and is not returned.
  o.stop_ids = {g->ids[3]};
  auto stopped = Generate(model, prompt, o);
  ASSERT_TRUE(stopped.ok());
  EXPECT_TRUE(stopped->stopped);
  // The stop id may also occur earlier in the greedy run; cut at its first use.
  std::vector<int64_t> expected;
  for (int64_t id : g->ids) {
    if (id == g->ids[3]) break;
    expected.push_back(id);
  }
  EXPECT_EQ(stopped->ids, expected);
}

TEST(GenerateTest, BadRequestsAreClearErrors) {
  LlamaForCausalLM model(TinyConfig());
  GenerateOptions o;
  EXPECT_NE(Generate(model, {}, o).status().message().find("no tokens"), std::string::npos);
  EXPECT_NE(Generate(model, {1, 97}, o).status().message().find("id 97 is outside the vocabulary [0, 97)"),
            std::string::npos);
  o.sampling.top_p = 0.0;
  EXPECT_NE(Generate(model, {1}, o).status().message().find("top_p = 0"), std::string::npos);
  o.sampling.top_p = 1.0;
  o.sampling.temperature = -1;
  EXPECT_NE(Generate(model, {1}, o).status().message().find("temperature = -1"), std::string::npos);
}

TEST(SamplerTest, TopKAndTopPKeepWhatHuggingFaceKeeps) {
  const double inf = std::numeric_limits<double>::infinity();
  at::Tensor logits = at::tensor({1.0, 3.0, 2.0, 5.0, 3.0}, at::kFloat);
  // top_k 2: the 2nd largest is 3.0, and ties with it stay.
  at::Tensor k = FilterLogits(logits, 1.0, 2);
  EXPECT_TRUE(at::equal(k, at::tensor({-inf, 3.0, -inf, 5.0, 3.0}, at::kFloat))) << k;
  // top_p 0.8 over probabilities 0.5, 0.3, 0.15, 0.05: keeps 0.5 and 0.3.
  at::Tensor p = at::log(at::tensor({0.15, 0.5, 0.05, 0.3}, at::kFloat));
  at::Tensor kept = FilterLogits(p, 0.8, 0);
  EXPECT_TRUE(at::isinf(kept).equal(at::tensor({1, 0, 1, 0}, at::kInt).to(at::kBool))) << kept;
  // A tiny top_p still keeps the most likely token.
  at::Tensor one = FilterLogits(p, 1e-6, 0);
  EXPECT_EQ((~at::isinf(one)).sum().item<int64_t>(), 1);
  EXPECT_FALSE(at::isinf(one[1]).item<bool>());
}

TEST(SamplerTest, SamplingIsSeededAndFollowsTheDistribution) {
  at::Tensor probs = at::tensor({0.1, 0.2, 0.3, 0.4}, at::kFloat);
  at::Tensor logits = at::log(probs);
  SamplingOptions o;
  o.temperature = 1.0;
  o.seed = 11;
  at::Generator a = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  at::Generator b = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  std::vector<int64_t> counts(4, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    int64_t x = SampleNextToken(logits, o, a);
    ASSERT_EQ(x, SampleNextToken(logits, o, b)) << "same seed, same draws";
    counts[x]++;
  }
  for (int i = 0; i < 4; ++i) {
    // Binomial standard deviation is below 0.0035 here; 5 sigma.
    EXPECT_NEAR(counts[i] / static_cast<double>(n), probs[i].item<double>(), 0.0175) << i;
  }
  // A low temperature sharpens towards the argmax.
  o.temperature = 0.05;
  int top = 0;
  for (int i = 0; i < 1000; ++i) top += SampleNextToken(logits, o, a) == 3;
  EXPECT_GT(top, 990);
}

// Greedy generation against transformers' generate() on the parity fixtures.
TEST(GenerateParityTest, GreedyMatchesTransformersGenerate) {
  const std::string dir = std::string(FOAK_TESTDATA_DIR) + "/parity/llama3_gqa";
  auto text = ReadFileToString(dir + "/reference.json");
  ASSERT_TRUE(text.ok()) << text.status();
  nlohmann::json ref = nlohmann::json::parse(*text);
  if (!ref.contains("greedy_generation")) {
    GTEST_SKIP() << dir << " predates greedy_generation; rerun scripts/make_parity_fixtures.py";
  }
  const auto& gen = ref["greedy_generation"];
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  ModelInit init;
  init.random = false;
  LlamaForCausalLM model(*config, init);
  ASSERT_TRUE(LoadWeights(model, dir).ok());
  model->eval();
  GenerateOptions o;
  o.max_new_tokens = gen["max_new_tokens"].get<int64_t>();
  o.stop_ids = {gen["eos_token_id"].get<int64_t>()};
  auto g = Generate(model, gen["prompt"].get<std::vector<int64_t>>(), o);
  ASSERT_TRUE(g.ok()) << g.status();
  std::vector<int64_t> expected = gen["output"].get<std::vector<int64_t>>();
  // transformers returns the EOS it stopped at (and pads after it); foak does not.
  auto eos = std::find(expected.begin(), expected.end(), o.stop_ids[0]);
  const bool hf_stopped = eos != expected.end();
  expected.erase(eos, expected.end());
  EXPECT_EQ(g->ids, expected);
  EXPECT_EQ(g->stopped, hf_stopped);
}

}  // namespace
}  // namespace foak

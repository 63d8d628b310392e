// Behaviour of the LibTorch Llama model and its weight I/O on a tiny config
// (2 layers, hidden 64, 4 heads, 2 kv heads, vocab 250). Numerical parity with
// transformers is parity_test's job; these tests pin the properties that hold
// by construction: causality, packing, GQA, sliding window, tying, granite
// multipliers, llama3 rope scaling, names, dtypes, loss and checkpoints.
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/linear.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"
#include "tests/testing/tiny_config.h"

namespace foak {
namespace {

ModelConfig TinyConfig() { return testing::TinyLlamaConfig(); }

// A model whose weights come from `seed`, with norm weights moved off 1 so
// their use shows in the output.
LlamaForCausalLM MakeModel(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM model(config);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) p.value().add_(torch::randn_like(p.value()) * 0.1);
  }
  return model;
}

torch::Tensor RandomIds(int64_t b, int64_t t, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(250, {b, t}, torch::TensorOptions().dtype(torch::kInt64));
}

double MaxAbs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

// max |a - b| / max |b|
double RelDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return MaxAbs(a.to(torch::kFloat) - b.to(torch::kFloat)) / std::max(MaxAbs(b.to(torch::kFloat)), 1e-30);
}

std::vector<std::string> ParamNames(torch::nn::Module& m) {
  std::vector<std::string> names;
  for (const auto& p : m.named_parameters()) names.push_back(p.key());
  return names;
}

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/llama_test_" + std::to_string(::getpid()) + "_" + name;
  EXPECT_TRUE(RemoveTree(dir).ok());
  return dir;
}

TEST(LlamaTest, OutputShapes) {
  LlamaForCausalLM model = MakeModel(TinyConfig(), 1);
  torch::Tensor ids = RandomIds(3, 7, 2);
  EXPECT_EQ(model->forward(ids).sizes(), (std::vector<int64_t>{3, 7, 250}));
  EXPECT_EQ(model->Hidden(ids).sizes(), (std::vector<int64_t>{3, 7, 64}));
  EXPECT_EQ(model->forward(ids).scalar_type(), torch::kFloat);
}

TEST(LlamaTest, ParameterNamesMatchTransformers) {
  LlamaForCausalLM model = MakeModel(TinyConfig(), 1);
  std::vector<std::string> expected = {"model.embed_tokens.weight"};
  for (int layer = 0; layer < 2; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    for (const char* suffix :
         {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
          "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
          "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"}) {
      expected.push_back(p + suffix);
    }
  }
  expected.push_back("model.norm.weight");
  expected.push_back("lm_head.weight");
  EXPECT_EQ(ParamNames(*model), expected);

  // inv_freq is a buffer, never a parameter.
  std::vector<std::string> buffers;
  for (const auto& b : model->named_buffers()) buffers.push_back(b.key());
  EXPECT_EQ(buffers, (std::vector<std::string>{"model.rotary_emb.inv_freq"}));

  // qwen2: q/k/v bias but no o_proj bias.
  ModelConfig qwen = TinyConfig();
  qwen.model_type = "qwen2";
  LlamaForCausalLM q(qwen);
  std::vector<std::string> names = ParamNames(*q);
  auto has = [&names](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  EXPECT_TRUE(has("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(has("model.layers.1.self_attn.v_proj.bias"));
  EXPECT_FALSE(has("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_FALSE(has("model.layers.0.mlp.up_proj.bias"));
}

TEST(LlamaTest, InitFollowsTransformers) {
  ModelConfig config = TinyConfig();
  config.attention_bias = true;
  config.initializer_range = 0.05;
  torch::manual_seed(0);
  LlamaForCausalLM model(config);
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    const torch::Tensor& t = p.value();
    if (name.find("norm") != std::string::npos) {
      EXPECT_TRUE(torch::equal(t, torch::ones_like(t))) << name;
    } else if (name.size() > 5 && name.substr(name.size() - 5) == ".bias") {
      EXPECT_TRUE(torch::equal(t, torch::zeros_like(t))) << name;
    } else {
      EXPECT_NEAR(t.std().item<double>(), 0.05, 0.006) << name;
      EXPECT_NEAR(t.mean().item<double>(), 0.0, 0.006) << name;
    }
  }
}

TEST(LlamaTest, PadTokenRowIsZeroAndGetsNoGradient) {
  // transformers builds nn.Embedding(V, H, padding_idx=pad_token_id).
  ModelConfig config = TinyConfig();
  config.pad_token_id = 0;
  torch::manual_seed(0);
  LlamaForCausalLM model(config);
  torch::Tensor embed = model->model->embed_tokens->weight;
  EXPECT_TRUE(torch::equal(embed[0], torch::zeros({64})));
  {
    torch::NoGradGuard no_grad;
    embed[0].fill_(0.5);  // as after loading a checkpoint
  }
  torch::Tensor ids = torch::tensor({5, 0, 0, 9}, torch::kInt64).view({1, 4});
  LossParts loss = CausalLmLoss(model->forward(ids), ids);
  (loss.sum / loss.count).backward();
  EXPECT_TRUE(torch::equal(embed.grad()[0], torch::zeros({64})));
  EXPECT_GT(MaxAbs(embed.grad()[5]), 0.0);
}

TEST(LlamaTest, LaterTokensNeverChangeEarlierLogits) {
  LlamaForCausalLM model = MakeModel(TinyConfig(), 1);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = RandomIds(2, 9, 2);
  torch::Tensor changed = ids.clone();
  changed.select(1, 6).fill_(7);
  changed.select(1, 8).fill_(11);
  ASSERT_FALSE(torch::equal(ids, changed));
  torch::Tensor a = model->forward(ids), b = model->forward(changed);
  EXPECT_LE(MaxAbs(a.slice(1, 0, 6) - b.slice(1, 0, 6)), 1e-6);
  EXPECT_GT(MaxAbs(a.slice(1, 6) - b.slice(1, 6)), 1e-4);  // the change is visible after it
}

TEST(LlamaTest, PackedRowEqualsSequencesRunAlone) {
  LlamaForCausalLM model = MakeModel(TinyConfig(), 1);
  torch::NoGradGuard no_grad;
  torch::Tensor seq_a = RandomIds(1, 5, 3), seq_b = RandomIds(1, 4, 4), seq_c = RandomIds(1, 9, 5);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  // Row 0 packs a and b; row 1 is one plain sequence c.
  torch::Tensor ids = torch::cat({torch::cat({seq_a, seq_b}, 1), seq_c}, 0);
  torch::Tensor positions = torch::stack(
      {torch::cat({torch::arange(5, i64), torch::arange(4, i64)}), torch::arange(9, i64)});
  torch::Tensor packed = model->forward(ids, positions);  // (2, 9, V)

  torch::Tensor alone_a = model->forward(seq_a), alone_b = model->forward(seq_b),
                alone_c = model->forward(seq_c);
  EXPECT_LE(RelDiff(packed.slice(0, 0, 1).slice(1, 0, 5), alone_a), 1e-5);
  EXPECT_LE(RelDiff(packed.slice(0, 0, 1).slice(1, 5), alone_b), 1e-5);
  EXPECT_LE(RelDiff(packed.slice(0, 1, 2), alone_c), 1e-5);

  // Without the restart, b's tokens see a's: the mask is what makes them equal.
  torch::Tensor unpacked = model->forward(ids);
  EXPECT_GT(RelDiff(unpacked.slice(0, 0, 1).slice(1, 5), alone_b), 1e-3);
}

TEST(LlamaTest, GqaEqualsMhaWithRepeatedKvHeads) {
  ModelConfig gqa_config = TinyConfig();  // 4 heads, 2 kv heads
  ModelConfig mha_config = TinyConfig();
  mha_config.num_key_value_heads = 4;
  LlamaForCausalLM gqa = MakeModel(gqa_config, 1);
  LlamaForCausalLM mha = MakeModel(mha_config, 2);
  {
    torch::NoGradGuard no_grad;
    auto gqa_params = gqa->named_parameters();
    for (auto& p : mha->named_parameters()) {
      torch::Tensor src = gqa_params[p.key()];
      if (p.key().find("k_proj") != std::string::npos || p.key().find("v_proj") != std::string::npos) {
        // kv head j serves q heads 2j and 2j+1: repeat each head's rows in place.
        src = src.view({2, 16, 64}).repeat_interleave(2, 0).reshape({64, 64});
      }
      p.value().copy_(src);
    }
  }
  torch::NoGradGuard no_grad;
  torch::Tensor ids = RandomIds(2, 8, 3);
  EXPECT_LE(RelDiff(gqa->forward(ids), mha->forward(ids)), 1e-5);
}

TEST(LlamaTest, SlidingWindowLimitsReach) {
  // One layer, so a token's reach is exactly the window.
  ModelConfig config = TinyConfig();
  config.num_hidden_layers = 1;
  config.sliding_window = 3;
  ModelConfig full_config = config;
  full_config.sliding_window.reset();
  LlamaForCausalLM windowed = MakeModel(config, 1);
  LlamaForCausalLM full = MakeModel(full_config, 1);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = RandomIds(1, 8, 2);
  torch::Tensor changed = ids.clone();
  changed.select(1, 2).fill_((ids[0][2].item<int64_t>() + 1) % 250);

  torch::Tensor diff = (windowed->forward(ids) - windowed->forward(changed)).abs().amax({0, 2});  // (T)
  for (int64_t q = 0; q < 8; ++q) {
    // Key 2 is visible to query q iff q - 3 < 2 <= q.
    if (q >= 2 && q < 5) {
      EXPECT_GT(diff[q].item<double>(), 1e-4) << "q=" << q;
    } else {
      EXPECT_LE(diff[q].item<double>(), 1e-6) << "q=" << q;
    }
  }
  // Without the window the change reaches the end.
  torch::Tensor full_diff = (full->forward(ids) - full->forward(changed)).abs().amax({0, 2});
  EXPECT_GT(full_diff[7].item<double>(), 1e-4);
}

TEST(LlamaTest, TiedEmbeddingsShareTheEmbeddingMatrix) {
  ModelConfig config = TinyConfig();
  config.tie_word_embeddings = true;
  LlamaForCausalLM model = MakeModel(config, 1);
  std::vector<std::string> names = ParamNames(*model);
  EXPECT_EQ(std::count(names.begin(), names.end(), "lm_head.weight"), 0);
  EXPECT_FALSE(model->lm_head);
  EXPECT_TRUE(model->LmHeadWeight().is_same(model->model->embed_tokens->weight));
  torch::NoGradGuard no_grad;
  torch::Tensor ids = RandomIds(2, 6, 2);
  EXPECT_TRUE(torch::equal(
      model->forward(ids),
      torch::nn::functional::linear(model->Hidden(ids), model->model->embed_tokens->weight)));
}

TEST(LlamaTest, GraniteMultipliers) {
  ModelConfig plain = TinyConfig();
  plain.model_type = "granite";
  ModelConfig granite = plain;
  granite.embedding_multiplier = 4.0;
  granite.residual_multiplier = 0.5;
  granite.attention_multiplier = 0.2;
  ModelConfig scaled = granite;
  scaled.logits_scaling = 2.5;
  torch::NoGradGuard no_grad;
  torch::Tensor ids = RandomIds(2, 6, 2);
  torch::Tensor unscaled_logits = MakeModel(granite, 7)->forward(ids);
  // logits_scaling divides the logits, nothing else.
  EXPECT_TRUE(torch::equal(MakeModel(scaled, 7)->forward(ids), unscaled_logits / 2.5));

  torch::Tensor plain_logits = MakeModel(plain, 7)->forward(ids);
  EXPECT_GT(RelDiff(unscaled_logits, plain_logits), 1e-3);
  // Each multiplier on its own changes the output.
  for (int which = 0; which < 3; ++which) {
    ModelConfig one = plain;
    if (which == 0) one.embedding_multiplier = 4.0;
    if (which == 1) one.residual_multiplier = 0.5;
    if (which == 2) one.attention_multiplier = 0.2;
    EXPECT_GT(RelDiff(MakeModel(one, 7)->forward(ids), plain_logits), 1e-4) << "multiplier " << which;
  }
}

TEST(LlamaTest, Llama3RopeScalingAtKnownFrequencies) {
  // Llama-3.1's numbers: theta 5e5, head_dim 128, factor 8, low 1, high 4, 8192.
  ModelConfig config = TinyConfig();
  config.head_dim = 128;
  config.rope_theta = 500000.0;
  RotaryEmbedding base(config);
  config.rope_scaling.rope_type = "llama3";
  config.rope_scaling.factor = 8.0;
  config.rope_scaling.low_freq_factor = 1.0;
  config.rope_scaling.high_freq_factor = 4.0;
  config.rope_scaling.original_max_position_embeddings = 8192;
  RotaryEmbedding scaled(config);
  ASSERT_EQ(scaled->inv_freq.sizes(), (std::vector<int64_t>{64}));
  EXPECT_EQ(scaled->inv_freq.scalar_type(), torch::kFloat);

  auto plain_freq = [](int i) { return 1.0 / std::pow(500000.0, 2.0 * i / 128.0); };
  const double pi = 3.14159265358979323846;
  // i = 0: wavelength 2*pi < 8192/4: high frequency, unchanged.
  // i = 63: wavelength ~2.6e6 > 8192: low frequency, divided by 8.
  // i = 31: wavelength ~3.6e3 in (2048, 8192): interpolated.
  const double f31 = plain_freq(31);
  const double wavelen31 = 2 * pi / f31;
  ASSERT_GT(wavelen31, 2048.0);
  ASSERT_LT(wavelen31, 8192.0);
  const double smooth = (8192.0 / wavelen31 - 1.0) / (4.0 - 1.0);
  const std::map<int, double> expected = {
      {0, plain_freq(0)},
      {31, (1 - smooth) * f31 / 8.0 + smooth * f31},
      {63, plain_freq(63) / 8.0},
  };
  for (const auto& [i, want] : expected) {
    EXPECT_NEAR(scaled->inv_freq[i].item<double>(), want, 1e-5 * want) << "i=" << i;
    EXPECT_NEAR(base->inv_freq[i].item<double>(), plain_freq(i), 1e-5 * plain_freq(i)) << "i=" << i;
  }

  config.rope_scaling.rope_type = "linear";
  config.rope_scaling.factor = 4.0;
  RotaryEmbedding linear(config);
  EXPECT_TRUE(torch::allclose(linear->inv_freq, base->inv_freq / 4.0, 1e-7, 0));
}

TEST(LlamaTest, Bf16ForwardIsCloseToFp32) {
  LlamaForCausalLM fp32 = MakeModel(TinyConfig(), 1);
  LlamaForCausalLM bf16 = MakeModel(TinyConfig(), 1);
  bf16->to(torch::kBFloat16);
  EXPECT_EQ(bf16->model->embed_tokens->weight.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(bf16->model->rotary_emb->inv_freq.scalar_type(), torch::kFloat);
  torch::Tensor ids = RandomIds(2, 8, 2);
  torch::Tensor want = fp32->forward(ids).detach();
  torch::Tensor got = bf16->forward(ids);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_LE(RelDiff(got, want), 5e-2);

  // and it trains: the loss is fp32 and gradients reach the embedding.
  LossParts loss = CausalLmLoss(got, ids);
  EXPECT_EQ(loss.sum.scalar_type(), torch::kFloat);
  (loss.sum / loss.count).backward();
  ASSERT_TRUE(bf16->model->embed_tokens->weight.grad().defined());
  EXPECT_GT(MaxAbs(bf16->model->embed_tokens->weight.grad().to(torch::kFloat)), 0.0);
}

TEST(LlamaTest, CausalLmLossMatchesHandComputation) {
  torch::manual_seed(0);
  torch::Tensor logits = torch::randn({2, 4, 5}, torch::kDouble).to(torch::kFloat);
  // labels[:, 0] is never a target (99 is not even a valid class).
  torch::Tensor labels = torch::tensor({99, 2, -100, 3, 99, -100, 4, 0}, torch::kInt64).view({2, 4});
  LossParts loss = CausalLmLoss(logits, labels);

  double sum = 0;
  int count = 0;
  auto l = logits.accessor<float, 3>();
  auto y = labels.accessor<int64_t, 2>();
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t + 1 < 4; ++t) {
      const int64_t target = y[b][t + 1];
      if (target == -100) continue;
      double z = 0;
      for (int v = 0; v < 5; ++v) z += std::exp(static_cast<double>(l[b][t][v]));
      sum += std::log(z) - l[b][t][target];
      ++count;
    }
  }
  ASSERT_EQ(count, 4);
  EXPECT_EQ(loss.count.item<int64_t>(), 4);
  EXPECT_NEAR(loss.sum.item<double>(), sum, 1e-5 * std::abs(sum));
}

TEST(LlamaTest, NoDecayParameters) {
  EXPECT_TRUE(IsNoDecayParameter("model.norm.weight"));
  EXPECT_TRUE(IsNoDecayParameter("model.layers.3.input_layernorm.weight"));
  EXPECT_TRUE(IsNoDecayParameter("model.layers.3.post_attention_layernorm.weight"));
  EXPECT_TRUE(IsNoDecayParameter("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(IsNoDecayParameter("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_FALSE(IsNoDecayParameter("model.embed_tokens.weight"));
  EXPECT_FALSE(IsNoDecayParameter("lm_head.weight"));
}

// ---------------------------------------------------------------- weights --

// Writes `tensors` (name -> tensor, any dtype) as a single-file checkpoint.
void WriteCheckpoint(const std::string& dir,
                     const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::vector<torch::Tensor> keep;
  std::vector<TensorView> views;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor t = tensor.detach().contiguous();
    DType dtype = t.scalar_type() == torch::kBFloat16 ? DType::kBF16
                  : t.scalar_type() == torch::kInt64  ? DType::kI64
                                                      : DType::kF32;
    keep.push_back(t);
    views.push_back(TensorView{name, dtype, t.sizes().vec(), t.data_ptr(),
                               static_cast<uint64_t>(t.nbytes())});
  }
  ASSERT_TRUE(MakeDirs(dir).ok());
  absl::Status status = WriteSafetensorsCheckpoint(dir, views, 1ull << 30);
  ASSERT_TRUE(status.ok()) << status;
}

std::vector<std::pair<std::string, torch::Tensor>> Params(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

TEST(WeightsTest, SaveLoadRoundTripSingleAndSharded) {
  ModelConfig config = TinyConfig();
  config.attention_bias = true;
  LlamaForCausalLM model = MakeModel(config, 1);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = RandomIds(2, 7, 2);
  torch::Tensor want = model->forward(ids);

  for (uint64_t max_shard_bytes : {uint64_t{5} << 30, uint64_t{60000}}) {
    SCOPED_TRACE(max_shard_bytes);
    const std::string dir = TempDir("roundtrip_" + std::to_string(max_shard_bytes));
    absl::Status saved = SaveModel(model, dir, SaveOptions{max_shard_bytes, "", {}});
    ASSERT_TRUE(saved.ok()) << saved;
    const bool sharded = max_shard_bytes < 1000000;
    EXPECT_EQ(PathExists(dir + "/model.safetensors"), !sharded);
    EXPECT_EQ(PathExists(dir + "/model.safetensors.index.json"), sharded);
    EXPECT_FALSE(PathExists(dir + ".tmp." + std::to_string(::getpid())));

    absl::StatusOr<ModelConfig> reread = LoadModelConfig(dir);
    ASSERT_TRUE(reread.ok()) << reread.status();
    EXPECT_EQ(reread->hidden_size, 64);
    EXPECT_EQ(reread->num_key_value_heads, 2);
    LlamaForCausalLM loaded = MakeModel(*reread, 99);
    absl::Status status = LoadWeights(loaded, dir);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_TRUE(torch::equal(loaded->forward(ids), want));
    (void)RemoveTree(dir);
  }
}

TEST(WeightsTest, SaveReplacesAnExistingCheckpoint) {
  const std::string dir = TempDir("replace");
  LlamaForCausalLM first = MakeModel(TinyConfig(), 1);
  LlamaForCausalLM second = MakeModel(TinyConfig(), 2);
  ASSERT_TRUE(SaveModel(first, dir).ok());
  ASSERT_TRUE(SaveModel(second, dir, SaveOptions{2000, "", {}}).ok());  // different layout
  EXPECT_FALSE(PathExists(dir + "/model.safetensors"));  // no stale single file
  LlamaForCausalLM loaded = MakeModel(TinyConfig(), 3);
  ASSERT_TRUE(LoadWeights(loaded, dir).ok());
  torch::NoGradGuard no_grad;
  torch::Tensor ids = RandomIds(1, 5, 2);
  EXPECT_TRUE(torch::equal(loaded->forward(ids), second->forward(ids)));
  (void)RemoveTree(dir);
}

TEST(WeightsTest, Bf16FileLoadsIntoFp32Model) {
  const std::string dir = TempDir("bf16");
  LlamaForCausalLM model = MakeModel(TinyConfig(), 1);
  ASSERT_TRUE(SaveModel(model, dir, SaveOptions{5ull << 30, "bfloat16", {}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<SafetensorsCheckpoint::Entry> entry = (*ckpt)->Find("model.norm.weight");
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(entry->info->dtype, DType::kBF16);
  absl::StatusOr<ModelConfig> reread = LoadModelConfig(dir);
  ASSERT_TRUE(reread.ok());
  EXPECT_EQ(reread->torch_dtype, "bfloat16");

  LlamaForCausalLM loaded = MakeModel(TinyConfig(), 2);
  absl::Status status = LoadWeights(loaded, dir);
  ASSERT_TRUE(status.ok()) << status;
  auto original = model->named_parameters();
  for (const auto& p : loaded->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::equal(p.value(), original[p.key()].to(torch::kBFloat16).to(torch::kFloat)))
        << p.key();
  }
  // ... and an fp32 file into a bf16 model.
  const std::string dir32 = TempDir("fp32");
  ASSERT_TRUE(SaveModel(model, dir32).ok());
  LlamaForCausalLM bf16 = MakeModel(TinyConfig(), 2);
  bf16->to(torch::kBFloat16);
  ASSERT_TRUE(LoadWeights(bf16, dir32).ok());
  EXPECT_TRUE(torch::equal(bf16->model->norm->weight,
                           model->model->norm->weight.to(torch::kBFloat16)));
  (void)RemoveTree(dir);
  (void)RemoveTree(dir32);
}

TEST(WeightsTest, LoadReportsEveryProblemAndCopiesNothing) {
  LlamaForCausalLM source = MakeModel(TinyConfig(), 1);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [name, t] : Params(source)) {
    if (name == "model.layers.1.mlp.up_proj.weight") continue;  // missing
    if (name == "model.norm.weight") {
      tensors.emplace_back(name, torch::ones({32}));  // wrong shape
    } else if (name == "model.layers.0.self_attn.k_proj.weight") {
      tensors.emplace_back(name, torch::zeros({48, 64}));  // wrong shape
    } else if (name == "model.layers.0.input_layernorm.weight") {
      tensors.emplace_back(name, torch::ones({64}, torch::kInt64));  // not a float
    } else {
      tensors.emplace_back(name, t);
    }
  }
  tensors.emplace_back("model.extra.weight", torch::zeros({3}));           // unexpected
  tensors.emplace_back("model.rotary_emb.inv_freq", torch::zeros({8}));    // tolerated
  const std::string dir = TempDir("errors");
  WriteCheckpoint(dir, tensors);

  LlamaForCausalLM target = MakeModel(TinyConfig(), 2);
  torch::Tensor before = target->model->embed_tokens->weight.clone();
  absl::Status status = LoadWeights(target, dir);
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string msg(status.message());
  EXPECT_NE(msg.find("5 problems"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing tensor 'model.layers.1.mlp.up_proj.weight' (expected shape [160,64]"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors: tensor 'model.norm.weight' has shape [32] but "
                     "config.json (hidden_size=64) needs [64]"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'model.layers.0.self_attn.k_proj.weight' has shape [48,64] but "
                     "config.json (num_key_value_heads=2, head_dim=16, hidden_size=64) needs [32,64]"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("'model.layers.0.input_layernorm.weight' has dtype I64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected tensor 'model.extra.weight'"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("inv_freq"), std::string::npos) << msg;
  // Validation runs before any copy.
  EXPECT_TRUE(torch::equal(target->model->embed_tokens->weight, before));
  (void)RemoveTree(dir);
}

TEST(WeightsTest, TiedModelAcceptsAnLmHeadCopy) {
  ModelConfig config = TinyConfig();
  config.tie_word_embeddings = true;
  LlamaForCausalLM source = MakeModel(config, 1);
  auto tensors = Params(source);
  tensors.emplace_back("lm_head.weight", source->model->embed_tokens->weight);
  const std::string dir = TempDir("tied");
  WriteCheckpoint(dir, tensors);
  LlamaForCausalLM target = MakeModel(config, 2);
  absl::Status status = LoadWeights(target, dir);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(torch::equal(target->LmHeadWeight(), source->model->embed_tokens->weight));

  // An untied model needs lm_head.weight.
  ModelConfig untied = config;
  untied.tie_word_embeddings = false;
  LlamaForCausalLM other = MakeModel(untied, 2);
  const std::string dir2 = TempDir("untied");
  WriteCheckpoint(dir2, Params(source));
  status = LoadWeights(other, dir2);
  EXPECT_NE(std::string(status.message()).find("missing tensor 'lm_head.weight' (expected shape [250,64]"),
            std::string::npos)
      << status;
  (void)RemoveTree(dir);
  (void)RemoveTree(dir2);
}

}  // namespace
}  // namespace foak

// The NF4 base of method qlora (worker/quant/nf4_linears.h) on the debug model
// (examples/debug_model), and LoRA on top of it:
//   - quantised, the model's decoder projections hold ~0.5 byte per weight
//     (0.5625 exactly with fp32 scales), lm_head and the embeddings stay
//     dense, and the logits stay close to the dense model's;
//   - each projection computes exactly x dequant(W)^T;
//   - the three ways in (quantise a loaded model, load a checkpoint straight
//     into NF4, quantise as random init draws) give the same bits;
//   - dequantising gives back dense frozen weights equal to dequant(W);
//   - LoRA attaches to a quantised base (fp32 factors, gradient only to them),
//     refuses to merge into NF4 without touching the model, merges after
//     dequantising, and an adapter saved from it loads onto a dense base.
// Numerical closeness of a whole QLoRA training run to LoRA is
// tests/integration/train_qlora_test's job.
#include <gtest/gtest.h>
#include <torch/nn/functional/linear.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "kernels/nf4/nf4_op.h"
#include "tests/testing/worker_run.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_io.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/weights.h"
#include "worker/quant/nf4_linears.h"

namespace foak {
namespace {

namespace F = torch::nn::functional;
using testing::TempDir;

constexpr int64_t kProjections = 7 * 2;  // 7 per layer, 2 layers

ModelConfig DebugConfig() {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(FOAK_SOURCE_DIR "/examples/debug_model");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// RMS of (got - want) over RMS of want.
double RmsRelError(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()).item<double>();
}

LlamaForCausalLM MakeModel(uint64_t seed = 7, torch::Dtype dtype = torch::kFloat,
                           std::function<void(LinearImpl&)> hook = nullptr) {
  torch::manual_seed(seed);
  ModelInit init;
  init.options = torch::TensorOptions().dtype(dtype);
  init.on_decoder_linear = std::move(hook);
  return LlamaForCausalLM(DebugConfig(), init);
}

torch::Tensor Ids() {
  torch::manual_seed(99);
  return torch::randint(0, 258, {2, 11}, torch::kInt64);
}

double RelError(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kFloat) - want.to(torch::kFloat)).abs().max().item<double>() /
         std::max(want.abs().max().item<double>(), 1e-30);
}

std::vector<std::pair<std::string, Linear>> Projections(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, Linear>> out;
  for (const auto& item : model->named_modules("", false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (linear != nullptr && item.key() != "lm_head") out.emplace_back(item.key(), Linear(linear));
  }
  return out;
}

void ExpectSameCodes(LlamaForCausalLM& a, LlamaForCausalLM& b) {
  auto pa = Projections(a), pb = Projections(b);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    const ops::Nf4Weight* wa = FindNf4Weight(*pa[i].second);
    const ops::Nf4Weight* wb = FindNf4Weight(*pb[i].second);
    ASSERT_TRUE(wa != nullptr && wb != nullptr) << pa[i].first;
    EXPECT_TRUE(torch::equal(wa->packed, wb->packed)) << pa[i].first;
    EXPECT_TRUE(torch::equal(ops::Nf4Dequantize(*wa, torch::kFloat),
                             ops::Nf4Dequantize(*wb, torch::kFloat)))
        << pa[i].first;
  }
}

class Nf4LinearsTest : public ::testing::TestWithParam<bool> {};  // double_quant

TEST_P(Nf4LinearsTest, QuantisedModelIsCloseAndHoldsHalfAByteAWeight) {
  const bool double_quant = GetParam();
  LlamaForCausalLM dense = MakeModel();
  LlamaForCausalLM model = MakeModel();
  std::set<std::string> dense_names;
  int64_t projection_params = 0;
  for (const auto& [name, linear] : Projections(dense)) projection_params += linear->weight.numel();

  Nf4Options options;
  options.double_quant = double_quant;
  absl::StatusOr<Nf4Stats> stats = QuantizeDecoderLinears(model, options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->linears, kProjections);
  EXPECT_EQ(stats->params, projection_params);
  EXPECT_EQ(stats->dense_bytes, 4 * projection_params);  // fp32
  if (double_quant) {
    // 0.5 + 1/64 + the fp32 group scale and offset of each (small) weight.
    EXPECT_GT(stats->BytesPerParam(), 0.5 + 1.0 / 64);
    EXPECT_LT(stats->BytesPerParam(), 0.52);
  } else {
    EXPECT_DOUBLE_EQ(stats->BytesPerParam(), 0.5625);  // 0.5 + 4/64
  }

  // The projections left named_parameters(); the head, embeddings and norms did not.
  std::set<std::string> names;
  for (const auto& item : model->named_parameters()) names.insert(item.key());
  EXPECT_EQ(names.count("model.layers.0.self_attn.q_proj.weight"), 0u);
  EXPECT_EQ(names.count("model.layers.1.mlp.down_proj.weight"), 0u);
  EXPECT_EQ(names.count("lm_head.weight"), 1u);
  EXPECT_EQ(names.count("model.embed_tokens.weight"), 1u);
  EXPECT_EQ(names.count("model.norm.weight"), 1u);
  EXPECT_EQ(FindNf4Weight(*model->lm_head), nullptr);
  for (auto& [name, linear] : Projections(model)) {
    EXPECT_TRUE(linear->weight_released()) << name;
    EXPECT_EQ(linear->weight.numel(), 0) << name;
    EXPECT_EQ(linear->weight.scalar_type(), torch::kFloat) << name << ": the placeholder's dtype";
  }

  // Each projection is exactly x dequant(W)^T; the model stays near the dense one.
  torch::NoGradGuard no_grad;
  auto layer0 = model->model->layers[0]->as<DecoderLayerImpl>();
  const torch::Tensor x = torch::randn({3, 5, 64});
  const ops::Nf4Weight* w = FindNf4Weight(*layer0->self_attn->q_proj);
  ASSERT_NE(w, nullptr);
  EXPECT_LE(RelError(layer0->self_attn->q_proj->forward(x),
                     F::linear(x, ops::Nf4Dequantize(*w, torch::kFloat))),
            1e-6);
  auto dense0 = dense->model->layers[0]->as<DecoderLayerImpl>();
  // NF4 keeps a normally distributed weight within ~10% of its block's absmax.
  EXPECT_LE(RelError(ops::Nf4Dequantize(*w, torch::kFloat), dense0->self_attn->q_proj->weight),
            0.16);
  // NF4 of N(0, s^2) weights errs by ~9% RMS of each projection's output
  // (0.0913 recorded here, double quantisation or not: the scales' 8-bit
  // codes are far finer than the 4-bit ones); two layers of the debug model
  // carry that to ~11% of the logits (0.112 recorded), which moves the next-
  // token distribution by a KL of ~1.6e-4 nats.
  const torch::Tensor xg = torch::randn({3, 5, 64});
  EXPECT_LE(RmsRelError(layer0->mlp->gate_proj->forward(xg), dense0->mlp->gate_proj->forward(xg)),
            0.1);
  const torch::Tensor want = dense->forward(Ids());
  const torch::Tensor got = model->forward(Ids());
  const double logit_error = RmsRelError(got, want);
  EXPECT_LE(logit_error, 0.15) << "quantised logits drift from the dense model's";
  EXPECT_GT(logit_error, 0.0) << "quantisation changed nothing: is the base really NF4?";
  const torch::Tensor p_want = torch::log_softmax(want, -1), p_got = torch::log_softmax(got, -1);
  EXPECT_LE((p_want.exp() * (p_want - p_got)).sum(-1).mean().item<double>(), 1e-3);
  // The argmax mostly survives (0.91 recorded).
  const double agree =
      got.argmax(-1).eq(want.argmax(-1)).to(torch::kFloat).mean().item<double>();
  EXPECT_GE(agree, 0.85);

  const Nf4Stats counted = CountNf4(model);
  EXPECT_EQ(counted.nf4_bytes, stats->nf4_bytes);
  // Quantising again is a no-op.
  absl::StatusOr<Nf4Stats> again = QuantizeDecoderLinears(model, options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->nf4_bytes, stats->nf4_bytes);
  EXPECT_TRUE(torch::equal(model->forward(Ids()), got));
}

INSTANTIATE_TEST_SUITE_P(DoubleQuant, Nf4LinearsTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("DoubleQuant") : std::string("Fp32Scales");
                         });

TEST(Nf4Linears, LoadingQuantisingAndRandomInitGiveTheSameCodes) {
  Nf4Options options;
  TempDir tmp("nf4_linears_test");
  const std::string dir = tmp.path() + "/model";
  LlamaForCausalLM dense = MakeModel(11);
  ASSERT_TRUE(SaveModel(dense, dir).ok());

  // 1. Quantise a model loaded dense.
  LlamaForCausalLM loaded = MakeModel(1);
  ASSERT_TRUE(LoadWeights(loaded, dir).ok());
  ASSERT_TRUE(QuantizeDecoderLinears(loaded, options).ok());
  // 2. Load straight into NF4 (dense projections released as they are made).
  ModelInit init;
  init.random = false;
  init.on_decoder_linear = ReleaseOnCreateHook();
  LlamaForCausalLM streamed(DebugConfig(), init);
  EXPECT_EQ(QuantizeDecoderLinears(streamed, options).status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "nothing to quantise before loading";
  absl::StatusOr<Nf4Stats> stats = LoadNf4Weights(streamed, dir, options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->linears, kProjections);
  ExpectSameCodes(loaded, streamed);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(loaded->forward(Ids()), streamed->forward(Ids())));
  EXPECT_EQ(LoadNf4Weights(streamed, dir, options).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // 3. Quantise each projection as random init draws it: the same random
  //    stream, so the same codes as quantising the dense model of that seed.
  LlamaForCausalLM hooked = MakeModel(11, torch::kFloat, QuantizeOnCreateHook(options));
  ExpectSameCodes(loaded, hooked);
  EXPECT_TRUE(torch::equal(dense->lm_head->weight, hooked->lm_head->weight));

  // A pure-bf16 run quantises the weights in bf16; a merge that loads them
  // in fp32 gets the same codes by rounding through bf16.
  LlamaForCausalLM bf16 = MakeModel(1, torch::kBFloat16);
  ASSERT_TRUE(LoadWeights(bf16, dir).ok());
  ASSERT_TRUE(QuantizeDecoderLinears(bf16, options).ok());
  LlamaForCausalLM rounded(DebugConfig(), init);
  ASSERT_TRUE(LoadNf4Weights(rounded, dir, options, torch::kBFloat16).ok());
  ExpectSameCodes(bf16, rounded);
  EXPECT_EQ(FindNf4Weight(*Projections(rounded)[0].second)->dtype, torch::kFloat);
}

TEST(Nf4Linears, LoadErrorsNameTheTensor) {
  TempDir tmp("nf4_linears_test");
  const std::string dir = tmp.path() + "/model";
  LlamaForCausalLM dense = MakeModel();
  ASSERT_TRUE(SaveModel(dense, dir).ok());
  ModelConfig wider = DebugConfig();
  wider.intermediate_size = 192;
  ModelInit init;
  init.random = false;
  init.on_decoder_linear = ReleaseOnCreateHook();
  LlamaForCausalLM model(wider, init);
  const absl::Status s = LoadNf4Weights(model, dir, Nf4Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.0.mlp.gate_proj.weight' has shape [172,64]"),
            std::string::npos)
      << s;
}

TEST(Nf4Linears, SizesThatAreNotWholeBlocksAreRefused) {
  ModelConfig config = DebugConfig();
  config.hidden_size = 40;  // head_dim 10: q_proj (40, 40) fits, k_proj (20, 40) does not
  config.head_dim = 10;
  torch::manual_seed(1);
  LlamaForCausalLM model(config, ModelInit());
  const absl::Status s = QuantizeDecoderLinears(model, Nf4Options()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.0.self_attn.k_proj: weight (20, 40) has 800 elements"),
            std::string::npos)
      << s;
  EXPECT_EQ(CountNf4(model).linears, 0) << "checked before any layer changed";
  ModelInit init;
  init.on_decoder_linear = QuantizeOnCreateHook(Nf4Options());
  EXPECT_THROW(LlamaForCausalLM(config, init), c10::Error);
}

TEST(Nf4Linears, DequantisingGivesFrozenDenseWeights) {
  LlamaForCausalLM model = MakeModel();
  ASSERT_FALSE(DequantizeDecoderLinears(model).ok()) << "nothing in NF4 yet";
  ASSERT_TRUE(QuantizeDecoderLinears(model, Nf4Options()).ok());
  std::vector<torch::Tensor> want;
  for (auto& [name, linear] : Projections(model)) {
    want.push_back(ops::Nf4Dequantize(*FindNf4Weight(*linear), torch::kFloat));
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor quantised = model->forward(Ids());
  ASSERT_TRUE(DequantizeDecoderLinears(model).ok());
  EXPECT_EQ(CountNf4(model).linears, 0);
  size_t i = 0;
  for (auto& [name, linear] : Projections(model)) {
    EXPECT_FALSE(linear->weight_released()) << name;
    EXPECT_FALSE(linear->base) << name;
    EXPECT_TRUE(torch::equal(linear->weight, want[i++])) << name;
    EXPECT_FALSE(linear->weight.requires_grad()) << name;
    EXPECT_EQ(linear->named_parameters().size(), 1u) << name;
  }
  EXPECT_LE(RelError(model->forward(Ids()), quantised), 1e-5);
}

TEST(Nf4Linears, LoraTrainsOnAQuantisedBaseAndMergesOnlyWhenDense) {
  LlamaForCausalLM model = MakeModel(7, torch::kBFloat16);
  ASSERT_TRUE(QuantizeDecoderLinears(model, Nf4Options()).ok());
  torch::Tensor before;
  {
    torch::NoGradGuard no_grad;
    before = model->forward(Ids());
  }
  LoraConfig config;
  config.r = 4;
  config.alpha = 8;
  absl::StatusOr<std::vector<torch::Tensor>> trainable = ApplyLora(model, config);
  ASSERT_TRUE(trainable.ok()) << trainable.status();
  EXPECT_EQ(trainable->size(), static_cast<size_t>(2 * kProjections));
  for (auto& [name, p] : LoraNamedParameters(model)) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat) << name << ": fp32 over a bf16 base, as PEFT";
  }
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(model->forward(Ids()), before)) << "a fresh adapter is a no-op";
  }
  // B random so that A gets a gradient too; only the factors get one.
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& [name, p] : LoraNamedParameters(model)) {
      if (name.find(".lora_B.") != std::string::npos) p.normal_(0.0, 0.05);
    }
  }
  const torch::Tensor ids = Ids();
  LossParts loss = CausalLmLoss(model->forward(ids), ids);
  (loss.sum / loss.count).backward();
  for (const auto& item : model->named_parameters()) {
    const bool lora = item.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(item.value().grad().defined(), lora) << item.key();
    if (lora) {
      EXPECT_GT(item.value().grad().abs().max().item<double>(), 0.0) << item.key();
    }
  }

  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor adapted = model->forward(Ids());
  const absl::Status refused = MergeLora(model);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("DequantizeDecoderLinears"), std::string::npos) << refused;
  EXPECT_EQ(CountLoraAdapters(model), kProjections) << "a refused merge changes nothing";
  EXPECT_TRUE(torch::equal(model->forward(Ids()), adapted));

  // The adapter, saved from the NF4 model, loads onto a dense base.
  TempDir tmp("nf4_linears_test");
  ASSERT_TRUE(SaveLoraAdapter(model, config, tmp.path() + "/adapter", "base").ok());
  LlamaForCausalLM dense = MakeModel(7, torch::kBFloat16);
  ASSERT_TRUE(LoadLoraAdapter(dense, tmp.path() + "/adapter").ok());
  EXPECT_EQ(CountLoraAdapters(dense), kProjections);

  // Dense again, the adapter merges as plain LoRA (in fp32, where the merged
  // model must compute what base + adapter did up to rounding).
  LlamaForCausalLM fp32 = MakeModel(7);
  ASSERT_TRUE(QuantizeDecoderLinears(fp32, Nf4Options()).ok());
  const torch::Tensor fp32_base = fp32->forward(Ids());
  ASSERT_TRUE(LoadLoraAdapter(fp32, tmp.path() + "/adapter").ok());
  fp32->eval();
  const torch::Tensor fp32_adapted = fp32->forward(Ids());
  ASSERT_TRUE(DequantizeDecoderLinears(fp32).ok());
  ASSERT_TRUE(MergeLora(fp32).ok());
  EXPECT_EQ(CountLoraAdapters(fp32), 0);
  EXPECT_LE(RelError(fp32->forward(Ids()), fp32_adapted), 1e-5);
  EXPECT_GT(RelError(fp32_adapted, fp32_base), 1e-3) << "the adapter does something";
}

}  // namespace
}  // namespace foak

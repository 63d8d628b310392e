// LoRA on the debug model (examples/debug_model): what holds by construction —
// frozen base, trainable list, names, target selection, PEFT's init, the
// closed form of one layer, dropout, dtypes, merging, and adapter files
// (round trip and every kind of broken folder). Numerical parity with the
// real PEFT library is lora_peft_parity_test's job.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/functional/linear.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_io.h"
#include "worker/lora/lora_layer.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"

namespace foak {
namespace {

namespace F = torch::nn::functional;

ModelConfig DebugConfig() {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(FOAK_SOURCE_DIR "/examples/debug_model");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// The debug model with seeded random weights (the same for the same seed).
LlamaForCausalLM MakeModel(uint64_t seed = 7, torch::Dtype dtype = torch::kFloat) {
  torch::manual_seed(seed);
  ModelInit init;
  init.options = torch::TensorOptions().dtype(dtype);
  return LlamaForCausalLM(DebugConfig(), init);
}

torch::Tensor Ids() {
  torch::manual_seed(99);
  return torch::randint(0, 258, {2, 11}, torch::kInt64);
}

// Gives every lora_B random values, so the adapters change the output.
void RandomizeB(LlamaForCausalLM& model, uint64_t seed = 3) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : LoraNamedParameters(model)) {
    if (name.find(".lora_B.") != std::string::npos) p.normal_(0.0, 0.05);
  }
}

double RelError(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kFloat) - want.to(torch::kFloat)).abs().max().item<double>() /
         std::max(want.abs().max().item<double>(), 1e-30);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/foak_lora_test_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { RemoveTree(path_).IgnoreError(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(LoraTest, FreezesTheBaseAndReturnsOnlyLoraParameters) {
  LlamaForCausalLM model = MakeModel();
  const size_t base_count = model->parameters().size();
  absl::StatusOr<std::vector<torch::Tensor>> trainable = ApplyLora(model, LoraConfig());
  ASSERT_TRUE(trainable.ok()) << trainable.status();
  const int64_t layers = model->config().num_hidden_layers;
  EXPECT_EQ(trainable->size(), static_cast<size_t>(2 * 7 * layers));
  EXPECT_EQ(CountLoraAdapters(model), 7 * layers);
  EXPECT_EQ(model->parameters().size(), base_count + trainable->size());

  std::set<const void*> trainable_ptrs;
  for (const torch::Tensor& t : *trainable) trainable_ptrs.insert(t.unsafeGetTensorImpl());
  for (const auto& item : model->named_parameters()) {
    const bool is_lora = item.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(item.value().requires_grad(), is_lora) << item.key();
    EXPECT_EQ(trainable_ptrs.count(item.value().unsafeGetTensorImpl()) > 0, is_lora) << item.key();
  }
  // PEFT's names (after its base_model.model. prefix) and shapes.
  std::map<std::string, torch::Tensor> params;
  for (const auto& item : model->named_parameters()) params[item.key()] = item.value();
  ASSERT_TRUE(params.count("model.layers.0.self_attn.q_proj.lora_A.weight"));
  ASSERT_TRUE(params.count("model.layers.1.mlp.down_proj.lora_B.weight"));
  EXPECT_EQ(params.at("model.layers.0.self_attn.k_proj.lora_A.weight").sizes(),
            torch::IntArrayRef({8, 64}));
  EXPECT_EQ(params.at("model.layers.0.self_attn.k_proj.lora_B.weight").sizes(),
            torch::IntArrayRef({32, 8}));  // 2 kv heads x head_dim 16
  EXPECT_EQ(params.at("model.layers.1.mlp.down_proj.lora_A.weight").sizes(),
            torch::IntArrayRef({8, 172}));
  for (const auto& item : params) EXPECT_EQ(item.first.find("lm_head.lora"), std::string::npos);

  EXPECT_EQ(ApplyLora(model, LoraConfig()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LoraTest, BaseGetsNoGradientAndEveryAdapterDoes) {
  LlamaForCausalLM model = MakeModel();
  ASSERT_TRUE(ApplyLora(model, LoraConfig()).ok());
  RandomizeB(model);  // with B = 0, lora_A's gradient would be 0 too
  torch::Tensor ids = Ids();
  LossParts loss = CausalLmLoss(model->forward(ids), ids);
  (loss.sum / loss.count).backward();
  for (const auto& item : model->named_parameters()) {
    if (item.key().find(".lora_") != std::string::npos) {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      EXPECT_GT(item.value().grad().abs().max().item<double>(), 0.0) << item.key();
    } else {
      EXPECT_FALSE(item.value().grad().defined()) << item.key() << " got a gradient";
    }
  }
}

TEST(LoraTest, FreshAdapterIsANoOpWithPeftInit) {
  LlamaForCausalLM model = MakeModel();
  torch::NoGradGuard no_grad;
  const torch::Tensor before = model->forward(Ids());
  ASSERT_TRUE(ApplyLora(model, LoraConfig()).ok());
  EXPECT_TRUE(torch::equal(model->forward(Ids()), before));
  for (auto& [name, p] : LoraNamedParameters(model)) {
    if (name.find(".lora_B.") != std::string::npos) {
      EXPECT_EQ(p.abs().max().item<double>(), 0.0) << name;
    } else {
      // kaiming_uniform(a=sqrt(5)): U(-1/sqrt(in), 1/sqrt(in)), std bound/sqrt(3).
      const double bound = 1.0 / std::sqrt(static_cast<double>(p.size(1)));
      EXPECT_LE(p.abs().max().item<double>(), bound) << name;
      EXPECT_NEAR(p.std().item<double>(), bound / std::sqrt(3.0), 0.25 * bound) << name;
    }
  }
}

TEST(LoraTest, SelectsOnlyTheNamedTargets) {
  LlamaForCausalLM model = MakeModel();
  LoraConfig config;
  config.target_modules = {"v_proj", "q_proj"};
  ASSERT_TRUE(ApplyLora(model, config).ok());
  std::set<std::string> adapted;
  for (auto& [name, p] : LoraNamedParameters(model)) adapted.insert(name.substr(0, name.find(".lora_")));
  EXPECT_EQ(adapted, (std::set<std::string>{
                         "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                         "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
  EXPECT_FALSE(model->model->layers[0]->as<DecoderLayerImpl>()->self_attn->k_proj->adapter);
  config.target_modules = {"lm_head"};
  LlamaForCausalLM other = MakeModel();
  EXPECT_EQ(ApplyLora(other, config).status().code(), absl::StatusCode::kInvalidArgument);
}

// One layer against the closed form y = x W^T + b + s B A x, and dropout.
TEST(LoraTest, LayerMatchesClosedFormAndDropsOutOnlyTheAdapterInput) {
  torch::manual_seed(5);
  ModelInit init;
  Linear linear(24, 10, /*bias=*/true, 0.1, init);
  {
    torch::NoGradGuard no_grad;
    linear->bias.normal_();
  }
  AttachLoraAdapter(*linear, /*r=*/3, /*scale=*/2.5, /*dropout=*/0.5);
  const torch::Tensor x = torch::randn({4, 5, 24});
  const torch::Tensor base = F::linear(x, linear->weight, linear->bias);
  torch::NoGradGuard no_grad;
  // Training mode with B = 0: dropout touches only the adapter branch, so the
  // output is exactly the base output.
  linear->train();
  EXPECT_TRUE(torch::equal(linear->forward(x), base));

  const LoraAdapter* adapter = FindLoraAdapter(*linear);
  ASSERT_NE(adapter, nullptr);
  adapter->lora_B->weight.normal_();
  const torch::Tensor want =
      base + 2.5 * torch::matmul(torch::matmul(x, adapter->lora_A->weight.t()),
                                 adapter->lora_B->weight.t());
  EXPECT_FALSE(torch::allclose(linear->forward(x), linear->forward(x)));  // random masks
  EXPECT_GT(RelError(linear->forward(x), want), 1e-3);
  linear->eval();
  EXPECT_LE(RelError(linear->forward(x), want), 1e-6);
  EXPECT_TRUE(torch::equal(linear->forward(x), linear->forward(x)));

  DetachLoraAdapter(*linear, /*merge=*/true);
  EXPECT_FALSE(linear->adapter);
  EXPECT_EQ(linear->named_parameters().size(), 2u);  // weight, bias
  EXPECT_LE(RelError(linear->forward(x), want), 1e-5);
}

TEST(LoraTest, Bf16BaseGetsFp32AdaptersAsPeftDoes) {
  LlamaForCausalLM model = MakeModel(7, torch::kBFloat16);
  ASSERT_TRUE(ApplyLora(model, LoraConfig()).ok());
  for (auto& [name, p] : LoraNamedParameters(model)) EXPECT_EQ(p.scalar_type(), torch::kFloat) << name;
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->forward(Ids()).scalar_type(), torch::kBFloat16);
}

TEST(LoraTest, MergeKeepsTheOutputAndSavesAPlainModel) {
  LlamaForCausalLM model = MakeModel();
  EXPECT_EQ(MergeLora(model).code(), absl::StatusCode::kFailedPrecondition);
  LoraConfig config;
  config.r = 4;
  config.alpha = 16;
  config.use_rslora = true;
  config.dropout = 0.1;
  ASSERT_TRUE(ApplyLora(model, config).ok());
  RandomizeB(model);
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor base_weight = model->model->layers[0]->as<DecoderLayerImpl>()->mlp->up_proj->weight.clone();
  const torch::Tensor adapted = model->forward(Ids());
  ASSERT_TRUE(MergeLora(model).ok());
  EXPECT_EQ(CountLoraAdapters(model), 0);
  EXPECT_TRUE(LoraNamedParameters(model).empty());
  EXPECT_FALSE(torch::equal(model->model->layers[0]->as<DecoderLayerImpl>()->mlp->up_proj->weight,
                            base_weight));
  EXPECT_LE(RelError(model->forward(Ids()), adapted), 1e-5);

  TempDir tmp;
  const std::string dir = tmp.path() + "/merged";
  ASSERT_TRUE(SaveModel(model, dir).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  for (const TensorInfo& info : (*file)->tensors()) EXPECT_EQ(info.name.find("lora"), std::string::npos);
  LlamaForCausalLM reloaded(DebugConfig());
  ASSERT_TRUE(LoadWeights(reloaded, dir).ok());
  EXPECT_LE(RelError(reloaded->forward(Ids()), adapted), 1e-5);
}

TEST(LoraTest, SavedAdapterRoundTripsExactly) {
  LlamaForCausalLM model = MakeModel();
  LoraConfig config;
  config.r = 6;
  config.alpha = 12;
  config.dropout = 0.05;
  config.target_modules = {"q_proj", "o_proj", "up_proj"};
  ASSERT_TRUE(ApplyLora(model, config).ok());
  RandomizeB(model);
  model->eval();
  TempDir tmp;
  const std::string dir = tmp.path() + "/adapter";
  ASSERT_TRUE(SaveLoraAdapter(model, config, dir + "/", "base/model").ok());
  ASSERT_TRUE(SaveLoraAdapter(model, config, dir, "base/model").ok());  // replaces the folder
  EXPECT_EQ(ListDir(dir).value(),
            (std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));
  EXPECT_EQ(ListDir(tmp.path()).value(), std::vector<std::string>{"adapter"});  // no temp left
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(dir + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->tensors().size(), 2u * 3 * 2);
  EXPECT_NE((*file)->Find("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"), nullptr);

  LlamaForCausalLM fresh = MakeModel();  // same seed: same base weights
  absl::StatusOr<LoraConfig> loaded = LoadLoraAdapter(fresh, dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->r, 6);
  EXPECT_DOUBLE_EQ(loaded->Scale(), 2.0);
  EXPECT_DOUBLE_EQ(loaded->dropout, 0.05);
  fresh->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(fresh->forward(Ids()), model->forward(Ids())));
  for (const auto& item : fresh->named_parameters()) {
    EXPECT_EQ(item.value().requires_grad(), item.key().find(".lora_") != std::string::npos);
  }

  LoraConfig other = config;
  other.r = 4;
  EXPECT_EQ(SaveLoraAdapter(model, other, dir, "").code(), absl::StatusCode::kInvalidArgument);
  other = config;
  other.target_modules = {"q_proj"};
  const absl::Status mismatch = SaveLoraAdapter(model, other, dir, "");
  EXPECT_NE(mismatch.message().find("o_proj has LoRA adapter"), std::string::npos) << mismatch;
  LlamaForCausalLM plain = MakeModel();
  EXPECT_EQ(SaveLoraAdapter(plain, config, dir, "").code(),
            absl::StatusCode::kFailedPrecondition);
}

// Broken adapter folders: each error names the file and what is wrong, and
// leaves the model untouched.
class BadAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LlamaForCausalLM model = MakeModel();
    ASSERT_TRUE(ApplyLora(model, config_).ok());
    dir_ = tmp_.path() + "/adapter";
    ASSERT_TRUE(SaveLoraAdapter(model, config_, dir_, "base").ok());
  }
  std::string Load() {
    LlamaForCausalLM model = MakeModel();
    absl::StatusOr<LoraConfig> c = LoadLoraAdapter(model, dir_);
    EXPECT_EQ(CountLoraAdapters(model), c.ok() ? 7 * 2 : 0);
    if (c.ok()) return "ok";
    for (const auto& p : model->parameters()) EXPECT_TRUE(p.requires_grad());
    return std::string(c.status().message());
  }
  void EditConfig(const std::string& key, const nlohmann::json& value) {
    const std::string path = dir_ + "/adapter_config.json";
    nlohmann::json j = nlohmann::json::parse(ReadFileToString(path).value());
    j[key] = value;
    ASSERT_TRUE(WriteFileAtomically(path, j.dump()).ok());
  }
  // Rewrites the weights file keeping the tensors `keep` accepts.
  template <typename Keep>
  void RewriteWeights(Keep keep) {
    const std::string path = dir_ + "/adapter_model.safetensors";
    std::unique_ptr<SafetensorsFile> file = SafetensorsFile::Open(path).value();
    std::vector<TensorView> views;
    for (const TensorInfo& info : file->tensors()) {
      if (keep(info.name)) {
        views.push_back({info.name, info.dtype, info.shape, file->Data(info), info.NumBytes()});
      }
    }
    const std::string tmp = path + ".new";
    ASSERT_TRUE(WriteSafetensors(tmp, views).ok());
    ASSERT_EQ(::rename(tmp.c_str(), path.c_str()), 0);
  }
  LoraConfig config_;
  TempDir tmp_;
  std::string dir_;
};

TEST_F(BadAdapterTest, IntactFolderLoads) { EXPECT_EQ(Load(), "ok"); }

TEST_F(BadAdapterTest, MissingConfig) {
  ASSERT_TRUE(RemoveTree(dir_ + "/adapter_config.json").ok());
  EXPECT_NE(Load().find("adapter_config.json"), std::string::npos);
}

TEST_F(BadAdapterTest, MissingWeightsFile) {
  ASSERT_TRUE(RemoveTree(dir_ + "/adapter_model.safetensors").ok());
  EXPECT_NE(Load().find("adapter_model.safetensors does not exist"), std::string::npos);
}

TEST_F(BadAdapterTest, WrongRank) {
  EditConfig("r", 4);
  const std::string error = Load();
  EXPECT_NE(error.find("'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has "
                       "shape [8,64], expected [4,64] (r=4"),
            std::string::npos)
      << error;
}

TEST_F(BadAdapterTest, TensorMissing) {
  const std::string gone = "base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight";
  RewriteWeights([&](const std::string& name) { return name != gone; });
  const std::string error = Load();
  EXPECT_NE(error.find("has no tensor '" + gone + "'"), std::string::npos) << error;
}

TEST_F(BadAdapterTest, TensorForAModuleNotTargeted) {
  EditConfig("target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"});
  const std::string error = Load();
  EXPECT_NE(error.find("unexpected tensor 'base_model.model.model.layers.0.mlp.down_proj.lora_A"),
            std::string::npos)
      << error;
}

TEST_F(BadAdapterTest, UnsupportedFeature) {
  EditConfig("use_dora", true);
  EXPECT_NE(Load().find("use_dora"), std::string::npos);
}

}  // namespace
}  // namespace foak

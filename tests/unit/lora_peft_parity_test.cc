// Numerical parity with the real PEFT library (0.21): every folder under
// tests/testdata/peft/ with a reference.json (all but foak_export) holds an adapter that PEFT saved
// with save_pretrained for a tiny base model of tests/testdata/parity/, and
// what PEFT computed with it in fp32 on CPU (reference.safetensors, made by
// scripts/make_peft_fixtures.py; reference.json names the base). foak must
// load base + adapter and reproduce the logits and loss to 1e-5, the gradient
// of every lora_A / lora_B to 1e-4 (max-norm relative, as parity_test), give
// no base parameter a gradient, and reproduce merge_and_unload()'s logits.
//
// The other direction, PEFT loading an adapter foak saved: ExportForPeft
// saves a foak adapter (random, nonzero B) for parity/llama3_gqa and foak's
// logits, and checks foak itself reloads them; with FOAK_PEFT_EXPORT_DIR set
// it writes them there for scripts/check_peft_load.py. The copy committed in
// tests/testdata/peft/foak_export/ (which PEFT was checked to load with the
// same logits) must keep giving foak those logits.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>
#include <torch/utils.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_io.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"

namespace foak {
namespace {

const std::string kPeftDir = FOAK_TESTDATA_DIR "/peft";
const std::string kParityDir = FOAK_TESTDATA_DIR "/parity";

// Reads fp32 / int64 tensors of a safetensors file (copies).
class TensorFile {
 public:
  explicit TensorFile(const std::string& path) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    EXPECT_TRUE(file.ok()) << file.status();
    if (file.ok()) file_ = std::move(*file);
  }
  bool ok() const { return file_ != nullptr; }
  bool Has(const std::string& name) const { return file_->Find(name) != nullptr; }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const TensorInfo& info : file_->tensors()) names.push_back(info.name);
    return names;
  }
  torch::Tensor Get(const std::string& name) const {
    const TensorInfo* info = file_->Find(name);
    if (info == nullptr) {
      ADD_FAILURE() << file_->path() << " has no tensor " << name;
      return torch::zeros({1});
    }
    const torch::Dtype dtype = info->dtype == DType::kI64 ? torch::kInt64 : torch::kFloat;
    EXPECT_TRUE(info->dtype == DType::kI64 || info->dtype == DType::kF32) << name;
    return torch::from_blob(const_cast<void*>(file_->Data(*info)), info->shape,
                            torch::TensorOptions().dtype(dtype))
        .clone();
  }

 private:
  std::unique_ptr<SafetensorsFile> file_;
};

double RelError(const torch::Tensor& got, const torch::Tensor& want) {
  return (got.to(torch::kFloat) - want).abs().max().item<double>() /
         std::max(want.abs().max().item<double>(), 1e-30);
}

LlamaForCausalLM LoadBase(const std::string& base_case) {
  const std::string dir = kParityDir + "/" + base_case;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  LlamaForCausalLM model(*config);
  absl::Status loaded = LoadWeights(model, dir);
  EXPECT_TRUE(loaded.ok()) << loaded;
  return model;
}

class LoraPeftParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraPeftParityTest, LogitsLossGradientsAndMergeMatchPeft) {
  const std::string dir = kPeftDir + "/" + GetParam();
  const nlohmann::json meta =
      nlohmann::json::parse(ReadFileToString(dir + "/reference.json").value());
  LlamaForCausalLM model = LoadBase(meta.at("base_case").get<std::string>());
  absl::StatusOr<LoraConfig> config = LoadLoraAdapter(model, dir);
  ASSERT_TRUE(config.ok()) << config.status();
  model->eval();  // lora_dropout is 0 here; eval as PEFT's reference ran
  TensorFile ref(dir + "/reference.safetensors");
  ASSERT_TRUE(ref.ok());

  const torch::Tensor input_ids = ref.Get("input_ids");
  const torch::Tensor logits = model->forward(input_ids);
  EXPECT_LE(RelError(logits.detach(), ref.Get("logits")), 1e-5) << "logits";
  LossParts parts = CausalLmLoss(logits, ref.Get("labels"));
  const torch::Tensor loss = parts.sum / parts.count;
  EXPECT_LE(RelError(loss.detach(), ref.Get("loss")), 1e-5) << "loss";

  loss.backward();
  std::set<std::string> lora_names;
  for (const auto& item : model->named_parameters()) {
    if (item.key().find(".lora_") == std::string::npos) {
      EXPECT_FALSE(item.value().grad().defined()) << item.key() << " (base) got a gradient";
      continue;
    }
    lora_names.insert(item.key());
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_LE(RelError(item.value().grad(), ref.Get("grad." + item.key())), 1e-4) << item.key();
  }
  std::set<std::string> ref_names;
  for (const std::string& name : ref.Names()) {
    if (name.rfind("grad.", 0) == 0) ref_names.insert(name.substr(5));
  }
  EXPECT_EQ(lora_names, ref_names);
  EXPECT_EQ(static_cast<int64_t>(lora_names.size()), meta.at("num_lora_parameters").get<int64_t>());

  ASSERT_TRUE(MergeLora(model).ok());
  torch::NoGradGuard no_grad;
  EXPECT_LE(RelError(model->forward(input_ids), ref.Get("merged_logits")), 1e-5) << "merged";
}

std::vector<std::string> PeftCases() {
  std::vector<std::string> cases;
  for (const std::string& name : ListDir(kPeftDir).value_or(std::vector<std::string>{})) {
    if (PathExists(kPeftDir + "/" + name + "/reference.json")) cases.push_back(name);
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LoraPeftParityTest, ::testing::ValuesIn(PeftCases()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(LoraPeftParityTest, FixturesArePresent) { EXPECT_GE(PeftCases().size(), 3u); }

// foak's export for check_peft_load.py: r=8, alpha=16, dropout 0.05 (inactive
// in eval), all seven projections, B ~ 0.05 N(0, 1) from a fixed seed.
torch::Tensor ExportInputIds() {
  torch::manual_seed(4321);
  return torch::randint(3, 250, {2, 12}, torch::kInt64);
}

TEST(LoraPeftExportTest, ExportForPeft) {
  const char* env = std::getenv("FOAK_PEFT_EXPORT_DIR");
  char tmpl[] = "/tmp/foak_lora_export_XXXXXX";
  const std::string out = env != nullptr ? std::string(env) : std::string(::mkdtemp(tmpl));
  LlamaForCausalLM model = LoadBase("llama3_gqa");
  LoraConfig config;
  config.r = 8;
  config.alpha = 16;
  config.dropout = 0.05;
  ASSERT_TRUE(ApplyLora(model, config).ok());
  torch::manual_seed(1234);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : LoraNamedParameters(model)) {
      if (name.find(".lora_B.") != std::string::npos) p.normal_(0.0, 0.05);
    }
  }
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = ExportInputIds();
  const torch::Tensor logits = model->forward(ids).contiguous();
  ASSERT_TRUE(MakeDirs(out).ok());
  ASSERT_TRUE(SaveLoraAdapter(model, config, out + "/adapter", "tests/testdata/parity/llama3_gqa").ok());
  ASSERT_TRUE(WriteSafetensors(out + "/logits.safetensors",
                               {{"input_ids", DType::kI64, {2, 12}, ids.data_ptr(),
                                 static_cast<uint64_t>(ids.nbytes())},
                                {"logits", DType::kF32,
                                 std::vector<int64_t>(logits.sizes().begin(), logits.sizes().end()),
                                 logits.data_ptr(), static_cast<uint64_t>(logits.nbytes())}})
                  .ok());
  // The export reloads into a fresh base with the same logits.
  LlamaForCausalLM fresh = LoadBase("llama3_gqa");
  ASSERT_TRUE(LoadLoraAdapter(fresh, out + "/adapter").ok());
  fresh->eval();
  EXPECT_TRUE(torch::equal(fresh->forward(ids), logits));
  if (env == nullptr) RemoveTree(out).IgnoreError();
}

TEST(LoraPeftExportTest, CommittedExportStillGivesItsLogits) {
  const std::string dir = kPeftDir + "/foak_export";
  ASSERT_TRUE(PathExists(dir + "/adapter/adapter_config.json"))
      << "run FOAK_PEFT_EXPORT_DIR=" << dir << " lora_peft_parity_test";
  LlamaForCausalLM model = LoadBase("llama3_gqa");
  ASSERT_TRUE(LoadLoraAdapter(model, dir + "/adapter").ok());
  model->eval();
  TensorFile ref(dir + "/logits.safetensors");
  ASSERT_TRUE(ref.ok());
  EXPECT_TRUE(torch::equal(ref.Get("input_ids"), ExportInputIds()));
  torch::NoGradGuard no_grad;
  EXPECT_LE(RelError(model->forward(ref.Get("input_ids")), ref.Get("logits")), 1e-6);
}

}  // namespace
}  // namespace foak

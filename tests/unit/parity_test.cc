// Numerical parity with Hugging Face transformers: every folder under
// tests/testdata/parity/ holds a tiny model saved by transformers
// (config.json + model.safetensors) and what transformers computed with it in
// fp32 on CPU (reference.safetensors, made by scripts/make_parity_fixtures.py).
// foak must load the folder and reproduce the logits and loss to 1e-5 and the
// gradient of every parameter to 1e-4, each relative to the largest reference
// magnitude of that tensor (a max-norm criterion: element-wise relative error
// is meaningless for entries near zero).
#include <dirent.h>
#include <sys/stat.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"

namespace foak {
namespace {

const char kParityDir[] = FOAK_TESTDATA_DIR "/parity";

// Subfolders of kParityDir, sorted (POSIX, not std::filesystem: see weights.cc).
std::vector<std::string> ParityCases() {
  std::vector<std::string> cases;
  DIR* dir = ::opendir(kParityDir);
  if (dir == nullptr) return cases;
  while (const struct dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    struct stat st;
    if (name != "." && name != ".." &&
        ::stat((std::string(kParityDir) + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      cases.push_back(name);
    }
  }
  ::closedir(dir);
  std::sort(cases.begin(), cases.end());
  return cases;
}

// The reference tensors, copied out of the mapping.
class Reference {
 public:
  explicit Reference(const std::string& path) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    if (!file.ok()) {
      error_ = std::string(file.status().message());
      return;
    }
    file_ = std::move(*file);
  }
  const std::string& error() const { return error_; }
  bool Has(const std::string& name) const { return file_->Find(name) != nullptr; }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const TensorInfo& info : file_->tensors()) names.push_back(info.name);
    return names;
  }
  torch::Tensor Get(const std::string& name) const {
    const TensorInfo* info = file_->Find(name);
    if (info == nullptr) {
      ADD_FAILURE() << file_->path() << " has no tensor '" << name << "'";
      return torch::Tensor();
    }
    torch::Dtype dtype = info->dtype == DType::kI64 ? torch::kInt64 : torch::kFloat32;
    EXPECT_TRUE(info->dtype == DType::kI64 || info->dtype == DType::kF32)
        << name << " has dtype " << DTypeName(info->dtype);
    return torch::from_blob(const_cast<void*>(file_->Data(*info)), info->shape,
                            torch::TensorOptions().dtype(dtype))
        .clone();
  }

 private:
  std::unique_ptr<SafetensorsFile> file_;
  std::string error_;
};

// max |got - want| / max |want|
double RelError(const torch::Tensor& got, const torch::Tensor& want) {
  const double scale = std::max(want.abs().max().item<double>(), 1e-30);
  return (got.to(torch::kFloat) - want).abs().max().item<double>() / scale;
}

class ParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ParityTest, LogitsLossAndGradientsMatchTransformers) {
  const std::string dir = std::string(kParityDir) + "/" + GetParam();
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  LlamaForCausalLM model(*config);
  absl::Status loaded = LoadWeights(model, dir);
  ASSERT_TRUE(loaded.ok()) << loaded;
  Reference ref(dir + "/reference.safetensors");
  ASSERT_TRUE(ref.error().empty()) << ref.error();

  torch::Tensor input_ids = ref.Get("input_ids");
  torch::Tensor labels = ref.Get("labels");
  torch::Tensor position_ids = ref.Has("position_ids") ? ref.Get("position_ids") : torch::Tensor();
  torch::Tensor logits = model->forward(input_ids, position_ids);
  torch::Tensor want_logits = ref.Get("logits");
  ASSERT_EQ(logits.sizes(), want_logits.sizes());
  EXPECT_LE(RelError(logits.detach(), want_logits), 1e-5) << "logits";

  LossParts parts = CausalLmLoss(logits, labels);
  torch::Tensor loss = parts.sum / parts.count;
  EXPECT_LE(RelError(loss.detach(), ref.Get("loss")), 1e-5)
      << "loss " << loss.item<double>() << " vs " << ref.Get("loss").item<double>();

  loss.backward();
  std::set<std::string> params;
  for (const auto& p : model->named_parameters()) {
    params.insert(p.key());
    const std::string grad_name = "grad." + p.key();
    if (!ref.Has(grad_name)) {
      ADD_FAILURE() << "reference has no " << grad_name;
      continue;
    }
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_LE(RelError(p.value().grad(), ref.Get(grad_name)), 1e-4) << grad_name;
  }
  for (const std::string& name : ref.Names()) {
    if (name.rfind("grad.", 0) == 0) {
      EXPECT_TRUE(params.count(name.substr(5))) << name << " names no parameter of the model";
    }
  }

  // Packed row: several sequences in one row with position_ids restarting at
  // 0; the reference ran each sequence alone, so this checks that position_ids
  // both place RoPE and keep packed sequences from attending to each other.
  ASSERT_TRUE(ref.Has("packed_input_ids")) << "fixture predates packed rows: rerun "
                                              "scripts/make_parity_fixtures.py";
  {
    torch::NoGradGuard no_grad;
    torch::Tensor packed = model->forward(ref.Get("packed_input_ids"), ref.Get("packed_position_ids"));
    EXPECT_LE(RelError(packed, ref.Get("packed_logits")), 1e-5) << "packed_logits";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParityTest, ::testing::ValuesIn(ParityCases()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ParityTest);

TEST(ParityFixtures, Present) {
  if (ParityCases().empty()) {
    GTEST_SKIP() << "no parity fixtures in " << kParityDir
                 << " (make them on the GPU host with scripts/make_parity_fixtures.py)";
  }
  SUCCEED();
}

}  // namespace
}  // namespace foak

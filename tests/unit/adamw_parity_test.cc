// Optimizer parity with PyTorch: for every tests/testdata/parity/<case>/,
// scripts/make_parity_fixtures.py ran 3 steps of torch.optim.AdamW (constant
// lr, no decay on norms and biases, clip_grad_norm_) on one batch with
// transformers in fp32 and recorded the losses and pre-clip gradient norms.
// foak's loss, ClipGradNorm and AdamW must reproduce the 3 losses to 1e-5
// relative (the first checks the loss itself; the next two the update) and
// the norms to 1e-4.
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"
#include "worker/train/adamw.h"
#include "worker/train/grad_clip.h"

namespace foak {
namespace {

const char kParityDir[] = FOAK_TESTDATA_DIR "/parity";

std::vector<std::string> Cases() {
  // POSIX listing, not std::filesystem (see common/file_util.h).
  std::vector<std::string> cases;
  absl::StatusOr<std::vector<std::string>> names = ListDir(kParityDir);
  if (!names.ok()) return cases;
  for (const std::string& name : *names) {
    if (PathExists(JoinPath(JoinPath(kParityDir, name), "reference.json"))) {
      cases.push_back(JoinPath(kParityDir, name));
    }
  }
  return cases;  // ListDir sorts
}

torch::Tensor ReadI64(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* info = file.Find(name);
  if (info == nullptr || info->dtype != DType::kI64) {
    ADD_FAILURE() << file.path() << ": no I64 tensor '" << name << "'";
    return {};
  }
  return torch::from_blob(const_cast<void*>(file.Data(*info)), info->shape, torch::kLong).clone();
}

void RunCase(const std::string& dir) {
  SCOPED_TRACE(dir);
  auto text = ReadFileToString(dir + "/reference.json");
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::json ref = nlohmann::json::parse(*text);
  if (!ref.contains("adamw_losses")) GTEST_SKIP() << dir << " has no adamw_losses";
  const nlohmann::json& adamw = ref.at("adamw");
  const std::vector<double> want_losses = ref.at("adamw_losses").get<std::vector<double>>();
  std::vector<double> want_norms;
  if (ref.contains("adamw_grad_norms_before_clip")) {
    want_norms = ref.at("adamw_grad_norms_before_clip").get<std::vector<double>>();
  }

  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  LlamaForCausalLM model(*config);
  absl::Status loaded = LoadWeights(model, dir);
  ASSERT_TRUE(loaded.ok()) << loaded;
  model->train();
  auto file = SafetensorsFile::Open(dir + "/reference.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  torch::Tensor input_ids = ReadI64(**file, "input_ids");  // (B, T)
  torch::Tensor labels = ReadI64(**file, "labels");        // (B, T)
  ASSERT_TRUE(input_ids.defined() && labels.defined());

  AdamWOptions options;
  options.beta1 = adamw.at("betas")[0].get<double>();
  options.beta2 = adamw.at("betas")[1].get<double>();
  options.eps = adamw.at("eps").get<double>();
  options.precision = Precision::kFp32;
  AdamW optimizer(MakeParamGroups(*model, adamw.at("weight_decay").get<double>()), options);
  const double lr = adamw.at("lr").get<double>();
  const double max_grad_norm = adamw.at("max_grad_norm").get<double>();

  for (size_t step = 0; step < want_losses.size(); ++step) {
    LossParts parts = CausalLmLoss(model->forward(input_ids), labels);
    torch::Tensor loss = parts.sum / parts.count.to(torch::kFloat);
    loss.backward();
    const double got = loss.item<double>();
    EXPECT_NEAR(got, want_losses[step], 1e-5 * std::fabs(want_losses[step]))
        << "loss of AdamW step " << step;
    std::printf("  step %zu: loss %.8f (torch %.8f)\n", step, got, want_losses[step]);
    const double norm = ClipGradNorm(optimizer.PrepareGrads(), max_grad_norm);
    if (step < want_norms.size()) {
      EXPECT_NEAR(norm, want_norms[step], 1e-4 * want_norms[step]) << "grad norm of step " << step;
    }
    optimizer.Step(lr);
    optimizer.ZeroGrad();
  }
}

class AdamWParity : public ::testing::TestWithParam<std::string> {};

TEST_P(AdamWParity, ThreeStepsMatchTorch) { RunCase(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Fixtures, AdamWParity, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param.substr(info.param.rfind('/') + 1);
                         });
// Without fixtures the suite has no cases; that is not an error.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(AdamWParity);

TEST(AdamWParityFixtures, PresentOrSkipped) {
  if (Cases().empty()) GTEST_SKIP() << "no parity fixtures under " << kParityDir;
  SUCCEED() << Cases().size() << " fixture(s)";
}

}  // namespace
}  // namespace foak

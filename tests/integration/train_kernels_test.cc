// Training with the FOAK kernels end to end through foak-worker on the debug
// model (CPU: the kernels' references run): full fine-tuning, LoRA and QLoRA, with
// gradient accumulation and prompt-masked chat data (so the fused linear
// cross-entropy compacts ignored rows and normalises across micro-batches),
// give the per-step losses and eval losses of the same job without kernels,
// within fp32 rounding, also with activation checkpointing. A misspelt kernel name fails the job with the list of
// valid names.
#include <cmath>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using testing::TempDir;

std::string Src(const std::string& rel) { return std::string(FOAK_SOURCE_DIR) + "/" + rel; }

Json Job(const std::string& example, const std::string& model, const std::string& out,
         const Json& kernels) {
  Json job = Json::parse(ReadFileToString(Src(example)).value());
  job["model"] = model;
  job["dataset"]["train"] = Src(job["dataset"]["train"]);
  job["dataset"]["validation"] = Src(job["dataset"]["validation"]);
  job["output_dir"] = out;
  job["device"] = "cpu";
  job["save_merged"] = false;
  job["kernels"] = kernels;
  auto& h = job["hyperparameters"];
  h["max_steps"] = 12;
  h["gradient_accumulation_steps"] = 2;
  h["logging_steps"] = 1;
  h["eval_steps"] = 6;
  h["eval_batch_size"] = 20;
  return job;
}

// Every "loss" and "eval_loss" of a finished run, in order.
std::vector<double> Losses(const TempDir& dir, const Json& job, const std::string& name) {
  const std::string path = dir.path() + "/" + name + ".json";
  EXPECT_TRUE(WriteFileAtomically(path, job.dump(2)).ok());
  std::string err;
  EXPECT_EQ(testing::RunWorker("train --job " + path, &err), 0) << err;
  std::vector<double> out;
  for (const Json& line : testing::ReadMetrics(job["output_dir"].get<std::string>() + "/metrics.jsonl")) {
    if (line.contains("loss")) out.push_back(line["loss"].get<double>());
    if (line.contains("eval_loss")) out.push_back(line["eval_loss"].get<double>());
  }
  return out;
}

void ExpectClose(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  ASSERT_GE(want.size(), 12u);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-4 * std::abs(want[i])) << "metric " << i;
  }
}

TEST(TrainKernels, FullLoraAndQloraTrainingMatchPlainLibTorch) {
  TempDir dir("train_kernels_test");
  const std::string model = dir.path() + "/model";
  std::string err;
  ASSERT_EQ(testing::RunWorker("init-model --config " + Src("examples/debug_model/config.json") +
                                   " --out " + model + " --seed 1",
                               &err),
            0)
      << err;
  for (const std::string example :
       {"examples/demo_job.json", "examples/lora_job.json", "examples/qlora_job.json"}) {
    SCOPED_TRACE(example);
    const std::string tag = example.find("qlora") != std::string::npos  ? "qlora"
                            : example.find("lora") != std::string::npos ? "lora"
                                                                        : "full";
    const auto plain = Losses(dir, Job(example, model, dir.path() + "/" + tag + "-none", Json::array()), tag + "-none");
    const auto all = Losses(dir, Job(example, model, dir.path() + "/" + tag + "-all", Json::array({"all"})), tag + "-all");
    ExpectClose(all, plain);
    const auto ce = Losses(dir, Job(example, model, dir.path() + "/" + tag + "-foak", Json::array({"foak"})), tag + "-foak");
    ExpectClose(ce, plain);
    // Activation checkpointing on top changes memory, not the numbers (the
    // LoRA job's adapter dropout replays the same masks in the recompute).
    Json checkpointed = Job(example, model, dir.path() + "/" + tag + "-all-ckpt", Json::array({"all"}));
    checkpointed["hyperparameters"]["gradient_checkpointing"] = true;
    ExpectClose(Losses(dir, checkpointed, tag + "-all-ckpt"), plain);
  }
}

TEST(TrainKernels, UnknownKernelNameFailsWithTheValidOnes) {
  TempDir dir("train_kernels_test");
  Json job = Job("examples/demo_job.json", dir.path() + "/no-model", dir.path() + "/out",
                 Json::array({"rmsnorm"}));
  const std::string path = dir.path() + "/job.json";
  ASSERT_TRUE(WriteFileAtomically(path, job.dump()).ok());
  std::string err;
  EXPECT_NE(testing::RunWorker("train --job " + path, &err), 0);
  EXPECT_NE(err.find("unknown kernel 'rmsnorm'"), std::string::npos) << err;
  EXPECT_NE(err.find("rms_norm, rope, swiglu, cross_entropy, fused_linear_cross_entropy"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace foak

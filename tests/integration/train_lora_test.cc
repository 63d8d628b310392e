// LoRA fine-tuning and validation loss end to end, with the real foak-worker
// binary on the debug model (examples/debug_model, byte tokenizer) and chat
// data (the first lines of examples/data/arith_train.jsonl), in fp32:
//   - the training loss and the validation loss fall;
//   - the base model folder is untouched (LoRA never writes the base);
//   - final/ is a PEFT adapter (adapter_config.json naming the model folder,
//     adapter_model.safetensors) with no full weights, merged/ a full model;
//   - the saved adapter, loaded back in-process onto the base with
//     LoadLoraAdapter, reproduces the worker's last eval_loss -- i.e. it IS
//     the trained model -- and merged/ gives the same logits as base + adapter.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/worker_run.h"
#include "nlohmann/json.hpp"
#include "worker/data/batcher.h"
#include "worker/data/example_dataset.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_io.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/weights.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/train/example_batch_source.h"
#include "worker/train/job.h"

namespace foak {
namespace {

using testing::TempDir;

int Worker(const std::string& args, std::string* err) { return testing::RunWorker(args, err); }

LlamaForCausalLM LoadBase(const std::string& dir) {
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  ModelInit init;
  init.random = false;
  LlamaForCausalLM model(*config, init);
  absl::Status s = LoadWeights(model, dir);
  EXPECT_TRUE(s.ok()) << s;
  model->eval();
  return model;
}

TEST(TrainLora, LossFallsAdapterReproducesTheTrainedModelAndMergesExactly) {
  testing::TempDir dir("lora_train_test");
  const std::string model_dir = dir.path() + "/model";
  std::string err;
  // The debug model with initializer_range 0.2 instead of 0.02: LoRA leaves
  // lm_head frozen, and a random lm_head of std 0.02 caps the logits near
  // +-1.3, so no adapter could move the loss far below ln(258); a base of
  // larger scale stands in for a pretrained one.
  nlohmann::json config = nlohmann::json::parse(*ReadFileToString(
      std::string(FOAK_SOURCE_DIR) + "/examples/debug_model/config.json"));
  config["initializer_range"] = 0.2;
  ASSERT_TRUE(WriteFileAtomically(dir.path() + "/config.json", config.dump()).ok());
  ASSERT_EQ(Worker("init-model --config " + dir.path() + "/config.json --out " + model_dir +
                       " --seed 1",
                   &err),
            0)
      << err;
  const std::string base_bytes = *ReadFileToString(model_dir + "/model.safetensors");

  // 400 chat lines; 10% held out for validation.
  const std::string all = *ReadFileToString(std::string(FOAK_SOURCE_DIR) +
                                            "/examples/data/arith_train.jsonl");
  size_t end = 0;
  for (int i = 0; i < 400; ++i) end = all.find('\n', end) + 1;
  const std::string data = dir.path() + "/train.jsonl";
  ASSERT_TRUE(WriteFileAtomically(data, all.substr(0, end)).ok());

  const std::string job_path = dir.path() + "/job.json";
  const std::string out = dir.path() + "/out";
  ASSERT_TRUE(WriteFileAtomically(job_path, R"({"model": ")" + model_dir +
                                                R"(", "output_dir": ")" + out + R"(",
      "dataset": {"train": ")" + data + R"(", "validation_split": 0.1, "format": "chat"},
      "method": "lora", "save_merged": true, "device": "cpu",
      "lora": {"r": 8, "alpha": 16, "dropout": 0.05},
      "hyperparameters": {"learning_rate": 0.01, "max_steps": 30, "batch_size": 4,
        "max_seq_len": 128, "warmup_steps": 3, "precision": "fp32", "logging_steps": 5,
        "eval_steps": 15, "eval_batch_size": 16, "seed": 3}})")
                  .ok());
  ASSERT_EQ(Worker("train --job " + job_path, &err), 0) << err;

  // Loss and validation loss fall.
  std::vector<double> losses, eval_losses;
  for (const auto& line : absl::StrSplit(*ReadFileToString(out + "/metrics.jsonl"), '\n',
                                         absl::SkipEmpty())) {
    const auto j = nlohmann::json::parse(std::string(line));
    if (j.contains("eval_loss")) {
      eval_losses.push_back(j["eval_loss"].get<double>());
      EXPECT_GT(j["eval_tokens"].get<int64_t>(), 0);
    } else {
      losses.push_back(j["loss"].get<double>());
    }
  }
  ASSERT_EQ(losses.size(), 6u);
  ASSERT_EQ(eval_losses.size(), 2u);  // steps 15 and 30
  EXPECT_LT(losses.back(), losses.front() - 1.0) << "the training loss must fall";
  EXPECT_LT(eval_losses.back(), eval_losses.front());

  // The base folder is untouched; final/ is an adapter, merged/ a model.
  EXPECT_TRUE(*ReadFileToString(model_dir + "/model.safetensors") == base_bytes);
  EXPECT_FALSE(PathExists(out + "/final/model.safetensors"));
  EXPECT_TRUE(PathExists(out + "/final/adapter_model.safetensors"));
  const auto adapter_config =
      nlohmann::json::parse(*ReadFileToString(out + "/final/adapter_config.json"));
  EXPECT_EQ(adapter_config.at("base_model_name_or_path"), model_dir);
  EXPECT_EQ(adapter_config.at("r"), 8);
  EXPECT_TRUE(PathExists(out + "/merged/config.json"));
  EXPECT_TRUE(PathExists(out + "/merged/model.safetensors"));

  // base + adapter reproduces the worker's final eval_loss (same data, batches, math).
  LlamaForCausalLM model = LoadBase(model_dir);
  ASSERT_TRUE(LoadLoraAdapter(model, out + "/final").ok());
  model->eval();
  auto job = LoadJobConfig(job_path);
  ASSERT_TRUE(job.ok()) << job.status();
  auto tokenizer = LoadTokenizer(model_dir);
  ASSERT_TRUE(tokenizer.ok());
  auto encoder = MakeEncoderOptions(*job, model->config(), /*byte_tokenizer=*/true);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  auto valid = ExampleDataset::Open(MakeDatasetOptions(*job, *encoder, DataSplit::kValidation),
                                    tokenizer->get());
  ASSERT_TRUE(valid.ok()) << valid.status();
  ExampleDataset* ds = valid->get();
  double loss_sum = 0;
  int64_t targets = 0;
  torch::NoGradGuard no_grad;
  while (true) {
    auto batch = NextPaddedBatch([ds] { return ds->NextInEpoch(); }, 16, 257);
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) break;
    const Batch& b = **batch;
    auto t = [&b](const std::vector<int64_t>& v) {
      return torch::tensor(v, torch::kLong).reshape({b.B, b.T});
    };
    LossParts parts = CausalLmLoss(model->forward(t(b.input_ids), t(b.position_ids)), t(b.labels));
    loss_sum += parts.sum.item<double>();
    targets += b.NumTargetTokens();
  }
  ASSERT_GT(targets, 0);
  EXPECT_NEAR(loss_sum / targets, eval_losses.back(), 1e-6 * eval_losses.back());

  // merged/ == base + adapter, and differs from the base (the adapter learned).
  torch::Tensor ids = torch::tensor(std::vector<int64_t>{256, 52, 50, 32, 43, 32, 49, 10},
                                    torch::kLong).reshape({1, 8});
  torch::Tensor pos = torch::arange(8, torch::kLong).reshape({1, 8});
  const torch::Tensor adapted = model->forward(ids, pos);
  LlamaForCausalLM merged = LoadBase(out + "/merged");
  LlamaForCausalLM base = LoadBase(model_dir);
  EXPECT_LT((merged->forward(ids, pos) - adapted).abs().max().item<double>(), 1e-4);
  EXPECT_GT((base->forward(ids, pos) - adapted).abs().max().item<double>(), 1e-2);
}

}  // namespace
}  // namespace foak

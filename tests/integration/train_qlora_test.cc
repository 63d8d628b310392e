// QLoRA (method "qlora") end to end with the real foak-worker binary, beside
// the same job as plain LoRA: the debug model (examples/debug_model,
// initializer_range 0.2 as in train_lora_test, byte tokenizer), the first 400
// lines of examples/data/arith_train.jsonl, fp32, the same seed:
//   - the qlora run's loss falls and follows the LoRA run step by step within
//     kStepTolerance, and within kTailTolerance over the last 10 steps and in
//     eval_loss (the only difference is the NF4 base: the same data, batches,
//     adapter init and dropout masks);
//   - final/ is a PEFT adapter with exactly the files, adapter_config.json
//     and tensor names of the LoRA run's (PEFT's format does not record how
//     the base was stored);
//   - the adapter loaded in-process onto the NF4 base reproduces the worker's
//     last eval_loss (it IS the trained model), and loads just as well onto
//     the unquantised base (method lora's way), landing near it;
//   - merged/ is the dequantised base plus the adapter: a plain model whose
//     logits equal NF4 base + adapter;
//   - the base folder is untouched.
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/worker_run.h"
#include "worker/data/batcher.h"
#include "worker/data/example_dataset.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_io.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"
#include "worker/quant/nf4_linears.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/train/example_batch_source.h"
#include "worker/train/job.h"

namespace foak {
namespace {

using testing::TempDir;

// How closely QLoRA follows LoRA. This base (initializer_range 0.2) is far
// more sensitive to NF4 than a pretrained one (its next-token distribution
// moves by a KL of ~0.26 nats at init against 1.6e-4 at the default 0.02;
// nf4_linears_test), so the two runs are not the same run: per step the
// recorded worst difference is 9.1% (step 11, where the loss falls fastest
// and a small lead shows most), and they meet again as the loss flattens
// (recorded: last 10 steps 2.9139 against 2.9143, eval_loss 2.9284 against
// 2.9371). Bounds: every step within kStepTolerance, the mean of the last 10
// steps and the final eval_loss within kTailTolerance.
constexpr double kStepTolerance = 0.12;
constexpr double kTailTolerance = 0.02;

LlamaForCausalLM LoadBase(const std::string& dir, bool nf4) {
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  ModelInit init;
  init.random = false;
  if (nf4) init.on_decoder_linear = ReleaseOnCreateHook();
  LlamaForCausalLM model(*config, init);
  const absl::Status s = nf4 ? LoadNf4Weights(model, dir, Nf4Options()).status()
                             : LoadWeights(model, dir);
  EXPECT_TRUE(s.ok()) << s;
  model->eval();
  return model;
}

// The job's validation loss of `model`, as the worker's evaluator computes it.
double EvalLoss(LlamaForCausalLM& model, const std::string& job_path, const std::string& model_dir) {
  auto job = LoadJobConfig(job_path);
  EXPECT_TRUE(job.ok()) << job.status();
  auto tokenizer = LoadTokenizer(model_dir);
  EXPECT_TRUE(tokenizer.ok());
  auto encoder = MakeEncoderOptions(*job, model->config(), /*byte_tokenizer=*/true);
  EXPECT_TRUE(encoder.ok()) << encoder.status();
  auto valid = ExampleDataset::Open(MakeDatasetOptions(*job, *encoder, DataSplit::kValidation),
                                    tokenizer->get());
  EXPECT_TRUE(valid.ok()) << valid.status();
  ExampleDataset* ds = valid->get();
  double loss_sum = 0;
  int64_t targets = 0;
  torch::NoGradGuard no_grad;
  while (true) {
    auto batch = NextPaddedBatch([ds] { return ds->NextInEpoch(); }, 16, 257);
    EXPECT_TRUE(batch.ok());
    if (!batch.ok() || !batch->has_value()) break;
    const Batch& b = **batch;
    auto t = [&b](const std::vector<int64_t>& v) {
      return torch::tensor(v, torch::kLong).reshape({b.B, b.T});
    };
    LossParts parts = CausalLmLoss(model->forward(t(b.input_ids), t(b.position_ids)), t(b.labels));
    loss_sum += parts.sum.item<double>();
    targets += b.NumTargetTokens();
  }
  EXPECT_GT(targets, 0);
  return loss_sum / static_cast<double>(targets);
}

struct TrainRun {
  std::vector<double> losses;
  std::vector<double> eval_losses;
  std::string err;
};

TrainRun Train(const std::string& job_path, const std::string& out) {
  TrainRun run;
  EXPECT_EQ(testing::RunWorker("train --job " + job_path, &run.err), 0) << run.err;
  for (const nlohmann::json& j : testing::ReadMetrics(out + "/metrics.jsonl")) {
    if (j.contains("eval_loss")) {
      run.eval_losses.push_back(j["eval_loss"].get<double>());
    } else {
      run.losses.push_back(j["loss"].get<double>());
    }
  }
  return run;
}

std::set<std::string> TensorNames(const std::string& path) {
  std::set<std::string> names;
  auto file = SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return names;
  for (const TensorInfo& info : (*file)->tensors()) {
    names.insert(info.name);
    EXPECT_EQ(info.dtype, DType::kF32) << info.name;
  }
  return names;
}

TEST(TrainQlora, FollowsLoraAndWritesAPeftAdapterThatLoadsOnEitherBase) {
  TempDir dir("qlora_train_test");
  const std::string model_dir = dir.path() + "/model";
  std::string err;
  nlohmann::json config = nlohmann::json::parse(*ReadFileToString(
      std::string(FOAK_SOURCE_DIR) + "/examples/debug_model/config.json"));
  config["initializer_range"] = 0.2;
  ASSERT_TRUE(WriteFileAtomically(dir.path() + "/config.json", config.dump()).ok());
  ASSERT_EQ(testing::RunWorker("init-model --config " + dir.path() + "/config.json --out " +
                                   model_dir + " --seed 1",
                               &err),
            0)
      << err;
  const std::string base_bytes = *ReadFileToString(model_dir + "/model.safetensors");
  const std::string all = *ReadFileToString(std::string(FOAK_SOURCE_DIR) +
                                            "/examples/data/arith_train.jsonl");
  size_t end = 0;
  for (int i = 0; i < 400; ++i) end = all.find('\n', end) + 1;
  const std::string data = dir.path() + "/train.jsonl";
  ASSERT_TRUE(WriteFileAtomically(data, all.substr(0, end)).ok());

  auto write_job = [&](const std::string& name, const std::string& method_fields) {
    const std::string path = dir.path() + "/" + name + ".json";
    EXPECT_TRUE(WriteFileAtomically(path, R"({"model": ")" + model_dir + R"(",
        "output_dir": ")" + dir.path() + "/" + name + R"(",
        "dataset": {"train": ")" + data + R"(", "validation_split": 0.1, "format": "chat"},
        "device": "cpu", )" + method_fields + R"(,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05},
        "hyperparameters": {"learning_rate": 0.01, "max_steps": 30, "batch_size": 4,
          "max_seq_len": 128, "warmup_steps": 3, "precision": "fp32", "logging_steps": 1,
          "eval_steps": 30, "eval_batch_size": 16, "seed": 3}})")
                    .ok());
    return path;
  };
  const std::string lora_job = write_job("lora", R"("method": "lora")");
  const std::string qlora_job = write_job(
      "qlora", R"("method": "qlora", "save_merged": true,
                  "quantization": {"type": "nf4", "double_quant": true})");
  const TrainRun lora = Train(lora_job, dir.path() + "/lora");
  const TrainRun qlora = Train(qlora_job, dir.path() + "/qlora");
  EXPECT_NE(qlora.err.find("NF4 base (double quantised): 14 decoder projections"),
            std::string::npos)
      << qlora.err;

  // The loss curve: falls, and follows LoRA's step by step.
  ASSERT_EQ(lora.losses.size(), 30u);
  ASSERT_EQ(qlora.losses.size(), 30u);
  double worst = 0;
  int worst_step = 0;
  for (size_t i = 0; i < 30; ++i) {
    const double rel = std::abs(qlora.losses[i] - lora.losses[i]) / lora.losses[i];
    EXPECT_LE(rel, kStepTolerance) << "step " << i + 1 << ": qlora " << qlora.losses[i]
                                   << ", lora " << lora.losses[i];
    if (rel > worst) {
      worst = rel;
      worst_step = static_cast<int>(i) + 1;
    }
  }
  std::printf("qlora vs lora: worst step %d, relative difference %.4f; losses %.3f -> %.3f "
              "(lora %.3f -> %.3f)\n",
              worst_step, worst, qlora.losses.front(), qlora.losses.back(), lora.losses.front(),
              lora.losses.back());
  auto mean = [](const std::vector<double>& v, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += v[i];
    return s / static_cast<double>(to - from);
  };
  EXPECT_LT(mean(qlora.losses, 25, 30), mean(qlora.losses, 0, 5) - 1.0)
      << "the qlora training loss must fall";
  const double tail_q = mean(qlora.losses, 20, 30), tail_l = mean(lora.losses, 20, 30);
  EXPECT_NEAR(tail_q, tail_l, kTailTolerance * tail_l);
  ASSERT_EQ(qlora.eval_losses.size(), 1u);
  ASSERT_EQ(lora.eval_losses.size(), 1u);
  EXPECT_NEAR(qlora.eval_losses[0], lora.eval_losses[0], kTailTolerance * lora.eval_losses[0]);
  std::printf("last 10 steps: qlora %.4f, lora %.4f; eval_loss: qlora %.4f, lora %.4f\n", tail_q,
              tail_l, qlora.eval_losses[0], lora.eval_losses[0]);

  // The same PEFT adapter files as LoRA's, and no base weights.
  const std::string final_q = dir.path() + "/qlora/final";
  const std::string final_l = dir.path() + "/lora/final";
  EXPECT_EQ(*ListDir(final_q), *ListDir(final_l));
  EXPECT_EQ(*ListDir(final_q),
            (std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));
  EXPECT_EQ(*ReadFileToString(final_q + "/adapter_config.json"),
            *ReadFileToString(final_l + "/adapter_config.json"));
  const auto adapter_config =
      nlohmann::json::parse(*ReadFileToString(final_q + "/adapter_config.json"));
  EXPECT_EQ(adapter_config.at("peft_type"), "LORA");
  EXPECT_EQ(adapter_config.at("base_model_name_or_path"), model_dir);
  EXPECT_EQ(adapter_config.at("r"), 8);
  const std::set<std::string> names = TensorNames(final_q + "/adapter_model.safetensors");
  EXPECT_EQ(names, TensorNames(final_l + "/adapter_model.safetensors"));
  EXPECT_EQ(names.size(), 2u * 14);
  EXPECT_TRUE(names.count("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
  EXPECT_TRUE(*ReadFileToString(model_dir + "/model.safetensors") == base_bytes);

  // NF4 base + adapter IS the trained model.
  LlamaForCausalLM nf4 = LoadBase(model_dir, /*nf4=*/true);
  ASSERT_TRUE(LoadLoraAdapter(nf4, final_q).ok());
  nf4->eval();
  EXPECT_NEAR(EvalLoss(nf4, qlora_job, model_dir), qlora.eval_losses[0],
              1e-6 * qlora.eval_losses[0]);
  // On the unquantised base (method lora's way) it loads and lands near.
  LlamaForCausalLM dense = LoadBase(model_dir, /*nf4=*/false);
  ASSERT_TRUE(LoadLoraAdapter(dense, final_q).ok());
  dense->eval();
  const double on_dense = EvalLoss(dense, qlora_job, model_dir);
  std::printf("the qlora adapter on the unquantised base: eval_loss %.4f\n", on_dense);
  EXPECT_NEAR(on_dense, qlora.eval_losses[0], kStepTolerance * qlora.eval_losses[0]);

  // merged/ = dequant(NF4 base) + adapter, a plain Hugging Face folder.
  const std::string merged = dir.path() + "/qlora/merged";
  ASSERT_TRUE(PathExists(merged + "/model.safetensors")) << qlora.err;
  LlamaForCausalLM merged_model = LoadBase(merged, /*nf4=*/false);
  torch::Tensor ids = torch::tensor(std::vector<int64_t>{256, 52, 50, 32, 43, 32, 49, 10},
                                    torch::kLong).reshape({1, 8});
  torch::Tensor pos = torch::arange(8, torch::kLong).reshape({1, 8});
  torch::NoGradGuard no_grad;
  const torch::Tensor adapted = nf4->forward(ids, pos);
  EXPECT_LT((merged_model->forward(ids, pos) - adapted).abs().max().item<double>(), 1e-4);
  EXPECT_GT((dense->forward(ids, pos) - adapted).abs().max().item<double>(), 1e-4)
      << "the merge must use the dequantised base, not the original one";
}

}  // namespace
}  // namespace foak

// Tests of worker/train: job file parsing, learning-rate schedules, AdamW,
// clipping, the trainer's step (gradient accumulation, determinism, precision
// modes), metrics lines and checkpoint folders. Runs on a tiny model on CPU.
#include <stdlib.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "worker/data/batch.h"
#include "worker/data/batcher.h"
#include "worker/lora/lora.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/train/adamw.h"
#include "worker/train/checkpoint.h"
#include "worker/train/grad_clip.h"
#include "worker/train/job.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/metrics_writer.h"
#include "worker/train/nonfinite.h"
#include "worker/train/trainer.h"
#include "worker/train/train_job.h"
#include "worker/train/trainer_state.h"

namespace foak {
namespace {

bool Contains(const absl::Status& s, const std::string& text) {
  return std::string(s.message()).find(text) != std::string::npos;
}

// A temp folder removed when the test ends.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/foak_train_test_XXXXXX";
    const char* dir = mkdtemp(tmpl);
    EXPECT_NE(dir, nullptr);
    path_ = dir == nullptr ? "/tmp" : dir;
  }
  ~TempDir() { RemoveTree(path_).IgnoreError(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------- job file

const char kMinimalJob[] = R"({
  "model": "models/tiny",
  "dataset": {"train": "data/train.jsonl"},
  "output_dir": "/tmp/out"
})";

absl::StatusOr<JobConfig> ParseWith(const std::string& hyperparameters) {
  return ParseJobConfig(R"({"model": "m", "dataset": {"train": "d.jsonl"}, "output_dir": "o",
                           "hyperparameters": )" + hyperparameters + "}",
                        "job.json");
}

TEST(JobConfig, DefaultsAndPathResolution) {
  auto job = ParseJobConfig(kMinimalJob, "job.json");
  ASSERT_TRUE(job.ok()) << job.status();
  char buf[4096];
  ASSERT_NE(getcwd(buf, sizeof(buf)), nullptr);
  const std::string cwd = buf;
  EXPECT_EQ(job->model, cwd + "/models/tiny");
  EXPECT_EQ(job->dataset.train, cwd + "/data/train.jsonl");
  EXPECT_EQ(job->dataset.validation, "");
  EXPECT_FALSE(job->dataset.has_validation());
  EXPECT_EQ(job->dataset.chat_template, "");
  EXPECT_FALSE(job->dataset.train_on_prompt);
  EXPECT_FALSE(job->dataset.instructions_as_chat);
  EXPECT_FALSE(job->dataset.skip_bad_lines);
  EXPECT_EQ(job->dataset.shuffle_buffer_size, 10000);
  EXPECT_FALSE(job->save_merged);
  EXPECT_EQ(job->output_dir, "/tmp/out");
  EXPECT_EQ(job->method, "full");
  EXPECT_EQ(job->dataset.format, "auto");
  EXPECT_EQ(job->device, "auto");
  const Hyperparameters& h = job->hyperparameters;
  EXPECT_DOUBLE_EQ(h.learning_rate, 2e-5);
  EXPECT_EQ(h.max_steps, 0);
  EXPECT_DOUBLE_EQ(h.epochs, 1.0);
  EXPECT_EQ(h.batch_size, 8);
  EXPECT_EQ(h.gradient_accumulation_steps, 1);
  EXPECT_EQ(h.max_seq_len, 512);
  EXPECT_EQ(h.warmup_steps, 0);
  EXPECT_EQ(h.lr_scheduler, LrSchedulerType::kCosine);
  EXPECT_DOUBLE_EQ(h.min_lr_ratio, 0.0);
  EXPECT_DOUBLE_EQ(h.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(h.adam_beta1, 0.9);
  EXPECT_DOUBLE_EQ(h.adam_beta2, 0.999);
  EXPECT_DOUBLE_EQ(h.adam_epsilon, 1e-8);
  EXPECT_DOUBLE_EQ(h.max_grad_norm, 1.0);
  EXPECT_EQ(h.seed, 42);
  EXPECT_EQ(h.precision, Precision::kBf16Mixed);
  EXPECT_TRUE(h.packing);
  EXPECT_EQ(h.logging_steps, 1);
  EXPECT_EQ(h.save_steps, 0);
  EXPECT_EQ(h.max_shard_bytes, 5ll << 30);
  EXPECT_EQ(h.eval_steps, 0);
  EXPECT_EQ(h.eval_batch_size, 0);
}

TEST(JobConfig, DatasetAndLoraFieldsParse) {
  auto job = ParseJobConfig(R"({"model": "m", "output_dir": "o",
      "dataset": {"train": "t.jsonl", "validation": "v.jsonl", "format": "chat",
                  "chat_template": "chatml", "train_on_prompt": true,
                  "instructions_as_chat": true, "skip_bad_lines": true,
                  "shuffle_buffer_size": 1},
      "method": "lora", "save_merged": true,
      "lora": {"r": 4, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
               "use_rslora": true},
      "hyperparameters": {"eval_steps": 20, "eval_batch_size": 16}})",
                            "job.json");
  ASSERT_TRUE(job.ok()) << job.status();
  char buf[4096];
  ASSERT_NE(getcwd(buf, sizeof(buf)), nullptr);
  EXPECT_EQ(job->dataset.validation, std::string(buf) + "/v.jsonl");
  EXPECT_TRUE(job->dataset.has_validation());
  EXPECT_EQ(job->dataset.format, "chat");
  EXPECT_EQ(job->dataset.chat_template, "chatml");
  EXPECT_TRUE(job->dataset.train_on_prompt);
  EXPECT_TRUE(job->dataset.instructions_as_chat);
  EXPECT_TRUE(job->dataset.skip_bad_lines);
  EXPECT_EQ(job->dataset.shuffle_buffer_size, 1);
  EXPECT_EQ(job->method, "lora");
  EXPECT_TRUE(job->save_merged);
  EXPECT_EQ(job->lora.r, 4);
  EXPECT_DOUBLE_EQ(job->lora.alpha, 16);
  EXPECT_DOUBLE_EQ(job->lora.dropout, 0.05);
  EXPECT_EQ(job->lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_TRUE(job->lora.use_rslora);
  EXPECT_EQ(job->hyperparameters.eval_steps, 20);
  EXPECT_EQ(job->hyperparameters.eval_batch_size, 16);

  // A custom chat template object, a validation fraction, LoRA defaults.
  auto custom = ParseJobConfig(R"({"model": "m", "output_dir": "o", "method": "lora",
      "dataset": {"train": "t.jsonl", "validation_split": 0.1,
                  "chat_template": {"user": {"prefix": "U: ", "suffix": "\n"},
                                    "assistant": {"prefix": "A: ", "suffix": "\n"}, "eos": true}}})",
                               "job.json");
  ASSERT_TRUE(custom.ok()) << custom.status();
  EXPECT_DOUBLE_EQ(custom->dataset.validation_split, 0.1);
  EXPECT_TRUE(custom->dataset.has_validation());
  EXPECT_NE(custom->dataset.chat_template_json.find("\"U: \""), std::string::npos);
  EXPECT_EQ(custom->lora.r, 8);
  EXPECT_EQ(custom->lora.target_modules, (std::vector<std::string>{"all-linear"}));
  auto all_linear = ParseJobConfig(R"({"model": "m", "output_dir": "o", "method": "lora",
      "dataset": {"train": "t"}, "lora": {"target_modules": "all-linear"}})", "job.json");
  ASSERT_TRUE(all_linear.ok()) << all_linear.status();
  EXPECT_EQ(all_linear->lora.target_modules, (std::vector<std::string>{"all-linear"}));
}

TEST(JobConfig, QloraTakesTheLoraObjectAndAQuantizationObject) {
  auto job = ParseJobConfig(R"({"model": "m", "output_dir": "o", "dataset": {"train": "t"},
      "method": "qlora", "save_merged": true, "lora": {"r": 16, "alpha": 32},
      "quantization": {"type": "nf4", "double_quant": false}})",
                            "job.json");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->method, "qlora");
  EXPECT_TRUE(job->UsesLora());
  EXPECT_TRUE(job->Quantized());
  EXPECT_TRUE(job->save_merged);
  EXPECT_EQ(job->lora.r, 16);
  EXPECT_EQ(job->quantization.type, "nf4");
  EXPECT_FALSE(job->quantization.double_quant);
  EXPECT_EQ(nlohmann::json::parse(LoraToJson(*job))["r"], 16);
  EXPECT_EQ(QuantizationToJson(*job), R"({"type":"nf4","double_quant":false})");

  // Both objects are optional: PEFT's LoRA defaults, NF4 with double quantisation.
  auto defaults = ParseJobConfig(R"({"model": "m", "output_dir": "o", "dataset": {"train": "t"},
      "method": "qlora", "quantization": {"type": null}})", "job.json");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->lora.r, 8);
  EXPECT_EQ(defaults->lora.target_modules, (std::vector<std::string>{"all-linear"}));
  EXPECT_EQ(QuantizationToJson(*defaults), R"({"type":"nf4","double_quant":true})");

  // Other methods have no quantization in their fingerprint; lora keeps its object.
  auto lora = ParseJobConfig(R"({"model": "m", "output_dir": "o", "dataset": {"train": "t"},
      "method": "lora"})", "job.json");
  ASSERT_TRUE(lora.ok());
  EXPECT_FALSE(lora->Quantized());
  EXPECT_EQ(QuantizationToJson(*lora), "{}");
  EXPECT_NE(LoraToJson(*lora), "{}");
}

TEST(JobConfig, DataShapingFieldsAreInTheFingerprintJson) {
  auto a = ParseJobConfig(R"({"model": "m", "output_dir": "o", "dataset": {"train": "t"}})", "j");
  auto b = ParseJobConfig(R"({"model": "m", "output_dir": "o",
      "dataset": {"train": "t", "train_on_prompt": true}})", "j");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(DatasetOptionsToJson(a->dataset), DatasetOptionsToJson(b->dataset));
  const auto j = nlohmann::json::parse(DatasetOptionsToJson(b->dataset));
  for (const char* key : {"validation_split", "format", "chat_template", "train_on_prompt",
                          "instructions_as_chat", "skip_bad_lines", "shuffle_buffer_size"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(LoraToJson(*a), "{}");
}

TEST(JobConfig, DemoJobParses) {
  auto job = LoadJobConfig(std::string(FOAK_SOURCE_DIR) + "/examples/demo_job.json");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->hyperparameters.precision, Precision::kFp32);
  EXPECT_GT(job->hyperparameters.max_steps, 0);
}

TEST(JobConfig, AllFieldsParse) {
  auto job = ParseWith(R"({"learning_rate": 0.001, "max_steps": 60.0, "epochs": 2.5,
      "batch_size": 4, "gradient_accumulation_steps": 3, "max_seq_len": 64,
      "warmup_steps": 0, "warmup_ratio": 0.1, "lr_scheduler": "linear", "min_lr_ratio": 0.1,
      "weight_decay": 0.01, "adam_beta1": 0.8, "adam_beta2": 0.95, "adam_epsilon": 1e-6,
      "max_grad_norm": 0, "seed": 7, "precision": "bf16", "packing": false,
      "logging_steps": 5, "save_steps": 20, "max_shard_bytes": 1000})");
  ASSERT_TRUE(job.ok()) << job.status();
  const Hyperparameters& h = job->hyperparameters;
  EXPECT_EQ(h.max_steps, 60);
  EXPECT_EQ(h.gradient_accumulation_steps, 3);
  EXPECT_EQ(h.lr_scheduler, LrSchedulerType::kLinear);
  EXPECT_EQ(h.precision, Precision::kBf16);
  EXPECT_FALSE(h.packing);
  EXPECT_EQ(h.max_shard_bytes, 1000);
  EXPECT_EQ(job->WarmupSteps(60), 6);  // ceil(0.1 * 60)
  EXPECT_EQ(job->WarmupSteps(61), 7);
}

TEST(JobConfig, DataParallelFieldsParseAndStayOutOfTheFingerprint) {
  auto plain = ParseWith("{}");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->hyperparameters.ddp_timeout, 1800);  // transformers' default
  EXPECT_EQ(plain->hyperparameters.ddp_bucket_cap_mb, 25);
  EXPECT_EQ(plain->hyperparameters.zero_stage, 0);
  auto job = ParseWith(R"({"ddp_timeout": 60, "ddp_bucket_cap_mb": 100, "zero_stage": 1})");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->hyperparameters.ddp_timeout, 60);
  EXPECT_EQ(job->hyperparameters.ddp_bucket_cap_mb, 100);
  EXPECT_EQ(job->hyperparameters.zero_stage, 1);
  // How the ranks communicate does not change what is computed: a resumed
  // run may change them.
  EXPECT_EQ(HyperparametersToJson(job->hyperparameters),
            HyperparametersToJson(plain->hyperparameters));
  const TrainerOptions options = MakeTrainerOptions(*job, 10);
  EXPECT_EQ(options.zero_stage, 1);
  EXPECT_EQ(options.grad_sync.bucket_bytes, 100ll << 20);
}

TEST(JobConfig, KernelsParseToTheirSet) {
  auto none = ParseJobConfig(kMinimalJob, "job.json");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->kernels.empty());
  auto job = ParseJobConfig(R"({"model": "m", "dataset": {"train": "d.jsonl"}, "output_dir": "o",
                                "kernels": ["foak", "fused_linear_cross_entropy"]})",
                            "job.json");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->kernels.Names(),
            (std::vector<std::string>{"rms_norm", "rope", "swiglu", "cross_entropy",
                                      "fused_linear_cross_entropy"}));
}

TEST(JobConfig, MaxStepsFromEpochsAsTransformers) {
  auto job = ParseWith(R"({"epochs": 2.5, "gradient_accumulation_steps": 4})");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->ResolveMaxSteps(10), 5);  // ceil(2.5 * floor(10 / 4))
  EXPECT_EQ(job->ResolveMaxSteps(3), 3);   // at least one update per epoch: ceil(2.5 * 1)
  auto fixed = ParseWith(R"({"epochs": 2.5, "max_steps": 7})");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->ResolveMaxSteps(10), 7);  // max_steps wins
}

struct BadJob {
  std::string json;
  std::vector<std::string> expected;  // substrings of the message
};

TEST(JobConfig, ErrorsNameTheFieldAndWhatIsAllowed) {
  const std::string base = R"("model": "m", "dataset": {"train": "d.jsonl"}, "output_dir": "o")";
  const std::vector<BadJob> cases = {
      {"{" + base + R"(, "hyperparameters": {"lr_scheduler": "cosin"}})",
       {"job.json: hyperparameters.lr_scheduler = 'cosin'; expected one of cosine, linear, "
        "constant"}},
      {"{" + base + R"(, "hyperparameters": {"lr": 0.1}})",
       {"unknown key 'hyperparameters.lr'", "learning_rate", "max_steps"}},
      {"{" + base + R"(, "epochs": 1})", {"unknown key 'epochs'", "hyperparameters"}},
      {"{" + base + R"(, "hyperparameters": {"batch_size": "8"}})",
       {"hyperparameters.batch_size = \"8\"; expected an integer >= 1"}},
      {"{" + base + R"(, "hyperparameters": {"batch_size": 0}})",
       {"hyperparameters.batch_size = 0; expected an integer >= 1"}},
      {"{" + base + R"(, "hyperparameters": {"max_steps": 1.5}})",
       {"hyperparameters.max_steps = 1.5"}},
      {"{" + base + R"(, "hyperparameters": {"learning_rate": -1}})",
       {"hyperparameters.learning_rate = -1; expected a number > 0"}},
      {"{" + base + R"(, "hyperparameters": {"adam_beta2": 1.0}})",
       {"hyperparameters.adam_beta2", "[0, 1)"}},
      {"{" + base + R"(, "hyperparameters": {"warmup_ratio": 2}})",
       {"hyperparameters.warmup_ratio", "[0, 1]"}},
      {"{" + base + R"(, "hyperparameters": {"precision": "fp16"}})",
       {"hyperparameters.precision = 'fp16'; expected one of bf16-mixed, bf16, fp32"}},
      {"{" + base + R"(, "hyperparameters": {"packing": 1}})",
       {"hyperparameters.packing", "true or false"}},
      {"{" + base + R"(, "hyperparameters": {"max_seq_len": 1}})",
       {"hyperparameters.max_seq_len = 1; expected an integer >= 2"}},
      {"{" + base + R"(, "hyperparameters": [1]})", {"hyperparameters", "an object"}},
      {R"({"dataset": {"train": "d.jsonl"}, "output_dir": "o"})", {"model is required"}},
      {R"({"model": "m", "output_dir": "o"})", {"dataset is required"}},
      {R"({"model": "m", "dataset": {}, "output_dir": "o"})", {"dataset.train is required"}},
      {R"({"model": "m", "dataset": {"train": "d", "format": "csv"}, "output_dir": "o"})",
       {"dataset.format = \"csv\"", "auto, text, alpaca, prompt_completion, chat"}},
      {R"({"model": "m", "dataset": {"train": "d", "validation": "v", "validation_split": 0.1},
           "output_dir": "o"})",
       {"dataset.validation_split", "together with dataset.validation"}},
      {R"({"model": "m", "dataset": {"train": "d", "validation_split": 1}, "output_dir": "o"})",
       {"dataset.validation_split = 1; expected a number in [0, 1)"}},
      {R"({"model": "m", "dataset": {"train": "d", "chat_template": "llama9"}, "output_dir": "o"})",
       {"dataset.chat_template", "llama3"}},
      {R"({"model": "m", "dataset": {"train": "d", "chat_template": {"usr": {}}}, "output_dir": "o"})",
       {"dataset.chat_template", "usr"}},
      {R"({"model": "m", "dataset": {"train": "d", "shuffle_buffer_size": 0}, "output_dir": "o"})",
       {"dataset.shuffle_buffer_size = 0; expected an integer >= 1"}},
      {"{" + base + R"(, "lora": {"r": 8}})", {"lora is given but method is \"full\""}},
      {"{" + base + R"(, "save_merged": true})", {"save_merged", "\"method\": \"lora\""}},
      {"{" + base + R"(, "method": "lora", "lora": {"r": 0}})", {"lora.r = 0; expected an integer >= 1"}},
      {"{" + base + R"(, "method": "lora", "lora": {"rank": 4}})", {"unknown key 'lora.rank'", "alpha"}},
      {"{" + base + R"(, "method": "lora", "lora": {"target_modules": ["lm_head"]}})",
       {"job.json: lora:", "lm_head"}},
      {"{" + base + R"(, "method": "lora", "lora": {"target_modules": 3}})",
       {"lora.target_modules = 3", "all-linear"}},
      {"{" + base + R"(, "hyperparameters": {"eval_steps": -1}})",
       {"hyperparameters.eval_steps = -1; expected an integer >= 0"}},
      {R"({"model": "m", "dataset": {"train": "d", "extra": 1}, "output_dir": "o"})",
       {"unknown key 'dataset.extra'", "train"}},
      {R"({"model": "m", "dataset": {"train": "d"}})", {"output_dir is required"}},
      {"{" + base + R"(, "method": "dora"})", {"method = \"dora\"", "\"full\", \"lora\" or \"qlora\""}},
      // qlora: the quantization object belongs to it alone, and is strict.
      {"{" + base + R"(, "method": "lora", "quantization": {"type": "nf4"}})",
       {"job.json: quantization is given but method is \"lora\"", "\"method\": \"qlora\""}},
      {"{" + base + R"(, "quantization": {}})", {"quantization is given but method is \"full\""}},
      {"{" + base + R"(, "method": "qlora", "quantization": {"type": "fp4"}})",
       {"quantization.type = \"fp4\"; expected \"nf4\"", "fp4\" is not implemented"}},
      {"{" + base + R"(, "method": "qlora", "quantization": {"bits": 4}})",
       {"unknown key 'quantization.bits'", "double_quant", "type"}},
      {"{" + base + R"(, "method": "qlora", "quantization": "nf4"})",
       {"quantization = \"nf4\"; expected an object like"}},
      {"{" + base + R"(, "method": "qlora", "quantization": {"double_quant": "yes"}})",
       {"quantization.double_quant = \"yes\"; expected true or false"}},
      {"{" + base + R"(, "method": "qlora", "lora": {"r": 0}})", {"lora.r = 0; expected an integer >= 1"}},
      {"{" + base + R"(, "method": "qlora", "lora": {"target_modules": ["lm_head"]}})",
       {"job.json: lora:", "lm_head"}},
      {"{" + base + R"(, "device": "gpu"})", {"device = \"gpu\"", "auto, cpu, cuda, cuda:N"}},
      {"{" + base + R"(, "device": "cuda:x"})", {"device = \"cuda:x\""}},
      {"{" + base + R"(, "hyperparameters": {"zero_stage": 2}})",
       {"hyperparameters.zero_stage = 2; expected 0 (no sharding) or 1"}},
      {"{" + base + R"(, "hyperparameters": {"ddp_timeout": 0}})",
       {"hyperparameters.ddp_timeout = 0; expected an integer >= 1"}},
      {"{" + base + R"(, "hyperparameters": {"ddp_bucket_cap_mb": 0}})",
       {"hyperparameters.ddp_bucket_cap_mb = 0; expected an integer >= 1"}},
      {"{" + base + R"(, "kernels": ["rms_norm", "flash"]})",
       {"kernels = [\"rms_norm\",\"flash\"]", "unknown kernel 'flash'", "fused_linear_cross_entropy", "'all'"}},
      {"{" + base + R"(, "kernels": "foak"})", {"kernels = \"foak\"; expected a list of kernel names"}},
      {"{" + base + R"(, "model": 3})", {"model = 3; expected a string"}},
      {"{\"model\": ", {"job.json: invalid JSON"}},
      {"[]", {"job.json: expected a JSON object"}},
  };
  for (const BadJob& c : cases) {
    auto job = ParseJobConfig(c.json, "job.json");
    ASSERT_FALSE(job.ok()) << c.json;
    EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    for (const std::string& e : c.expected) {
      EXPECT_TRUE(Contains(job.status(), e)) << "json: " << c.json << "\nstatus: " << job.status()
                                             << "\nexpected: " << e;
    }
  }
}

TEST(JobConfig, MissingFileNamesIt) {
  auto job = LoadJobConfig("/nonexistent/job.json");
  ASSERT_FALSE(job.ok());
  EXPECT_TRUE(Contains(job.status(), "/nonexistent/job.json"));
}

// ---------------------------------------------------------------- schedules

LrSchedule Schedule(LrSchedulerType type, int64_t warmup, int64_t max_steps, double min_ratio) {
  LrScheduleOptions o;
  o.type = type;
  o.base_lr = 2.0;
  o.warmup_steps = warmup;
  o.max_steps = max_steps;
  o.min_lr_ratio = min_ratio;
  return LrSchedule(o);
}

TEST(LrSchedule, CosineWithWarmupMatchesTransformers) {
  LrSchedule s = Schedule(LrSchedulerType::kCosine, 10, 110, 0.0);
  EXPECT_DOUBLE_EQ(s.Factor(0), 0.0);  // the first update of a warm-up has lr 0
  EXPECT_DOUBLE_EQ(s.Factor(5), 0.5);
  EXPECT_DOUBLE_EQ(s.Factor(10), 1.0);
  EXPECT_NEAR(s.Factor(60), 0.5, 1e-15);   // half way through the decay
  EXPECT_NEAR(s.Factor(110), 0.0, 1e-15);
  EXPECT_NEAR(s.Factor(35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  EXPECT_NEAR(s.LearningRate(35), 2.0 * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  LrSchedule floor = Schedule(LrSchedulerType::kCosine, 10, 110, 0.1);
  EXPECT_NEAR(floor.Factor(60), 0.5 * 0.9 + 0.1, 1e-15);
  EXPECT_NEAR(floor.Factor(110), 0.1, 1e-15);
  EXPECT_DOUBLE_EQ(floor.Factor(5), 0.5);  // warm-up is unaffected
}

TEST(LrSchedule, LinearAndConstant) {
  LrSchedule lin = Schedule(LrSchedulerType::kLinear, 4, 14, 0.0);
  EXPECT_DOUBLE_EQ(lin.Factor(2), 0.5);
  EXPECT_DOUBLE_EQ(lin.Factor(4), 1.0);
  EXPECT_DOUBLE_EQ(lin.Factor(9), 0.5);   // (14 - 9) / (14 - 4)
  EXPECT_DOUBLE_EQ(lin.Factor(14), 0.0);
  EXPECT_DOUBLE_EQ(lin.Factor(20), 0.0);  // clamped
  LrSchedule con = Schedule(LrSchedulerType::kConstant, 3, 100, 0.5);
  EXPECT_DOUBLE_EQ(con.Factor(1), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(con.Factor(3), 1.0);
  EXPECT_DOUBLE_EQ(con.Factor(99), 1.0);
  LrSchedule no_warmup = Schedule(LrSchedulerType::kCosine, 0, 4, 0.0);
  EXPECT_DOUBLE_EQ(no_warmup.Factor(0), 1.0);
  EXPECT_NEAR(no_warmup.Factor(2), 0.5, 1e-15);
}

// ---------------------------------------------------------------- AdamW

// A scalar AdamW step written out from the formulas of torch.optim.AdamW.
struct ScalarAdam {
  double p, m = 0, v = 0;
  void Step(double g, double lr, double b1, double b2, double eps, double wd, int t) {
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
    p -= lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + eps);
  }
};

TEST(AdamW, TwoStepsMatchTheFormulaWithAndWithoutDecay) {
  const double lr = 0.1, b1 = 0.8, b2 = 0.9, eps = 1e-3, wd = 0.5;
  torch::Tensor a = torch::tensor({1.0f, -2.0f, 0.25f}).requires_grad_(true);
  torch::Tensor b = torch::tensor({3.0f, 0.5f}).requires_grad_(true);
  std::vector<ParamGroup> groups = {{{"a.weight"}, {a}, wd, {}}, {{"b.bias"}, {b}, 0.0, {}}};
  AdamWOptions options;
  options.beta1 = b1;
  options.beta2 = b2;
  options.eps = eps;
  AdamW adam(groups, options);
  const std::vector<std::vector<float>> grads_a = {{0.5f, -1.0f, 0.0f}, {0.1f, 0.3f, -2.0f}};
  const std::vector<std::vector<float>> grads_b = {{-0.2f, 4.0f}, {0.7f, 0.0f}};
  std::vector<ScalarAdam> ref_a = {{1.0}, {-2.0}, {0.25}};
  std::vector<ScalarAdam> ref_b = {{3.0}, {0.5}};
  for (int t = 1; t <= 2; ++t) {
    a.mutable_grad() = torch::tensor(grads_a[t - 1]);
    b.mutable_grad() = torch::tensor(grads_b[t - 1]);
    adam.Step(lr);
    adam.ZeroGrad();
    for (size_t i = 0; i < ref_a.size(); ++i) ref_a[i].Step(grads_a[t - 1][i], lr, b1, b2, eps, wd, t);
    for (size_t i = 0; i < ref_b.size(); ++i) ref_b[i].Step(grads_b[t - 1][i], lr, b1, b2, eps, 0.0, t);
  }
  EXPECT_EQ(adam.step_count(), 2);
  EXPECT_FALSE(a.grad().defined());
  for (size_t i = 0; i < ref_a.size(); ++i) {
    EXPECT_NEAR(a[i].item<double>(), ref_a[i].p, 1e-6) << "a[" << i << "]";
    EXPECT_NEAR(adam.exp_avgs()[0][0][i].item<double>(), ref_a[i].m, 1e-6);
    EXPECT_NEAR(adam.exp_avg_sqs()[0][0][i].item<double>(), ref_a[i].v, 1e-6);
  }
  for (size_t i = 0; i < ref_b.size(); ++i) {
    EXPECT_NEAR(b[i].item<double>(), ref_b[i].p, 1e-6) << "b[" << i << "]";
  }
  // The decay really applied to a only: with wd, a[2] (zero first grad) moved
  // by more than the pure Adam step would.
  ScalarAdam no_decay{0.25};
  no_decay.Step(0.0, lr, b1, b2, eps, 0.0, 1);
  no_decay.Step(-2.0, lr, b1, b2, eps, 0.0, 2);
  EXPECT_GT(std::fabs(a[2].item<double>() - no_decay.p), 1e-3);
}

TEST(AdamW, ParamGroupsPutNormsAndBiasesInNoDecay) {
  auto config = ParseModelConfig(R"({"model_type": "qwen2", "vocab_size": 300,
      "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
      "num_attention_heads": 2, "num_key_value_heads": 1})", "cfg");
  ASSERT_TRUE(config.ok()) << config.status();
  LlamaForCausalLM model(*config);
  std::vector<ParamGroup> groups = MakeParamGroups(*model, 0.1);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_DOUBLE_EQ(groups[0].weight_decay, 0.1);
  EXPECT_DOUBLE_EQ(groups[1].weight_decay, 0.0);
  for (const std::string& n : groups[0].names) {
    EXPECT_EQ(n.find("norm"), std::string::npos) << n;
    EXPECT_EQ(n.find(".bias"), std::string::npos) << n;
  }
  std::set<std::string> no_decay(groups[1].names.begin(), groups[1].names.end());
  EXPECT_TRUE(no_decay.count("model.norm.weight"));
  EXPECT_TRUE(no_decay.count("model.layers.0.input_layernorm.weight"));
  EXPECT_TRUE(no_decay.count("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_EQ(groups[0].params.size() + groups[1].params.size(), model->parameters().size());
}

TEST(GradClip, ScalesToMaxNormAndReportsThePreClipNorm) {
  torch::Tensor g1 = torch::tensor({3.0f, 4.0f});
  torch::Tensor g2 = torch::tensor({12.0f});
  EXPECT_NEAR(ClipGradNorm({g1, g2}, 6.5), 13.0, 1e-5);
  const double coef = 6.5 / (13.0 + 1e-6);
  EXPECT_NEAR(g1[0].item<double>(), 3.0 * coef, 1e-6);
  EXPECT_NEAR(g2[0].item<double>(), 12.0 * coef, 1e-5);
  // Now norm 6.5 < 100: unchanged. max_norm 0: measure only.
  EXPECT_NEAR(ClipGradNorm({g1, g2}, 100.0), 6.5, 1e-5);
  EXPECT_NEAR(g1[1].item<double>(), 4.0 * coef, 1e-6);
  torch::Tensor g3 = torch::tensor({30.0f, 40.0f});
  EXPECT_NEAR(ClipGradNorm({g3}, 0.0), 50.0, 1e-5);
  EXPECT_FLOAT_EQ(g3[0].item<float>(), 30.0f);
  EXPECT_EQ(ClipGradNorm({}, 1.0), 0.0);
  // bf16 gradients: norm taken in fp32.
  torch::Tensor g4 = torch::tensor({3.0f, 4.0f}).to(torch::kBFloat16);
  EXPECT_NEAR(ClipGradNorm({g4}, 1.0), 5.0, 1e-5);
  EXPECT_NEAR(g4[1].item<double>(), 0.8, 0.01);
}

// ---------------------------------------------------------------- trainer

ModelConfig TinyConfig() {
  auto config = ParseModelConfig(R"({"model_type": "llama", "vocab_size": 258,
      "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64})",
                                 "tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

TrainerOptions Options(Precision precision, double lr = 1e-2) {
  TrainerOptions o;
  o.precision = precision;
  o.schedule.type = LrSchedulerType::kConstant;
  o.schedule.base_lr = lr;
  o.schedule.max_steps = 100;
  o.weight_decay = 0.1;
  o.max_grad_norm = 1.0;
  return o;
}

std::unique_ptr<Trainer> MakeTrainer(Precision precision, uint64_t seed = 1, double lr = 1e-2) {
  torch::manual_seed(seed);
  LlamaForCausalLM model(TinyConfig());
  auto trainer = Trainer::Create(model, Options(precision, lr), torch::Device(torch::kCPU));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return std::move(*trainer);
}

// Padded examples of different lengths, so micro-batches differ in targets.
std::vector<std::vector<int64_t>> Examples(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int64_t> e = {256};
    const int len = 3 + static_cast<int>(rng() % 20);
    for (int j = 0; j < len; ++j) e.push_back(static_cast<int64_t>(rng() % 256));
    e.push_back(257);
    out.push_back(e);
  }
  return out;
}

std::vector<torch::Tensor> Params(Trainer& t) {
  std::vector<torch::Tensor> out;
  for (const auto& p : t.model()->parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(Trainer, GradientAccumulationEqualsOneBigBatch) {
  std::vector<std::vector<int64_t>> ex = Examples(4, 3);
  ex[0].resize(3);  // very different target counts per micro-batch
  auto big = MakeTrainer(Precision::kFp32);
  auto accumulated = MakeTrainer(Precision::kFp32);
  Batch all = Batcher::MakePaddedBatch(ex, 257);
  Batch first = Batcher::MakePaddedBatch({ex[0], ex[1]}, 257);
  Batch second = Batcher::MakePaddedBatch({ex[2], ex[3]}, 257);
  ASSERT_NE(first.NumTargetTokens(), second.NumTargetTokens());
  for (int step = 0; step < 2; ++step) {
    auto r1 = big->Step({all});
    auto r2 = accumulated->Step({first, second});
    ASSERT_TRUE(r1.ok()) << r1.status();
    ASSERT_TRUE(r2.ok()) << r2.status();
    EXPECT_NEAR(r1->loss, r2->loss, 1e-6 * r1->loss);
    EXPECT_NEAR(r1->grad_norm, r2->grad_norm, 1e-5 * r1->grad_norm);
    EXPECT_EQ(r1->target_tokens, r2->target_tokens);
    EXPECT_EQ(r1->input_tokens, r2->input_tokens);
    if (step == 0) {
      // After one step the first moments are (1 - beta1) * clipped gradient:
      // the gradients themselves agree, tensor by tensor.
      const auto& m1 = big->optimizer().exp_avgs();
      const auto& m2 = accumulated->optimizer().exp_avgs();
      for (size_t g = 0; g < m1.size(); ++g) {
        for (size_t i = 0; i < m1[g].size(); ++i) {
          const double scale = m1[g][i].abs().max().item<double>();
          const double diff = (m1[g][i] - m2[g][i]).abs().max().item<double>();
          EXPECT_LE(diff, 1e-5 * scale) << big->optimizer().groups()[g].names[i];
        }
      }
    }
  }
}

TEST(Trainer, SameSeedGivesBitIdenticalRuns) {
  auto run = [](uint64_t seed) {
    auto trainer = MakeTrainer(Precision::kFp32, seed);
    Batcher batcher({2, 32, true, 257}, [ex = Examples(50, 9), i = size_t{0}]() mutable
                    -> absl::StatusOr<std::vector<int64_t>> { return ex[i++ % ex.size()]; });
    std::vector<double> losses;
    for (int step = 0; step < 3; ++step) {
      auto b1 = batcher.Next();
      auto b2 = batcher.Next();
      auto r = trainer->Step({*b1, *b2});
      EXPECT_TRUE(r.ok()) << r.status();
      losses.push_back(r->loss);
      losses.push_back(r->grad_norm);
    }
    return std::make_pair(losses, Params(*trainer));
  };
  auto [losses1, params1] = run(5);
  auto [losses2, params2] = run(5);
  EXPECT_EQ(losses1, losses2);  // exact, not approximate
  for (size_t i = 0; i < params1.size(); ++i) EXPECT_TRUE(torch::equal(params1[i], params2[i]));
  auto [losses3, params3] = run(6);
  EXPECT_NE(losses1, losses3);
}

TEST(Trainer, LoraBf16MixedTrainsOnlyFp32AdaptersOverAFrozenBf16Base) {
  torch::manual_seed(1);
  LlamaForCausalLM model(TinyConfig());
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  lora.dropout = 0.5;
  ASSERT_TRUE(ApplyLora(model, lora).ok());
  TrainerOptions o = Options(Precision::kBf16Mixed);
  o.keep_trainable_fp32 = true;
  auto created = Trainer::Create(model, o, torch::Device(torch::kCPU));
  ASSERT_TRUE(created.ok()) << created.status();
  Trainer& trainer = **created;
  std::map<std::string, torch::Tensor> base_before;
  for (const auto& item : trainer.model()->named_parameters()) {
    const bool is_lora = item.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(item.value().requires_grad(), is_lora) << item.key();
    EXPECT_EQ(item.value().scalar_type(), is_lora ? torch::kFloat : torch::kBFloat16) << item.key();
    if (!is_lora) base_before[item.key()] = item.value().clone();
  }
  for (const auto& group : trainer.optimizer().groups()) {
    for (const auto& name : group.names) EXPECT_NE(name.find(".lora_"), std::string::npos) << name;
  }
  for (const auto& [name, tensor] : trainer.optimizer().NamedState()) {
    EXPECT_EQ(name.find(".master"), std::string::npos) << "no masters: the adapters are fp32";
    EXPECT_EQ(tensor.scalar_type(), torch::kFloat) << name;
  }
  Batch batch = Batcher::MakePaddedBatch(Examples(2, 4), 257);
  ASSERT_TRUE(trainer.Step({batch}).ok());
  for (const auto& item : trainer.model()->named_parameters()) {
    if (item.key().find(".lora_B") != std::string::npos) {
      EXPECT_GT(item.value().abs().sum().item<double>(), 0) << item.key() << " was trained";
    } else if (base_before.count(item.key())) {
      EXPECT_TRUE(torch::equal(item.value(), base_before[item.key()])) << item.key() << " moved";
    }
  }
  // Evaluation in eval mode: adapter dropout off, so the loss is reproducible.
  trainer.model()->eval();
  auto a = trainer.EvalLossSums(batch);
  auto b = trainer.EvalLossSums(batch);
  trainer.model()->train();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->loss_sum, b->loss_sum);
  EXPECT_EQ(a->target_tokens, batch.NumTargetTokens());
}

TEST(TrainerState, DataOptionsLoraAndExamplePositionRoundTripAndAreCompared) {
  TrainerState s;
  s.examples_consumed = 1234;
  s.fingerprint.hyperparameters_json = R"({"eval_steps": 5})";
  s.fingerprint.dataset_options_json = R"({"format":"chat","train_on_prompt":false})";
  s.fingerprint.lora_json = R"({"r":8})";
  s.fingerprint.quantization_json = R"({"type":"nf4","double_quant":true})";
  auto parsed = ParseTrainerState(TrainerStateToJson(s), "trainer_state.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->examples_consumed, 1234);
  EXPECT_EQ(parsed->fingerprint.dataset_options_json, s.fingerprint.dataset_options_json);
  EXPECT_EQ(parsed->fingerprint.lora_json, s.fingerprint.lora_json);
  EXPECT_EQ(parsed->fingerprint.quantization_json, s.fingerprint.quantization_json);

  RunFingerprint changed = parsed->fingerprint;
  changed.hyperparameters_json = R"({"eval_steps": 50})";  // evaluation may change freely
  EXPECT_TRUE(CheckResumeCompatible(parsed->fingerprint, changed, "ckpt").ok());
  changed.dataset_options_json = R"({"format":"chat","train_on_prompt":true})";
  changed.lora_json = R"({"r":4})";
  absl::Status st = CheckResumeCompatible(parsed->fingerprint, changed, "ckpt");
  EXPECT_TRUE(Contains(st, "dataset.train_on_prompt: false -> true")) << st;
  EXPECT_TRUE(Contains(st, "lora.r: 8 -> 4")) << st;
  changed = parsed->fingerprint;
  changed.method = "lora";
  changed.quantization_json = "{}";
  st = CheckResumeCompatible(parsed->fingerprint, changed, "ckpt");
  EXPECT_TRUE(Contains(st, "quantization.double_quant: true -> (absent)")) << st;
  // A checkpoint from before qlora has no quantization key: "{}", as lora's.
  nlohmann::json old_state = nlohmann::json::parse(TrainerStateToJson(s));
  old_state["fingerprint"].erase("quantization");
  auto old_parsed = ParseTrainerState(old_state.dump(), "trainer_state.json");
  ASSERT_TRUE(old_parsed.ok()) << old_parsed.status();
  EXPECT_EQ(old_parsed->fingerprint.quantization_json, "{}");
}

TEST(Trainer, Bf16MixedKeepsFp32MastersAndSavesThem) {
  auto trainer = MakeTrainer(Precision::kBf16Mixed, 1, /*lr=*/1e-4);
  for (const auto& p : trainer->model()->parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  const auto& masters = trainer->optimizer().update_tensors();
  for (const auto& group : masters) {
    for (const auto& m : group) EXPECT_EQ(m.scalar_type(), torch::kFloat);
  }
  for (const auto& group : trainer->optimizer().exp_avg_sqs()) {
    for (const auto& v : group) EXPECT_EQ(v.scalar_type(), torch::kFloat);
  }
  Batch batch = Batcher::MakePaddedBatch(Examples(2, 4), 257);
  std::vector<torch::Tensor> before;
  for (const auto& group : masters) {
    for (const auto& m : group) before.push_back(m.clone());
  }
  auto r = trainer->Step({batch});
  ASSERT_TRUE(r.ok()) << r.status();
  // A 1e-4 step is below bf16's resolution for most weights: the masters
  // moved, but the bf16 params are exactly the masters rounded.
  size_t k = 0;
  int64_t moved_below_bf16 = 0;
  for (size_t g = 0; g < masters.size(); ++g) {
    for (size_t i = 0; i < masters[g].size(); ++i, ++k) {
      const torch::Tensor& m = masters[g][i];
      const torch::Tensor& p = trainer->optimizer().groups()[g].params[i];
      EXPECT_FALSE(torch::equal(m, before[k]));
      EXPECT_TRUE(torch::equal(p, m.to(torch::kBFloat16)));
      moved_below_bf16 += (m != p.to(torch::kFloat)).sum().item<int64_t>();
    }
  }
  EXPECT_GT(moved_below_bf16, 0);

  const TempDir tmp;
  const std::string dir = tmp.path() + "/ckpt";
  ASSERT_TRUE(trainer->SaveWeights(dir, {}).ok());
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* info = (*file)->Find("model.layers.0.mlp.up_proj.weight");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->dtype, DType::kF32);
  torch::Tensor saved = torch::from_blob(const_cast<void*>((*file)->Data(*info)), info->shape,
                                         torch::kFloat);
  torch::Tensor master;
  for (size_t g = 0; g < masters.size(); ++g) {
    for (size_t i = 0; i < masters[g].size(); ++i) {
      if (trainer->optimizer().groups()[g].names[i] == "model.layers.0.mlp.up_proj.weight") {
        master = masters[g][i];
      }
    }
  }
  EXPECT_TRUE(torch::equal(saved, master));
  // The model is bf16 again after saving.
  for (const auto& p : trainer->model()->parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
}

TEST(Trainer, PureBf16KeepsEverythingBf16) {
  auto trainer = MakeTrainer(Precision::kBf16);
  Batch batch = Batcher::MakePaddedBatch(Examples(2, 4), 257);
  auto r = trainer->Step({batch});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::isfinite(r->loss));
  for (const auto& group : trainer->optimizer().exp_avgs()) {
    for (const auto& m : group) EXPECT_EQ(m.scalar_type(), torch::kBFloat16);
  }
  for (const auto& p : trainer->model()->parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
}

TEST(Trainer, BadBatchesAreErrorsNamingTheStep) {
  auto trainer = MakeTrainer(Precision::kFp32);
  Batch batch = Batcher::MakePaddedBatch({{256, 300, 257}}, 257);
  auto r = trainer->Step({batch});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "step 1")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "300")) << r.status();
  EXPECT_FALSE(trainer->Step({}).ok());
  Batch no_targets = Batcher::MakePaddedBatch({{256}}, 257);
  auto r2 = trainer->Step({no_targets});
  ASSERT_FALSE(r2.ok());
  EXPECT_TRUE(Contains(r2.status(), "no target tokens")) << r2.status();
  EXPECT_EQ(trainer->step(), 0);
}

TEST(Trainer, LearningRateFollowsTheSchedule) {
  torch::manual_seed(1);
  TrainerOptions o = Options(Precision::kFp32);
  o.schedule.type = LrSchedulerType::kLinear;
  o.schedule.warmup_steps = 2;
  o.schedule.max_steps = 4;
  auto trainer = Trainer::Create(LlamaForCausalLM(TinyConfig()), o, torch::Device(torch::kCPU));
  ASSERT_TRUE(trainer.ok());
  Batch batch = Batcher::MakePaddedBatch(Examples(1, 2), 257);
  std::vector<double> lrs;
  for (int i = 0; i < 4; ++i) lrs.push_back((*trainer)->Step({batch})->learning_rate);
  EXPECT_DOUBLE_EQ(lrs[0], 0.0);
  EXPECT_DOUBLE_EQ(lrs[1], 0.005);
  EXPECT_DOUBLE_EQ(lrs[2], 0.01);
  EXPECT_DOUBLE_EQ(lrs[3], 0.005);
}

// The embedding of every token poisoned with +inf in one column: the
// forward's RMSNorm turns it into NaN. Returns the clean weight to restore.
torch::Tensor PoisonEmbedding(Trainer& t) {
  torch::NoGradGuard no_grad;
  torch::Tensor w = t.model()->named_parameters()["model.embed_tokens.weight"];
  torch::Tensor clean = w.detach().clone();
  w.select(1, 0).fill_(std::numeric_limits<float>::infinity());
  return clean;
}

void Restore(Trainer& t, const torch::Tensor& clean) {
  torch::NoGradGuard no_grad;
  t.model()->named_parameters()["model.embed_tokens.weight"].copy_(clean);
}

std::vector<torch::Tensor> FirstMoments(Trainer& t) {
  std::vector<torch::Tensor> out;
  for (const auto& group : t.optimizer().exp_avgs()) {
    for (const torch::Tensor& m : group) out.push_back(m.clone());
  }
  return out;
}

void ExpectSame(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
                const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << what << " " << i;
}

TEST(Trainer, ANonFiniteStepFailsNamingItBeforeTheWeightsChange) {
  for (Precision precision : {Precision::kFp32, Precision::kBf16Mixed}) {
    SCOPED_TRACE(PrecisionName(precision));
    auto trainer = MakeTrainer(precision);
    Batch batch = Batcher::MakePaddedBatch(Examples(2, 4), 257);
    ASSERT_TRUE(trainer->Step({batch}).ok());
    PoisonEmbedding(*trainer);
    const std::vector<torch::Tensor> params = Params(*trainer);
    const std::vector<torch::Tensor> moments = FirstMoments(*trainer);
    auto r = trainer->Step({batch});
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(IsNonFiniteStepError(r.status())) << r.status();
    EXPECT_TRUE(Contains(r.status(), "step 2: the loss is nan")) << r.status();
    EXPECT_TRUE(Contains(r.status(), "on_nonfinite")) << r.status();
    EXPECT_EQ(trainer->step(), 1);
    EXPECT_EQ(trainer->optimizer().step_count(), 1);
    ExpectSame(params, Params(*trainer), "weights");  // +inf == +inf: unchanged
    ExpectSame(moments, FirstMoments(*trainer), "moments");
  }
}

TEST(Trainer, ASkippedStepLeavesNoTraceButTheStepCount) {
  // A: step, a poisoned (skipped) step, then clean steps. B: the same
  // without the poisoned step. A constant schedule and AdamW's own step count
  // (not advanced by a skip) make A's later steps B's, bit for bit.
  TrainerOptions o = Options(Precision::kFp32);
  o.skip_nonfinite = true;
  torch::manual_seed(1);
  auto a = Trainer::Create(LlamaForCausalLM(TinyConfig()), o, torch::Device(torch::kCPU));
  torch::manual_seed(1);
  auto b = Trainer::Create(LlamaForCausalLM(TinyConfig()), o, torch::Device(torch::kCPU));
  ASSERT_TRUE(a.ok() && b.ok());
  Batch b1 = Batcher::MakePaddedBatch(Examples(2, 4), 257);
  Batch b2 = Batcher::MakePaddedBatch(Examples(2, 5), 257);
  ASSERT_TRUE((*a)->Step({b1}).ok());
  ASSERT_TRUE((*b)->Step({b1}).ok());

  const torch::Tensor clean = PoisonEmbedding(**a);
  const std::vector<torch::Tensor> params = Params(**a);
  auto skipped = (*a)->Step({b2});
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  EXPECT_TRUE(skipped->skipped);
  EXPECT_TRUE(std::isnan(skipped->loss));
  EXPECT_EQ(skipped->step, 2);
  EXPECT_EQ((*a)->step(), 2);  // the step counts: its batch and learning rate are used up
  EXPECT_EQ((*a)->optimizer().step_count(), 1);
  ExpectSame(params, Params(**a), "weights after the skipped step");
  Restore(**a, clean);

  for (int i = 0; i < 2; ++i) {
    auto ra = (*a)->Step({b2});
    auto rb = (*b)->Step({b2});
    ASSERT_TRUE(ra.ok() && rb.ok());
    EXPECT_FALSE(ra->skipped);
    EXPECT_EQ(ra->loss, rb->loss);
    EXPECT_EQ(ra->grad_norm, rb->grad_norm);
    EXPECT_EQ(ra->step, rb->step + 1);
  }
  ExpectSame(Params(**a), Params(**b), "weights after two clean steps");
}

TEST(JobConfig, OnNonfiniteParsesAndStaysOutOfTheFingerprint) {
  auto plain = ParseWith("{}");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->hyperparameters.skip_nonfinite_steps);
  EXPECT_EQ(plain->hyperparameters.max_consecutive_skips, 10);
  auto skip = ParseWith(R"({"on_nonfinite": "skip", "max_consecutive_skips": 3})");
  ASSERT_TRUE(skip.ok()) << skip.status();
  EXPECT_TRUE(skip->hyperparameters.skip_nonfinite_steps);
  EXPECT_EQ(skip->hyperparameters.max_consecutive_skips, 3);
  EXPECT_TRUE(MakeTrainerOptions(*skip, 10).skip_nonfinite);
  EXPECT_FALSE(MakeTrainerOptions(*plain, 10).skip_nonfinite);
  EXPECT_EQ(HyperparametersToJson(skip->hyperparameters),
            HyperparametersToJson(plain->hyperparameters));
  auto fail = ParseWith(R"({"on_nonfinite": "fail"})");
  ASSERT_TRUE(fail.ok()) << fail.status();
  EXPECT_FALSE(fail->hyperparameters.skip_nonfinite_steps);

  auto bad = ParseWith(R"({"on_nonfinite": "ignore"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "on_nonfinite")) << bad.status();
  EXPECT_TRUE(Contains(bad.status(), "\"skip\"")) << bad.status();
  auto zero = ParseWith(R"({"max_consecutive_skips": 0})");
  ASSERT_FALSE(zero.ok());
  EXPECT_TRUE(Contains(zero.status(), "max_consecutive_skips")) << zero.status();
}

// ---------------------------------------------------------------- outputs

TEST(MetricsWriter, AppendsOrderedFlushedLines) {
  const TempDir tmp;
  const std::string path = tmp.path() + "/metrics.jsonl";
  StepMetrics m;
  m.step = 3;
  m.loss = 1.5;
  m.learning_rate = 0.001;
  m.grad_norm = 0.25;
  m.tokens = 100;
  m.tokens_per_second = 50;
  m.peak_memory_bytes = 1024;
  m.elapsed_s = 2;
  {
    auto w = MetricsWriter::Open(path, nullptr);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(m).ok());
    // Flushed: visible before the writer closes.
    EXPECT_EQ(*ReadFileToString(path),
              "{\"step\":3,\"loss\":1.5,\"learning_rate\":0.001,\"grad_norm\":0.25,"
              "\"tokens\":100,\"tokens_per_second\":50.0,\"peak_memory_bytes\":1024,"
              "\"elapsed_s\":2.0}\n");
  }
  // On CUDA the reserved peak follows the allocated one.
  m.peak_reserved_bytes = 2048;
  EXPECT_NE(MetricsWriter::ToJsonLine(m).find("\"peak_memory_bytes\":1024,\"peak_reserved_bytes\":2048,"),
            std::string::npos);
  m.peak_reserved_bytes = 0;
  m.step = 4;
  m.loss = std::nan("");
  auto w = MetricsWriter::Open(path, nullptr);
  ASSERT_TRUE((*w)->Write(m).ok());
  std::string text = *ReadFileToString(path);
  std::string second = text.substr(text.find('\n') + 1);
  nlohmann::json j = nlohmann::json::parse(second);
  EXPECT_EQ(j["step"], 4);
  EXPECT_TRUE(j["loss"].is_null());
}

TEST(Checkpoint, WritesHfFolderWithTokenizerFilesAndReplacesAtomically) {
  auto trainer = MakeTrainer(Precision::kFp32);
  const TempDir tmp;
  const std::string root = tmp.path();
  const std::string source = root + "/source";
  ASSERT_TRUE(MakeDirs(source).ok());
  ASSERT_TRUE(WriteFileAtomically(source + "/tokenizer.json", "{\"tok\": 1}").ok());
  CheckpointOptions options;
  options.tokenizer_source_dir = source;
  const std::string dir = root + "/out/final";
  ASSERT_TRUE(MakeDirs(root + "/out").ok());
  ASSERT_TRUE(WriteCheckpoint(*trainer, dir, options).ok());
  EXPECT_TRUE(PathExists(dir + "/config.json"));
  EXPECT_TRUE(PathExists(dir + "/model.safetensors"));
  EXPECT_EQ(*ReadFileToString(dir + "/tokenizer.json"), "{\"tok\": 1}");
  EXPECT_FALSE(PathExists(dir + "/tokenizer_config.json"));
  // A second save replaces the folder; nothing is left beside it.
  ASSERT_TRUE(WriteFileAtomically(dir + "/stale.txt", "x").ok());
  ASSERT_TRUE(WriteCheckpoint(*trainer, dir, options).ok());
  EXPECT_FALSE(PathExists(dir + "/stale.txt"));
  EXPECT_FALSE(PathExists(dir + ".partial"));
  EXPECT_FALSE(PathExists(dir + ".old"));
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->vocab_size, 258);
}

}  // namespace
}  // namespace foak

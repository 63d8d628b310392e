// JobConfig: the JSON job file that `foak-worker train --job FILE` runs. The
// format mirrors proto/foak/v1/job.proto (JobSpec) field for field, so the
// coordinator and the worker read one document; examples/demo_job.json is a
// complete example:
//
//   {"name": "demo", "model": "demo/debug-model",
//    "dataset": {"train": "examples/data/demo_train.jsonl", "format": "text"},
//    "method": "full", "output_dir": "demo/out", "device": "auto",
//    "hyperparameters": {"learning_rate": 0.003, "max_steps": 60, ...}}
//
// Parsing is strict: an unknown key is an error naming it and the valid keys
// (a typo must not silently fall back to a default), and every wrong type or
// range names the field path and what is allowed, e.g.
//   job.json: hyperparameters.lr_scheduler = 'cosin'; expected one of cosine, linear, constant
// Relative paths (model, dataset.train, output_dir) are resolved against the
// current directory when the file is parsed. No torch here.
#ifndef FOAK_WORKER_TRAIN_JOB_H_
#define FOAK_WORKER_TRAIN_JOB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/precision.h"

namespace foak {

// Defaults follow transformers' TrainingArguments where it has one.
struct Hyperparameters {
  double learning_rate = 2e-5;           // > 0
  int64_t max_steps = 0;                 // optimizer steps; 0 = derive from epochs
  double epochs = 1.0;                   // > 0; used when max_steps = 0
  int64_t batch_size = 8;                // sequences (rows) per micro-batch, >= 1
  int64_t gradient_accumulation_steps = 1;  // micro-batches per optimizer step, >= 1
  int64_t max_seq_len = 512;             // >= 2; examples are truncated to it
  int64_t warmup_steps = 0;              // >= 0; wins over warmup_ratio when > 0
  double warmup_ratio = 0.0;             // [0, 1]: ceil(ratio * max_steps) warm-up steps
  LrSchedulerType lr_scheduler = LrSchedulerType::kCosine;
  double min_lr_ratio = 0.0;             // [0, 1]
  double weight_decay = 0.0;             // >= 0; never applied to norms and biases
  double adam_beta1 = 0.9;               // [0, 1)
  double adam_beta2 = 0.999;             // [0, 1)
  double adam_epsilon = 1e-8;            // > 0
  double max_grad_norm = 1.0;            // >= 0; 0 disables clipping
  int64_t seed = 42;                     // >= 0: model init, data order
  Precision precision = Precision::kBf16Mixed;
  bool packing = true;                   // see worker/data/batcher.h
  int64_t logging_steps = 1;             // >= 1: a metrics line every N steps (and the last)
  int64_t save_steps = 0;                // >= 0: checkpoint-<step>/ every N steps; 0 = final only
  int64_t max_shard_bytes = 5ll << 30;   // > 0: safetensors shard size, as transformers' "5GB"
};

struct JobConfig {
  std::string name;          // optional, for logs
  std::string model;         // Hugging Face model folder (absolute after parsing), required
  std::string train_data;    // dataset.train: JSONL of {"text": ...} (absolute), required
  std::string data_format = "text";  // dataset.format: only "text" so far
  std::string method = "full";       // only "full" so far (lora: issue 3)
  Hyperparameters hyperparameters;
  std::string output_dir;    // absolute after parsing, required
  std::string device = "auto";  // "auto" (CUDA when available) | "cpu" | "cuda" | "cuda:N"

  // Warm-up steps for a run of `max_steps`: warmup_steps when > 0, else
  // ceil(warmup_ratio * max_steps), as transformers' get_warmup_steps.
  int64_t WarmupSteps(int64_t max_steps) const;
  // Optimizer steps of the run: max_steps when > 0; else, as transformers'
  // Trainer, ceil(epochs * max(1, floor(micro_batches_per_epoch /
  // gradient_accumulation_steps))).
  int64_t ResolveMaxSteps(int64_t micro_batches_per_epoch) const;
};

// `source` (the file name) prefixes every error.
absl::StatusOr<JobConfig> ParseJobConfig(const std::string& json_text, const std::string& source);
absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_JOB_H_

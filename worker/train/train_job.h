// RunTrainJob: `foak-worker train --job FILE` end to end. The order matters
// for what a failure leaves behind: everything that can be checked before
// training (device, config.json, tokenizer, the whole dataset, the weights)
// is checked before the output folder is created, so a bad job or a corrupt
// model leaves no output at all; after that, metrics.jsonl grows one flushed
// line per logged step and per evaluation, and checkpoints appear atomically
// (checkpoint.h).
//
//   1. resolve the device ("auto" = CUDA when torch::cuda::is_available());
//   2. read config.json; load the model folder's tokenizer (LoadTokenizer:
//      tokenizer.json, tokenizer.model, else the byte tokenizer), whose ids
//      must fit the model's vocab_size;
//   3. open the data (ExampleBatchSource: validates every line, counts the
//      epoch, reports bad / truncated / dropped lines) and the validation data
//      (Evaluator), if any;
//   4. pick the checkpoint to resume from, if any, and refuse one of a
//      different run (resume.h);
//   5. torch::manual_seed(seed), build the model, load the weights (fp32) from
//      the model or the checkpoint (LoRA: always the model, then the
//      checkpoint's adapter or fresh adapters; lora_training.h); when resuming
//      restore optimizer, step and RNG state and skip the consumed examples;
//      cut metrics.jsonl back;
//   6. train to max_steps optimizer steps of gradient_accumulation_steps
//      micro-batches each (Trainer::Step), logging every logging_steps,
//      evaluating every eval_steps and at the end (evaluate.h), saving
//      checkpoint-<step>/ every save_steps and at the end;
//   7. save <output_dir>/final: the model (config.json, safetensors, tokenizer
//      files), or for LoRA the PEFT adapter + tokenizer files, and with
//      save_merged <output_dir>/merged (base + adapter).
// An optional TrainObserver (train_observer.h) hears of the start, each logged
// step and evaluation, and each committed checkpoint, always after
// metrics.jsonl or the checkpoint folder has it (foak-worker forwards them to
// foakd, worker/report/).
#ifndef FOAK_WORKER_TRAIN_TRAIN_JOB_H_
#define FOAK_WORKER_TRAIN_TRAIN_JOB_H_

#include <torch/types.h>

#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "worker/train/job.h"
#include "worker/train/trainer.h"
#include "worker/train/train_observer.h"

namespace foak {

// "auto" | "cpu" | "cuda" | "cuda:N"; FAILED_PRECONDITION when CUDA is asked
// for and absent.
absl::StatusOr<torch::Device> ResolveDevice(const std::string& name);

// The trainer settings of `job` (precision, AdamW, clipping, the learning-rate
// schedule over `max_steps`).
TrainerOptions MakeTrainerOptions(const JobConfig& job, int64_t max_steps);

// `metrics_echo` receives the metrics lines (stdout in the CLI), `info` the
// human-readable progress messages (stderr); either may be null. `observer`
// (may be null, not owned) is called on this thread (train_observer.h).
absl::Status RunTrainJob(const JobConfig& job, std::FILE* metrics_echo, std::FILE* info,
                         TrainObserver* observer = nullptr);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_TRAIN_JOB_H_

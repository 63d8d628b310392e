// JobConfig: the JSON job file that `foak-worker train --job FILE` runs. The
// format mirrors proto/foak/v1/job.proto (JobSpec) field for field, so the
// coordinator and the worker read one document; examples/demo_job.json is a
// complete example:
//
//   {"name": "demo", "model": "demo/debug-model",
//    "dataset": {"train": "examples/data/arith_train.jsonl",
//                "validation": "examples/data/arith_valid.jsonl", "format": "chat"},
//    "method": "full", "output_dir": "demo/out", "device": "auto",
//    "hyperparameters": {"learning_rate": 0.005, "max_steps": 160, "eval_steps": 20, ...}}
//
// examples/lora_job.json is the same job with "method": "lora" and a "lora"
// object; examples/qlora_job.json with "method": "qlora", the same "lora"
// object and a "quantization" object (the base's decoder projections held in
// NF4, worker/quant/nf4_linears.h). Output folder layout (output_dir):
//   metrics.jsonl        one line per logged step and one per evaluation
//   checkpoint-<step>/   resumable checkpoints (save_steps)
//   final/               method full: the trained model (config.json +
//                        safetensors + tokenizer files); methods lora and qlora:
//                        the PEFT adapter (adapter_config.json +
//                        adapter_model.safetensors, base_model_name_or_path = the
//                        model folder) + tokenizer files
//   merged/              methods lora and qlora with save_merged: base + adapter
//                        merged into a plain Hugging Face model folder (qlora:
//                        the dequantised NF4 base, which the adapter was
//                        trained against, plus the adapter)
//
// Parsing is strict: an unknown key is an error naming it and the valid keys
// (a typo must not silently fall back to a default), and every wrong type or
// range names the field path and what is allowed, e.g.
//   job.json: hyperparameters.lr_scheduler = 'cosin'; expected one of cosine, linear, constant
// Relative paths (model, dataset.train, dataset.validation, output_dir) are resolved against the
// current directory when the file is parsed. No torch here.
#ifndef FOAK_WORKER_TRAIN_JOB_H_
#define FOAK_WORKER_TRAIN_JOB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/registry.h"
#include "worker/lora/lora_config.h"
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
  int64_t save_steps = 0;                // >= 0: checkpoint-<step>/ every N steps and at the
                                         // end; 0 = no resumable checkpoints, only final/
  int64_t save_total_limit = 0;          // >= 0: keep the newest K checkpoint-<step>/; 0 = all
  int64_t max_shard_bytes = 5ll << 30;   // > 0: safetensors shard size, as transformers' "5GB"
  int64_t eval_steps = 0;                // >= 0: validation loss every N steps and at the end;
                                         // 0 = only at the end (when there is validation data)
  int64_t eval_batch_size = 0;           // >= 0: padded rows per validation batch; 0 = batch_size
  // Recompute each decoder layer in backward instead of keeping its
  // activations (worker/train/activation_checkpointing.h): less memory for
  // about a third more compute, the same numbers. Not part of a run's
  // fingerprint, so a resumed run may switch it.
  bool gradient_checkpointing = false;
  // Data parallel (several ranks; worker/parallel/). Neither is part of a
  // run's fingerprint: they change how, not what, is computed.
  // Seconds a rank waits for the others: at the rendezvous and in every
  // collective (a lost rank then fails the job instead of hanging it), as
  // transformers' ddp_timeout.
  int64_t ddp_timeout = 1800;            // >= 1
  // Gradient bucket size in MiB: one all-reduce per bucket, started during
  // backward as soon as its gradients are ready (DDP's bucket_cap_mb).
  int64_t ddp_bucket_cap_mb = 25;        // >= 1
  // Sharded optimizer state (DeepSpeed's ZeRO stage numbers): 0 = every rank
  // keeps all of AdamW's state; 1 = each rank keeps and updates only its
  // 1/world_size slice of the moments and fp32 master weights, then the
  // updated parameters are all-gathered. The same numbers either way.
  // Checkpoints of a sharded run resume with the same ranks.
  int64_t zero_stage = 0;                // 0 | 1
  // A step whose loss or gradient norm is NaN or infinite. false ("fail"):
  // the job ends before the weights change, its error naming the step (exit
  // code 3: foakd does not retry it, it would recur). true ("skip"): the
  // step's gradients are dropped, the step counts (its batch and learning
  // rate are used up) and training goes on; more than
  // max_consecutive_skips such steps in a row end the job as "fail" does.
  // Neither is part of a run's fingerprint.
  bool skip_nonfinite_steps = false;     // JSON on_nonfinite: "fail" | "skip"
  int64_t max_consecutive_skips = 10;    // >= 1
};

// dataset: the training data and how lines become examples (worker/data).
struct DatasetConfig {
  std::string train;               // JSONL file (absolute after parsing), required
  std::string validation;          // JSONL file for validation loss (absolute), optional
  double validation_split = 0.0;   // [0, 1): fraction of train lines held out for validation;
                                   // exclusive with `validation`
  std::string format = "auto";     // auto | text | alpaca | prompt_completion | chat (record.h)
  // Chat template: a built-in name (chat_template.h) or, when
  // chat_template_json is set, a custom template object. Both empty = the
  // model family's default (DefaultChatTemplate).
  std::string chat_template;
  std::string chat_template_json;  // the custom object, as JSON text
  bool train_on_prompt = false;    // loss on prompt tokens too
  bool instructions_as_chat = false;  // alpaca / prompt_completion through the chat template
  bool skip_bad_lines = false;     // count and skip malformed lines instead of failing
  int64_t shuffle_buffer_size = 10000;  // >= 1 lines held for shuffling (1 = file order)

  bool has_validation() const { return !validation.empty() || validation_split > 0; }
};

// Where training starts (transformers' resume_from_checkpoint). JSON:
//   false (default)         from the model; refused when output_dir already holds
//                           complete checkpoints (resume them or pick another folder)
//   true | "latest"         from the newest COMPLETE checkpoint-<step>/ in
//                           output_dir; from the model when there is none yet
//                           (so a restarted worker simply continues)
//   "PATH"                  from that checkpoint folder, which must be complete
struct ResumeFrom {
  enum class Mode { kNone, kLatest, kPath };
  Mode mode = Mode::kNone;
  std::string path;  // kPath: absolute after parsing
};

// bench: the job is a benchmark, not a fine-tune (worker/bench/bench_job.h).
// It trains the model's architecture from random weights on random tokens
// (no dataset, no downloads) for every combination of seq_lens x
// batch_sizes x kernel_sets, with the job's method, precision, LoRA settings
// and activation checkpointing, and reports per row the tokens per second
// after warm-up and the peak GPU memory. JSON:
//   "bench": {"kernel_sets": ["none", "foak", "all"], "batch_sizes": [4],
//             "seq_lens": [2048], "warmup_steps": 3, "steps": 10,
//             "find_max_batch": false, "max_batch_limit": 1024}
struct BenchConfig {
  bool enabled = false;
  // Each entry a kernel set as one string: "none", "foak", "all" or op names
  // joined by ',' ("foak,fused_linear_cross_entropy"). Default none, foak, all.
  std::vector<std::string> kernel_set_names;
  std::vector<KernelSet> kernel_sets;  // parsed, same order
  std::vector<int64_t> batch_sizes;    // >= 1 each; default {hyperparameters.batch_size}
  std::vector<int64_t> seq_lens;       // >= 2 each; default {hyperparameters.max_seq_len}
  int64_t warmup_steps = 3;            // >= 0 untimed optimizer steps per row
  int64_t steps = 10;                  // >= 1 timed optimizer steps per row
  // Also find, per kernel set and sequence length, the largest batch that
  // fits on the device (doubling from the largest of batch_sizes, then
  // bisection), and time it as one more row.
  bool find_max_batch = false;
  int64_t max_batch_limit = 1024;      // >= 1: the search never tries more rows

  // Rows the job reports: seq_lens x batch_sizes x kernel_sets, plus one per
  // kernel set and sequence length with find_max_batch.
  int64_t PlannedRows() const;
};

// quantization: how method qlora holds its frozen base. JSON:
//   "quantization": {"type": "nf4", "double_quant": true}
// Only the decoder projections are quantised (never lm_head, embeddings or
// norms, as bitsandbytes' load_in_4bit); the compute dtype follows the
// precision (bf16 under bf16-mixed, as bnb_4bit_compute_dtype=bfloat16).
struct QuantizationConfig {
  // bitsandbytes' bnb_4bit_quant_type; "nf4" is the one foak implements
  // (kernels/nf4/), "fp4" is refused.
  std::string type = "nf4";
  // bnb_4bit_use_double_quant: the per-block scales quantised too (~0.5157
  // instead of 0.5625 bytes per weight). Default true, the QLoRA paper's
  // recipe (BitsAndBytesConfig itself defaults to false).
  bool double_quant = true;
};

struct JobConfig {
  std::string name;          // optional, for logs
  std::string model;         // Hugging Face model folder (absolute after parsing), required
  DatasetConfig dataset;
  // "full" | "lora" | "qlora" (LoRA on a base whose decoder projections are
  // NF4, as PEFT over bitsandbytes' load_in_4bit).
  std::string method = "full";
  // methods lora and qlora: the adapter ("lora": {"r", "alpha", "dropout",
  // "target_modules", "use_rslora"}; defaults as LoraConfig). An error with
  // method full.
  LoraConfig lora;
  // method qlora: the base's storage (defaults as QuantizationConfig). An
  // error with another method.
  QuantizationConfig quantization;
  // methods lora and qlora: also write output_dir/merged/ (base + adapter).
  bool save_merged = false;
  Hyperparameters hyperparameters;
  std::string output_dir;    // absolute after parsing, required
  std::string device = "auto";  // "auto" (CUDA when available) | "cpu" | "cuda" | "cuda:N"
  // FOAK fused ops the model is built with: names from kernels/registry.h,
  // "foak" or "all"; empty = plain LibTorch. The same numbers on any device.
  KernelSet kernels;
  ResumeFrom resume_from_checkpoint;
  // Resume even when the checkpoint's dataset, model config or hyperparameters
  // differ from this job's (then the run is no longer an exact continuation).
  bool resume_ignore_mismatch = false;
  // A benchmark job (bench.enabled): `dataset` is absent and `model` needs
  // only config.json (weights are random).
  BenchConfig bench;

  // Methods that train a LoRA adapter on a frozen base: lora and qlora.
  bool UsesLora() const { return method == "lora" || method == "qlora"; }
  bool Quantized() const { return method == "qlora"; }

  // Warm-up steps for a run of `max_steps`: warmup_steps when > 0, else
  // ceil(warmup_ratio * max_steps), as transformers' get_warmup_steps.
  int64_t WarmupSteps(int64_t max_steps) const;
  // Optimizer steps of the run: max_steps when > 0; else, as transformers'
  // Trainer, ceil(epochs * max(1, floor(micro_batches_per_epoch /
  // gradient_accumulation_steps))).
  int64_t ResolveMaxSteps(int64_t micro_batches_per_epoch) const;
};

// The hyperparameters as a JSON object with the job file's keys and
// spellings (recorded in each checkpoint's trainer_state.json).
std::string HyperparametersToJson(const Hyperparameters& h);
// The dataset fields that shape the training example stream (everything but
// the file names, whose contents are fingerprinted separately), as a JSON
// object with the job file's keys.
std::string DatasetOptionsToJson(const DatasetConfig& d);
// The lora object as a JSON object ("{}" for method full).
std::string LoraToJson(const JobConfig& job);
// The quantization object as a JSON object ("{}" unless method qlora).
std::string QuantizationToJson(const JobConfig& job);

// Parses a resume_from_checkpoint value given as text (the CLI's --resume):
// "latest" | "true" | "false" | "none" | a path (made absolute).
ResumeFrom ParseResumeFlag(const std::string& value);

// `source` (the file name) prefixes every error.
absl::StatusOr<JobConfig> ParseJobConfig(const std::string& json_text, const std::string& source);
absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_JOB_H_

// LoRA fine-tuning inside a train job (method "lora"), kept apart from the job
// runner so that train_job.cc reads the same for both methods:
//
//   model   the base weights are loaded from the job's model folder (always:
//           LoRA checkpoints hold only the adapter), then ApplyLora attaches
//           fresh adapters (A from the torch RNG seeded with the job's seed,
//           B zeros) and freezes the base -- or, when resuming, LoadLoraAdapter
//           loads the checkpoint's adapter (fp32, bit-exact);
//   train   the optimizer sees only the trainable (LoRA) parameters, so its
//           state, gradient clipping and checkpoints cover only them; in
//           bf16-mixed only the frozen base becomes bf16 while the adapters
//           and their AdamW state stay fp32 (TrainerOptions::keep_trainable_fp32),
//           as PEFT + transformers' Trainer;
//   save    checkpoints and final/ hold the PEFT adapter (adapter_config.json
//           + adapter_model.safetensors, base_model_name_or_path = the model
//           folder) plus the model's tokenizer files;
//   merged  with save_merged, output_dir/merged/ gets a plain Hugging Face
//           model: a fresh fp32 copy of the base plus the saved final adapter,
//           merged (W + scale * B A), so it equals base + adapter exactly as a
//           user would merge it with PEFT's merge_and_unload.
#ifndef FOAK_WORKER_TRAIN_LORA_TRAINING_H_
#define FOAK_WORKER_TRAIN_LORA_TRAINING_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/train/job.h"
#include "worker/train/trainer.h"

namespace foak {

// Attaches the job's adapters to `model` (base already loaded): ApplyLora, or
// the adapter of checkpoint `resume_dir` when set. Returns the number of
// trainable parameters (elements).
absl::StatusOr<int64_t> PrepareLoraModel(LlamaForCausalLM& model, const JobConfig& job,
                                         const std::optional<std::string>& resume_dir);

// CheckpointOptions::save_model for a LoRA job: the adapter + tokenizer files.
std::function<absl::Status(Trainer&, const std::string&)> LoraSaveHook(const JobConfig& job);

// Writes `merged_dir` (atomically: a .partial folder renamed into place) from
// the base model of the job and the adapter in `adapter_dir`.
absl::Status WriteMergedModel(const JobConfig& job, const ModelConfig& config,
                              const std::string& adapter_dir, const std::string& merged_dir,
                              torch::Device device);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_LORA_TRAINING_H_

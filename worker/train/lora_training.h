// LoRA fine-tuning inside a train job (methods "lora" and "qlora"), kept apart
// from the job runner so that train_job.cc reads the same for every method:
//
//   model   the base weights are loaded from the job's model folder (always:
//           LoRA checkpoints hold only the adapter; qlora loads every decoder
//           projection straight into NF4 on the device, one at a time, with
//           LoadQuantizedBase, so the dense base is never whole in memory and
//           a resumed run re-makes the same codes), then ApplyLora attaches
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
//           user would merge it with PEFT's merge_and_unload. qlora merges into
//           the dequantised NF4 base (dequant(W) + scale * B A, in fp32), the
//           weights the adapter was trained against, as PEFT dequantises a
//           4-bit layer to merge into it.
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
#include "worker/quant/nf4_linears.h"
#include "worker/train/job.h"
#include "worker/train/trainer.h"

namespace foak {

// Method qlora: the job's base built on `device` in `dtype` with every decoder
// projection loaded straight into NF4 (worker/quant/nf4_linears.h) per
// job.quantization; `stats` (optional) receives what the NF4 storage holds.
absl::StatusOr<LlamaForCausalLM> LoadQuantizedBase(const ModelConfig& config, const JobConfig& job,
                                                   torch::Device device, torch::Dtype dtype,
                                                   const KernelSet& kernels, Nf4Stats* stats);

// Attaches the job's adapters to `model` (base already loaded): ApplyLora, or
// the adapter of checkpoint `resume_dir` when set. Returns the number of
// trainable parameters (elements).
absl::StatusOr<int64_t> PrepareLoraModel(LlamaForCausalLM& model, const JobConfig& job,
                                         const std::optional<std::string>& resume_dir);

// CheckpointOptions::save_model for a LoRA job: the adapter + tokenizer files.
std::function<absl::Status(Trainer&, const std::string&)> LoraSaveHook(const JobConfig& job);

// Writes `merged_dir` (atomically: a .partial folder renamed into place) from
// the base model of the job and the adapter in `adapter_dir` (qlora: the
// dequantised NF4 base, quantised as the run did).
absl::Status WriteMergedModel(const JobConfig& job, const ModelConfig& config,
                              const std::string& adapter_dir, const std::string& merged_dir,
                              torch::Device device);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_LORA_TRAINING_H_

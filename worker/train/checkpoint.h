// Checkpoint folders, written by the trainer and read back for resume.
//
// WriteCheckpoint: a model-only Hugging Face folder (config.json + safetensors
// + the source model's tokenizer files), used for <output_dir>/final; it loads
// with transformers' from_pretrained as it is.
//
// WriteTrainingCheckpoint: <output_dir>/checkpoint-<step>/, everything needed
// to continue the run exactly (transformers' Trainer layout, foak's formats):
//   config.json, model*.safetensors, tokenizer files   the model (fp32 masters
//                                                      in bf16-mixed), as final/
//   (LoRA: adapter_config.json + adapter_model.safetensors + tokenizer files
//    instead, written by CheckpointOptions::save_model; lora_training.h)
//   optimizer.safetensors   AdamW state keyed by parameter name (see
//                           AdamW::NamedState), metadata step_count, precision
//   trainer_state.json      step, data position, LR schedule, RNG states,
//                           run fingerprint, log history (trainer_state.h);
//                           written LAST: its presence marks completeness
// Everything goes into checkpoint-<step>.tmp.<pid>/ first, every file and
// folder is fsynced, the folder is renamed into place and the parent fsynced
// (checkpoint_dir.h): a crash never leaves a half checkpoint under a name that
// resume would pick. Then the oldest complete checkpoints beyond
// save_total_limit are removed (never the one just written).
//
// Sharded optimizer state (Trainer::sharded(), ZeRO stage 1): instead of
// optimizer.safetensors every rank's slices go to
// optimizer.rank-<r>-of-<W>.safetensors (metadata: the shard layout). Ranks
// > 0 write theirs into checkpoint-<step>.tmp.shards/ first
// (WriteOptimizerShard); rank 0 moves them into its temp folder before the
// commit, so the folder still appears whole or not at all. Such a checkpoint
// resumes with the same number of ranks and bucket layout (the error says so
// otherwise); the model weights in it are whole, as always.
//
// Resume is RestoreTrainingState: load the model weights from the checkpoint
// folder first (as from any model folder), build the Trainer, then restore the
// optimizer state, the step and the RNG states with this.
#ifndef FOAK_WORKER_TRAIN_CHECKPOINT_H_
#define FOAK_WORKER_TRAIN_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/trainer.h"
#include "worker/train/trainer_state.h"

namespace foak {

// The tokenizer files copied when present in the source model folder.
const std::vector<std::string>& TokenizerFileNames();

// Copies the TokenizerFileNames() present in `source_dir` into `dir` (each
// written atomically); none present is fine.
absl::Status CopyTokenizerFiles(const std::string& source_dir, const std::string& dir);

struct CheckpointOptions {
  std::string tokenizer_source_dir;  // "" = copy no tokenizer files
  uint64_t max_shard_bytes = 5ull << 30;
  // Writes the model part into `dir` (creating it). Unset = the full model in
  // Hugging Face format plus the tokenizer files. A LoRA run sets an adapter
  // writer here (its optimizer state already covers only trainable tensors).
  std::function<absl::Status(Trainer& trainer, const std::string& dir)> save_model;
  int64_t save_total_limit = 0;  // WriteTrainingCheckpoint: keep the newest K; 0 = all
};

// Model-only folder at `dir`, replacing an older one atomically.
absl::Status WriteCheckpoint(Trainer& trainer, const std::string& dir,
                             const CheckpointOptions& options);

// Writes <output_dir>/checkpoint-<trainer.step()>/ as described above. `state`
// carries the loop's fields (data position, fingerprint, log history...); the
// step, schedule and RNG states are filled in here. Returns the folder.
absl::StatusOr<std::string> WriteTrainingCheckpoint(Trainer& trainer, TrainerState state,
                                                    const std::string& output_dir,
                                                    const CheckpointOptions& options);

// Ranks > 0 of a sharded run: writes this rank's slices for the checkpoint of
// trainer.step() into the staging folder.
absl::Status WriteOptimizerShard(Trainer& trainer, const std::string& output_dir);

// Restores optimizer state (bit-exact), step count and RNG states of the
// checkpoint in `dir` into `trainer`, whose weights were loaded from `dir`.
absl::Status RestoreTrainingState(Trainer& trainer, const std::string& dir,
                                  const TrainerState& state);

// The default CPU generator's state; RestoreRngStates sets it (and the CUDA
// generators' when present and recorded).
std::string CaptureCpuRngState();
std::vector<std::string> CaptureCudaRngStates();
absl::Status RestoreRngStates(const std::string& cpu, const std::vector<std::string>& cuda,
                              const std::string& source);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_CHECKPOINT_H_

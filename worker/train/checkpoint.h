// Checkpoint folders in Hugging Face layout: config.json + safetensors (from
// Trainer::SaveWeights) + the tokenizer files of the source model folder, so
// the folder loads with transformers' from_pretrained as it is.
//
// Atomicity: everything is written into "<dir>.partial" first and renamed to
// <dir> at the end; an older <dir> is moved aside and deleted only after the
// new one is in place. A crash therefore leaves either the old checkpoint or
// the new one under <dir>, never a mix. (Optimizer state for resuming arrives
// with issue 3; these folders hold weights only.)
#ifndef FOAK_WORKER_TRAIN_CHECKPOINT_H_
#define FOAK_WORKER_TRAIN_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/train/trainer.h"

namespace foak {

// The tokenizer files copied when present in the source model folder.
const std::vector<std::string>& TokenizerFileNames();

struct CheckpointOptions {
  std::string tokenizer_source_dir;  // "" = copy no tokenizer files
  uint64_t max_shard_bytes = 5ull << 30;
};

absl::Status WriteCheckpoint(Trainer& trainer, const std::string& dir,
                             const CheckpointOptions& options);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_CHECKPOINT_H_

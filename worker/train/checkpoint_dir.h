// The folder side of resumable checkpoints, without torch: naming, atomic
// commit, finding the newest complete one, cleaning leftovers, rotation.
//
// Layout of <output_dir>:
//   checkpoint-<step>/              complete checkpoints (see checkpoint.h)
//   checkpoint-<step>.tmp.<pid>/    one being written (or left by a crash)
//   final/, metrics.jsonl
//
// Commit protocol (CommitCheckpointDir): every file under the temp folder is
// fsynced, then the folders themselves, then the temp folder is renamed to
// checkpoint-<step> and the parent folder is fsynced so the rename itself is
// durable. A crash at any moment leaves either no checkpoint-<step> or a
// complete one; leftovers only ever carry a ".tmp." name.
//
// Completeness (IsCompleteCheckpoint): the name is exactly checkpoint-<digits>
// and trainer_state.json exists and parses with "complete": true and the same
// global_step, optimizer.safetensors exists, and so does the model part:
// config.json (full fine-tune) or adapter_config.json +
// adapter_model.safetensors (LoRA). trainer_state.json is written last, so this also rejects
// folders copied by hand halfway or written by an older foak (weights only).
#ifndef FOAK_WORKER_TRAIN_CHECKPOINT_DIR_H_
#define FOAK_WORKER_TRAIN_CHECKPOINT_DIR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/trainer_state.h"

namespace foak {

inline constexpr char kTrainerStateFile[] = "trainer_state.json";
inline constexpr char kOptimizerStateFile[] = "optimizer.safetensors";
// Sharded optimizer state (checkpoint.h): rank `rank`'s slices.
std::string ShardedOptimizerFileName(int rank, int world_size);
// Where ranks > 0 leave their slices for checkpoint-<step> of `output_dir`
// until rank 0 moves them into the checkpoint (a ".tmp." name: never picked).
std::string OptimizerShardStagingDir(const std::string& output_dir, int64_t step);
// The world size of a sharded checkpoint in `dir` (from its rank-0 file), or
// 0 when it holds none.
int ShardedOptimizerWorldSize(const std::string& dir);

// "checkpoint-<step>".
std::string CheckpointDirName(int64_t step);
// The step of a folder NAME "checkpoint-<digits>"; nullopt for anything else
// (including "checkpoint-8.tmp.123").
std::optional<int64_t> CheckpointStepFromName(const std::string& name);

// OK when `dir` is a complete checkpoint (see above); otherwise a status that
// says what is missing.
absl::Status IsCompleteCheckpoint(const std::string& dir);

// Reads <dir>/trainer_state.json after checking that `dir` is complete.
absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir);

struct CheckpointEntry {
  int64_t step = 0;
  std::string path;
};
// Complete checkpoints of `output_dir`, oldest (lowest step) first; an absent
// folder has none.
absl::StatusOr<std::vector<CheckpointEntry>> ListCompleteCheckpoints(const std::string& output_dir);
// The newest complete checkpoint, or nullopt.
absl::StatusOr<std::optional<CheckpointEntry>> FindLatestCheckpoint(const std::string& output_dir);

// Removes "checkpoint-*.tmp.*" folders (left by crashed writers; one worker
// owns an output_dir at a time). Returns the removed paths.
absl::StatusOr<std::vector<std::string>> RemoveStaleCheckpointTemps(const std::string& output_dir);

// Keeps the newest `keep` complete checkpoints (0 = keep all) and never removes
// `keep_path` (the one just written). Returns the removed paths.
absl::StatusOr<std::vector<std::string>> RotateCheckpoints(const std::string& output_dir,
                                                           int64_t keep,
                                                           const std::string& keep_path);

// The temp folder to write checkpoint-<step> into: "<...>.tmp.<pid>".
std::string CheckpointTempDir(const std::string& output_dir, int64_t step);
// fsyncs everything under `temp_dir`, renames it to `final_dir` (replacing an
// existing folder of that name: e.g. one from a run that was resumed from an
// earlier step) and fsyncs the parent.
absl::Status CommitCheckpointDir(const std::string& temp_dir, const std::string& final_dir);

// fsync of one file or folder; of a whole tree.
absl::Status FsyncPath(const std::string& path);
absl::Status FsyncTree(const std::string& path);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_CHECKPOINT_DIR_H_

#include "worker/train/checkpoint_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/train/trainer_state.h"

namespace foak {
namespace {

constexpr char kPrefix[] = "checkpoint-";

bool IsDir(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::string CheckpointDirName(int64_t step) { return absl::StrCat(kPrefix, step); }

std::optional<int64_t> CheckpointStepFromName(const std::string& name) {
  const std::string prefix = kPrefix;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  const std::string digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 18) {
    return std::nullopt;
  }
  int64_t step = 0;
  if (!absl::SimpleAtoi(digits, &step)) return std::nullopt;
  return step;
}

absl::Status IsCompleteCheckpoint(const std::string& dir) {
  std::string name = dir;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  name = name.substr(name.rfind('/') == std::string::npos ? 0 : name.rfind('/') + 1);
  const std::optional<int64_t> step = CheckpointStepFromName(name);
  if (!step.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, " is not named checkpoint-<step>, so it is no finished checkpoint"));
  }
  if (!IsDir(dir)) return absl::NotFoundError(absl::StrCat(dir, " is not a folder"));
  const std::string state_path = JoinPath(dir, kTrainerStateFile);
  absl::StatusOr<std::string> text = ReadFileToString(state_path);
  if (!text.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " has no readable ", kTrainerStateFile, " (", text.status().message(),
        "): it is incomplete or was written without resume state"));
  }
  ASSIGN_OR_RETURN(TrainerState state, ParseTrainerState(*text, state_path));
  if (state.global_step != *step) {
    return absl::FailedPreconditionError(absl::StrCat(state_path, ": global_step ",
                                                      state.global_step, " but the folder is ",
                                                      name));
  }
  if (const int world = ShardedOptimizerWorldSize(dir); world > 0) {
    for (int r = 0; r < world; ++r) {
      if (!PathExists(JoinPath(dir, ShardedOptimizerFileName(r, world)))) {
        return absl::FailedPreconditionError(
            absl::StrCat(dir, " lacks ", ShardedOptimizerFileName(r, world)));
      }
    }
  } else if (!PathExists(JoinPath(dir, kOptimizerStateFile))) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " lacks ", kOptimizerStateFile));
  }
  // A full fine-tune's checkpoint holds the model (config.json + weights); a
  // LoRA run's holds the adapter (the base is the job's model folder).
  const bool model = PathExists(JoinPath(dir, "config.json"));
  const bool adapter = PathExists(JoinPath(dir, "adapter_config.json")) &&
                       PathExists(JoinPath(dir, "adapter_model.safetensors"));
  if (!model && !adapter) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " lacks config.json (a model) and adapter_config.json + "
             "adapter_model.safetensors (a LoRA adapter)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir) {
  RETURN_IF_ERROR(IsCompleteCheckpoint(dir));
  const std::string path = JoinPath(dir, kTrainerStateFile);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseTrainerState(text, path);
}

absl::StatusOr<std::vector<CheckpointEntry>> ListCompleteCheckpoints(
    const std::string& output_dir) {
  std::vector<CheckpointEntry> out;
  if (!IsDir(output_dir)) return out;
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(output_dir));
  for (const std::string& name : names) {
    const std::optional<int64_t> step = CheckpointStepFromName(name);
    if (!step.has_value()) continue;
    const std::string path = JoinPath(output_dir, name);
    if (!IsCompleteCheckpoint(path).ok()) continue;
    out.push_back({*step, path});
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step < b.step; });
  return out;
}

absl::StatusOr<std::optional<CheckpointEntry>> FindLatestCheckpoint(
    const std::string& output_dir) {
  ASSIGN_OR_RETURN(std::vector<CheckpointEntry> all, ListCompleteCheckpoints(output_dir));
  if (all.empty()) return std::optional<CheckpointEntry>();
  return std::optional<CheckpointEntry>(all.back());
}

absl::StatusOr<std::vector<std::string>> RemoveStaleCheckpointTemps(
    const std::string& output_dir) {
  std::vector<std::string> removed;
  if (!IsDir(output_dir)) return removed;
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(output_dir));
  for (const std::string& name : names) {
    if (name.rfind(kPrefix, 0) != 0 || name.find(".tmp.") == std::string::npos) continue;
    const std::string path = JoinPath(output_dir, name);
    RETURN_IF_ERROR(RemoveTree(path));
    removed.push_back(path);
  }
  return removed;
}

absl::StatusOr<std::vector<std::string>> RotateCheckpoints(const std::string& output_dir,
                                                           int64_t keep,
                                                           const std::string& keep_path) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  ASSIGN_OR_RETURN(std::vector<CheckpointEntry> all, ListCompleteCheckpoints(output_dir));
  int64_t excess = static_cast<int64_t>(all.size()) - keep;
  for (const CheckpointEntry& entry : all) {  // oldest first
    if (excess <= 0) break;
    if (entry.path == keep_path) continue;
    RETURN_IF_ERROR(RemoveTree(entry.path));
    removed.push_back(entry.path);
    --excess;
  }
  return removed;
}

std::string CheckpointTempDir(const std::string& output_dir, int64_t step) {
  return JoinPath(output_dir, absl::StrCat(CheckpointDirName(step), ".tmp.", ::getpid()));
}

absl::Status FsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open for fsync", path, errno);
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus("cannot fsync", path, err);
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::Status FsyncTree(const std::string& path) {
  if (IsDir(path)) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(path));
    for (const std::string& name : names) RETURN_IF_ERROR(FsyncTree(JoinPath(path, name)));
  }
  return FsyncPath(path);  // a folder after its entries
}

absl::Status CommitCheckpointDir(const std::string& temp_dir, const std::string& final_dir) {
  RETURN_IF_ERROR(FsyncTree(temp_dir));
  if (PathExists(final_dir)) {
    // Replaced (a resumed run re-reaching a step of the run it continues):
    // move the old one to a temp name first, so the final name never holds a mix.
    const std::string old_dir = absl::StrCat(final_dir, ".tmp.old.", ::getpid());
    RETURN_IF_ERROR(RemoveTree(old_dir));
    if (std::rename(final_dir.c_str(), old_dir.c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("cannot move aside the old ", final_dir, " to"), old_dir,
                         errno);
    }
    RETURN_IF_ERROR(RemoveTree(old_dir));
  }
  if (std::rename(temp_dir.c_str(), final_dir.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("cannot rename ", temp_dir, " to"), final_dir, errno);
  }
  return FsyncPath(Parent(final_dir));
}

std::string ShardedOptimizerFileName(int rank, int world_size) {
  return absl::StrCat("optimizer.rank-", rank, "-of-", world_size, ".safetensors");
}

std::string OptimizerShardStagingDir(const std::string& output_dir, int64_t step) {
  return JoinPath(output_dir, absl::StrCat(CheckpointDirName(step), ".tmp.shards"));
}

int ShardedOptimizerWorldSize(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = ListDir(dir);
  if (!names.ok()) return 0;
  constexpr absl::string_view kPrefix = "optimizer.rank-0-of-";
  constexpr absl::string_view kSuffix = ".safetensors";
  for (const std::string& name : *names) {
    absl::string_view n = name;
    if (!absl::ConsumePrefix(&n, kPrefix) || !absl::ConsumeSuffix(&n, kSuffix)) continue;
    int world = 0;
    if (absl::SimpleAtoi(n, &world) && world > 0) return world;
  }
  return 0;
}

}  // namespace foak

#include "worker/train/checkpoint.h"

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak {
namespace {

absl::Status Rename(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("cannot rename ", from, " to"), to, errno);
  }
  return absl::OkStatus();
}

absl::Status WriteWeightsAndTokenizer(Trainer& trainer, const std::string& dir,
                                      const CheckpointOptions& options) {
  SaveOptions save;
  save.max_shard_bytes = options.max_shard_bytes;
  RETURN_IF_ERROR(trainer.SaveWeights(dir, save));
  if (options.tokenizer_source_dir.empty()) return absl::OkStatus();
  for (const std::string& name : TokenizerFileNames()) {
    const std::string from = JoinPath(options.tokenizer_source_dir, name);
    if (!PathExists(from)) continue;
    ASSIGN_OR_RETURN(std::string contents, ReadFileToString(from));
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, name), contents));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& TokenizerFileNames() {
  static const std::vector<std::string> kNames = {"tokenizer.json", "tokenizer_config.json",
                                                  "special_tokens_map.json", "tokenizer.model"};
  return kNames;
}

absl::Status WriteCheckpoint(Trainer& trainer, const std::string& dir,
                             const CheckpointOptions& options) {
  const std::string partial = dir + ".partial";
  const std::string old = dir + ".old";
  RETURN_IF_ERROR(RemoveTree(partial));  // left by an earlier crash

  absl::Status written = WriteWeightsAndTokenizer(trainer, partial, options);
  if (!written.ok()) {
    RemoveTree(partial).IgnoreError();  // no half-written folder stays behind
    return written;
  }
  const bool had_old = PathExists(dir);
  if (had_old) {
    RETURN_IF_ERROR(RemoveTree(old));
    RETURN_IF_ERROR(Rename(dir, old));
  }
  RETURN_IF_ERROR(Rename(partial, dir));
  if (had_old) RemoveTree(old).IgnoreError();  // best effort: the new checkpoint is in place
  return absl::OkStatus();
}

}  // namespace foak

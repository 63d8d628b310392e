#include "worker/train/resume.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/train/checkpoint_dir.h"

namespace foak {

absl::StatusOr<std::optional<ResumePoint>> PlanResume(const JobConfig& job,
                                                      const RunFingerprint& current,
                                                      std::vector<std::string>* info_lines) {
  ASSIGN_OR_RETURN(std::vector<std::string> removed, RemoveStaleCheckpointTemps(job.output_dir));
  for (const std::string& path : removed) {
    info_lines->push_back(absl::StrCat("removed the unfinished checkpoint ", path));
  }
  ASSIGN_OR_RETURN(std::optional<CheckpointEntry> latest, FindLatestCheckpoint(job.output_dir));
  std::string dir;
  switch (job.resume_from_checkpoint.mode) {
    case ResumeFrom::Mode::kNone:
      if (latest.has_value()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "output_dir ", job.output_dir, " already holds checkpoints of an earlier run (newest: ",
            latest->path, "); set \"resume_from_checkpoint\": true (or run with --resume latest) "
            "to continue it, or choose another output_dir"));
      }
      return std::optional<ResumePoint>();
    case ResumeFrom::Mode::kLatest:
      if (!latest.has_value()) {
        info_lines->push_back(absl::StrCat("no complete checkpoint in ", job.output_dir,
                                           " to resume from; starting from ", job.model));
        return std::optional<ResumePoint>();
      }
      dir = latest->path;
      break;
    case ResumeFrom::Mode::kPath:
      dir = job.resume_from_checkpoint.path;
      if (absl::Status s = IsCompleteCheckpoint(dir); !s.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "resume_from_checkpoint = ", dir, ": ", s.message(),
            "; give a complete checkpoint-<step> folder or \"latest\""));
      }
      break;
  }
  ASSIGN_OR_RETURN(TrainerState state, ReadTrainerState(dir));
  absl::Status compatible = CheckResumeCompatible(state.fingerprint, current, dir);
  if (!compatible.ok()) {
    if (!job.resume_ignore_mismatch) return compatible;
    info_lines->push_back(absl::StrCat("warning: resume_ignore_mismatch is set; ",
                                       compatible.message()));
  }
  if (state.global_step > current.max_steps) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " is at step ", state.global_step, ", beyond this job's max_steps ",
        current.max_steps));
  }
  info_lines->push_back(absl::StrCat("resuming from ", dir, " (step ", state.global_step,
                                     ", ", state.micro_batches_consumed,
                                     " micro-batches consumed)"));
  return std::optional<ResumePoint>(ResumePoint{dir, std::move(state)});
}

absl::StatusOr<int64_t> TruncateMetricsFile(const std::string& path, int64_t step) {
  if (!PathExists(path)) return 0;
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::string kept;
  int64_t dropped = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::string s(line);
    const nlohmann::json j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() <= step) {
      kept += s + "\n";
    } else {
      ++dropped;
    }
  }
  if (dropped > 0) RETURN_IF_ERROR(WriteFileAtomically(path, kept));
  return dropped;
}

}  // namespace foak

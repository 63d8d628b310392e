// Resume decisions, without torch: which checkpoint a job continues from (and
// whether it may), and how metrics.jsonl is cut back to that step.
//
// PlanResume turns the job's resume_from_checkpoint into a checkpoint folder:
//   false    none; but a fresh start into an output_dir that already holds
//            complete checkpoints is refused (it would mix two runs' metrics
//            and let rotation delete the wrong checkpoints)
//   latest   the newest complete checkpoint-<step>/ of output_dir, or none
//   PATH     that folder, which must be complete
// Then the checkpoint's fingerprint must equal this run's
// (CheckResumeCompatible) unless resume_ignore_mismatch; stale
// checkpoint-*.tmp.* folders of output_dir are removed.
#ifndef FOAK_WORKER_TRAIN_RESUME_H_
#define FOAK_WORKER_TRAIN_RESUME_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/job.h"
#include "worker/train/trainer_state.h"

namespace foak {

struct ResumePoint {
  std::string dir;  // the checkpoint folder (its weights are the model to load)
  TrainerState state;
};

// `info_lines` receives human-readable notes (what was picked or cleaned).
absl::StatusOr<std::optional<ResumePoint>> PlanResume(const JobConfig& job,
                                                      const RunFingerprint& current,
                                                      std::vector<std::string>* info_lines);

// Keeps the lines of a metrics.jsonl whose "step" <= `step` (dropping later
// ones and unparseable ones, e.g. a line cut by a kill), rewritten atomically.
// An absent file is left absent. Returns the number of lines dropped.
absl::StatusOr<int64_t> TruncateMetricsFile(const std::string& path, int64_t step);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_RESUME_H_

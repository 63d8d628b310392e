// JobManager's index of the output folders unfinished jobs write (see
// CheckOutputDirFree in job_manager.h). Two jobs sharing a folder, or one
// writing inside the other's, corrupt each other quietly: the second resumes
// the first's newest checkpoint as its own, and its save_total_limit deletes
// the first's checkpoints. With tenants that is also a way into another
// tenant's work, so the refusal names the other job only to its own tenant.
//
// Folders are compared resolved (symlinks and ".." followed, the part still
// to be created appended), by whole path components, both ways.
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/domain/job_manager.h"
#include "server/domain/path_confinement.h"

namespace foak {

std::string JobManager::ResolveOrGiven(const std::string& dir) {
  if (dir.empty()) return dir;
  absl::StatusOr<std::string> real = ResolvePath(dir, /*may_not_exist=*/true);
  return real.ok() ? *real : dir;
}

absl::Status JobManager::LoadOutputDirsLocked() {
  if (outputs_loaded_) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<JobRecord> live,
                   store_->JobsInStates({JobState::kQueued, JobState::kStarting, JobState::kRunning,
                                         JobState::kCancelling}));
  for (const JobRecord& job : live) {
    outputs_[job.id] = {ResolveOrGiven(OutputDir(job)), job.tenant, job.request_id};
  }
  outputs_loaded_ = true;
  return absl::OkStatus();
}

absl::Status JobManager::CheckOutputDirFree(const std::string& given, const std::string& resolved,
                                            const std::string& tenant,
                                            const std::string& request_id) {
  for (const auto& [id, use] : outputs_) {
    if (!PathWithin(resolved, use.dir) && !PathWithin(use.dir, resolved)) continue;
    if (!request_id.empty() && use.tenant == tenant && use.request_id == request_id) continue;
    if (use.tenant != tenant) {
      return absl::FailedPreconditionError(absl::StrCat(
          "spec: output_dir = '", given, "' is in use: another job that has not finished writes "
          "there (or in a folder holding it, or inside it); give a folder of your own"));
    }
    const char* how = use.dir == resolved              ? "writes to the same folder"
                      : PathWithin(resolved, use.dir) ? "writes to a folder holding it"
                                                       : "writes to a folder inside it";
    return absl::FailedPreconditionError(absl::StrCat(
        "spec: output_dir = '", given, "' is in use: job ", id, ", which has not finished, ", how,
        " ('", use.dir, "'); two jobs in one folder would resume and delete each other's "
        "checkpoints. Give another folder, or wait for (or cancel) job ", id));
  }
  return absl::OkStatus();
}

void JobManager::ReleaseOutputDir(const std::string& id) {
  absl::MutexLock lock(&outputs_mu_);
  outputs_.erase(id);
}

}  // namespace foak

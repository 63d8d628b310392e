#include "server/domain/job_state.h"

#include "absl/strings/str_cat.h"

namespace foak {

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued: return "QUEUED";
    case JobState::kStarting: return "STARTING";
    case JobState::kRunning: return "RUNNING";
    case JobState::kSucceeded: return "SUCCEEDED";
    case JobState::kFailed: return "FAILED";
    case JobState::kCancelling: return "CANCELLING";
    case JobState::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

std::optional<JobState> JobStateFromName(std::string_view name) {
  for (JobState s : {JobState::kQueued, JobState::kStarting, JobState::kRunning,
                     JobState::kSucceeded, JobState::kFailed, JobState::kCancelling,
                     JobState::kCancelled}) {
    if (name == JobStateName(s)) return s;
  }
  return std::nullopt;
}

bool IsFinal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

namespace {

bool Allowed(JobState from, JobState to) {
  switch (from) {
    case JobState::kQueued:
      return to == JobState::kStarting || to == JobState::kCancelled || to == JobState::kFailed;
    case JobState::kStarting:
      // SUCCEEDED: a worker may finish before its first report arrives.
      return to == JobState::kRunning || to == JobState::kQueued || to == JobState::kFailed ||
             to == JobState::kCancelling || to == JobState::kSucceeded;
    case JobState::kRunning:
      return to == JobState::kSucceeded || to == JobState::kFailed || to == JobState::kQueued ||
             to == JobState::kCancelling;
    case JobState::kCancelling:
      return to == JobState::kCancelled || to == JobState::kSucceeded || to == JobState::kFailed;
    case JobState::kSucceeded:
    case JobState::kFailed:
    case JobState::kCancelled:
      return false;
  }
  return false;
}

}  // namespace

absl::Status CheckTransition(const std::string& job_id, JobState from, JobState to) {
  if (Allowed(from, to)) return absl::OkStatus();
  std::string hint;
  if (to == JobState::kCancelling || to == JobState::kCancelled) {
    hint = "; only QUEUED, STARTING and RUNNING jobs can be cancelled";
  } else if (IsFinal(from)) {
    hint = "; a finished job does not change state";
  }
  return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is ", JobStateName(from),
                                                    " and cannot become ", JobStateName(to),
                                                    hint));
}

}  // namespace foak

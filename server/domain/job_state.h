// The life of a job on the coordinator, and which moves are legal.
//
//   QUEUED ──> STARTING ──> RUNNING ──> SUCCEEDED
//     │            │           │──────> FAILED
//     │            │           └──> QUEUED      (restart from a checkpoint)
//     │            └──> QUEUED / FAILED / SUCCEEDED (finished before reporting)
//     └──> CANCELLED            STARTING, RUNNING ──> CANCELLING ──> CANCELLED
//                                  (or SUCCEEDED / FAILED if the worker ends first)
// A queued job is cancelled at once (nothing runs); a started one goes
// through CANCELLING until its worker is gone. SUCCEEDED, FAILED and
// CANCELLED are final. Torch- and protobuf-free: storage, scheduler and the
// gRPC adapters share it.
#ifndef FOAK_SERVER_DOMAIN_JOB_STATE_H_
#define FOAK_SERVER_DOMAIN_JOB_STATE_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace foak {

enum class JobState { kQueued, kStarting, kRunning, kSucceeded, kFailed, kCancelling, kCancelled };

// "QUEUED", "STARTING", ... (the API's enum names).
const char* JobStateName(JobState s);
std::optional<JobState> JobStateFromName(std::string_view name);
bool IsFinal(JobState s);

// OK, or FAILED_PRECONDITION naming both states, e.g. "job job-1 is SUCCEEDED
// and cannot become CANCELLING; only QUEUED, STARTING and RUNNING jobs can be
// cancelled".
absl::Status CheckTransition(const std::string& job_id, JobState from, JobState to);

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_JOB_STATE_H_

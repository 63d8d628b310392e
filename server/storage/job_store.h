// JobStore: where the coordinator keeps jobs, their event streams and their
// checkpoints, so that all of it survives a restart of foakd. Plain structs
// cross this interface (no protobuf): the gRPC adapters convert.
//
// Events of a job carry a per-job sequence number 1, 2, 3, ... assigned by
// the store in the same transaction that writes them, so a WatchJob stream
// resumed with after_seq = the last seq seen loses and repeats nothing.
// A state change is stored together with its "state" event.
#ifndef FOAK_SERVER_STORAGE_JOB_STORE_H_
#define FOAK_SERVER_STORAGE_JOB_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/domain/job_state.h"

namespace foak {

struct JobRecord {
  std::string id;          // assigned by the store on create ("job-" + 16 hex digits)
  std::string request_id;  // the client's idempotency key, or empty
  std::string spec_json;   // the job spec as canonical JSON (what the worker reads)
  JobState state = JobState::kQueued;
  std::string reason;   // machine-readable, e.g. "WorkerExited", "Cancelled"
  std::string message;  // for people
  int64_t priority = 0;
  int64_t gpus = 0;  // 0 = a CPU job
  int64_t restarts = 0;
  int64_t max_restarts = 0;
  int64_t create_time_ms = 0;
  int64_t update_time_ms = 0;
  // Who submitted it: the tenant its API token is bound to (foakd
  // --auth_tokens_file), or empty when foakd ran without tokens.
  std::string tenant;
};

struct JobEvent {
  std::string job_id;
  int64_t seq = 0;
  int64_t time_ms = 0;
  std::string kind;          // "state", "metrics", "eval", "checkpoint", "log", "bench"
  std::string payload_json;  // the event body
};

struct CheckpointRecord {
  std::string job_id;
  int64_t step = 0;
  std::string path;
  int64_t time_ms = 0;
};

struct ListJobsQuery {
  int64_t page_size = 50;  // 1..1000
  std::string page_token;  // from the previous page, or empty for the first
  std::optional<JobState> state;
  // Only this tenant's jobs; empty = every job (foakd without tokens).
  std::string tenant;
};

struct ListJobsPage {
  std::vector<JobRecord> jobs;  // newest first
  std::string next_page_token;  // empty on the last page
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Stores a new QUEUED job (id, times and state are set here) with its first
  // "state" event. When job.request_id is already known for job.tenant (each
  // tenant has its own request ids): the stored job if spec_json is the same
  // (a retried create), ALREADY_EXISTS if it differs.
  virtual absl::StatusOr<JobRecord> CreateJob(const JobRecord& job) = 0;
  // NOT_FOUND naming the id when there is no such job.
  virtual absl::StatusOr<JobRecord> GetJob(const std::string& id) = 0;
  // INVALID_ARGUMENT for a page_size outside 1..1000 or a token not from us.
  virtual absl::StatusOr<ListJobsPage> ListJobs(const ListJobsQuery& query) = 0;
  // Moves the job to `to` if CheckTransition allows it (else its
  // FAILED_PRECONDITION), recording reason and message, and appends a "state"
  // event, atomically. A move to QUEUED from STARTING/RUNNING counts a restart
  // unless count_restart is false (a relaunch that is not the job's fault,
  // e.g. after foakd itself restarted).
  virtual absl::StatusOr<JobRecord> UpdateState(const std::string& id, JobState to,
                                                const std::string& reason,
                                                const std::string& message,
                                                bool count_restart = true) = 0;
  // Appends an event; returns its seq.
  virtual absl::StatusOr<int64_t> AppendEvent(const std::string& id, const std::string& kind,
                                              const std::string& payload_json) = 0;
  // Events with seq > after_seq, in order, at most `limit`.
  virtual absl::StatusOr<std::vector<JobEvent>> ListEvents(const std::string& id,
                                                           int64_t after_seq, int64_t limit) = 0;
  // Records a checkpoint (a repeat of the same step replaces the path) and a
  // "checkpoint" event.
  virtual absl::Status AddCheckpoint(const CheckpointRecord& checkpoint) = 0;
  virtual absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(const std::string& id) = 0;
  // Jobs in any of `states`, oldest first (a restart resumes QUEUED jobs and
  // reconciles STARTING/RUNNING/CANCELLING ones).
  virtual absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<JobState>& states) = 0;
  // How many jobs are in each state (states with none are absent).
  virtual absl::StatusOr<std::vector<std::pair<JobState, int64_t>>> CountJobsByState() = 0;
  // The job's newest event of `kind`, if any.
  virtual absl::StatusOr<std::optional<JobEvent>> LastEvent(const std::string& id,
                                                            const std::string& kind) = 0;
  // The job's newest event of `kind` whose payload's "rank" is `rank` (a
  // payload without one, or not JSON, counts as rank 0), if any: every rank
  // of a data-parallel job stores its step metrics, and the job's progress
  // is rank 0's.
  virtual absl::StatusOr<std::optional<JobEvent>> LastRankEvent(const std::string& id,
                                                                const std::string& kind,
                                                                int64_t rank) = 0;
};

}  // namespace foak

#endif  // FOAK_SERVER_STORAGE_JOB_STORE_H_

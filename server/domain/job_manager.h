// JobManager: the coordinator's engine. Every change to a job goes through
// it -- API calls, worker reports, worker exits -- so the order of a job's
// events is the order in which it decided them, and it is the one place that
// turns them into state changes:
//
//   CreateJob  -> QUEUED ("Created"), then Schedule()
//   Schedule   -> STARTING ("Scheduled"): worker job file written, the gang
//                 launched (one rank per GPU, or resources.processes ranks
//                 of a CPU job)
//   report     -> RUNNING ("Running") on rank 0's first report
//   exit 0     -> SUCCEEDED ("Completed")
//   exit != 0  -> QUEUED ("Restarting", counted) while restarts < max_restarts
//                 and the failure may pass (not InvalidJob), else FAILED
//   CancelJob  -> QUEUED: CANCELLED at once; STARTING/RUNNING: CANCELLING,
//                 SIGTERM/SIGKILL, then CANCELLED when the workers are gone
//   Start()    -> after a foakd restart: leftover workers killed, STARTING and
//                 RUNNING jobs requeued ("CoordinatorRestarted", not counted as
//                 a restart; the worker resumes from its newest checkpoint),
//                 CANCELLING ones CANCELLED; then the queue is scheduled again.
//   Shutdown() -> workers stopped without touching job states, so the next
//                 Start() requeues them.
//
// Per job, foakd keeps under <data_dir>/jobs/<id>/: job-<attempt>.json (the
// worker's job file, one for all ranks), logs/attempt-<n>-rank-<r>.log, run/
// (the launcher's pid files), and output/ (the default output_dir).
//
// Several ranks: rank 0 speaks for the job (started, step metrics, evals,
// checkpoints, benchmark rows), so the job's state and progress follow it
// alone; a rank > 0 sends only its step metrics, which are stored as events
// (with their "rank") and give that rank's peak memory, nothing else.
//
// Plain structs only: the gRPC
// adapters in server/transport convert. job_manager.cc holds the API side and
// scheduling, job_manager_reports.cc the workers' side (reports, logs, exits).
#ifndef FOAK_SERVER_DOMAIN_JOB_MANAGER_H_
#define FOAK_SERVER_DOMAIN_JOB_MANAGER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/domain/job_spec.h"
#include "server/domain/scheduler.h"
#include "server/domain/worker_tokens.h"
#include "server/launch/launcher.h"
#include "server/storage/file_store.h"
#include "server/storage/job_store.h"
#include "worker/train/bench_result.h"

namespace foak {

class ServerMetrics;

struct JobManagerOptions {
  std::string data_dir;             // absolute; jobs/<id>/ live here
  std::string worker_path;          // the foak-worker executable
  std::string coordinator_address;  // FOAK_COORDINATOR for workers (host:port)
  std::string master_addr = "127.0.0.1";
  // Set for every worker after the FOAK_* variables: with TLS, how workers
  // reach foakd (FOAK_COORDINATOR_TLS_CA, _CERT, _KEY; see foakd.h).
  std::vector<std::pair<std::string, std::string>> worker_env;
  std::function<int64_t()> now_ms;  // default: the system clock
  // An attempt that sends no report (started, a logged step, an evaluation,
  // a checkpoint, a benchmark row) for this long after its launch or its
  // last report is stopped: it restarts per max_restarts, else fails with
  // reason "Stalled". A spec's stall_timeout_s overrides it. 0 = never.
  int64_t stall_timeout_ms = 30 * 60 * 1000;
  // An attempt whose workers send no report at all for this long after its
  // launch (pods unschedulable or waiting in a Kueue queue, an image that
  // never pulls, a local worker that hangs before it starts) is stopped: it
  // restarts per max_restarts, else fails with reason "StartTimeout". A
  // spec's start_timeout_s overrides it. 0 = never. Long by default, as a
  // Kueue queue may hold a job for hours.
  int64_t start_timeout_ms = 24 * 3600 * 1000;
  // How often a thread looks for stalls; 0 = no thread (tests call CheckStalls).
  int64_t stall_check_interval_ms = 1000;
  // Path roots (resolved, ResolveJobSpecPolicy) and job size limits, checked
  // at CreateJob and (the paths) again at every launch; default: none.
  JobSpecPolicy spec_policy;
};

// The latest progress of a job (rank 0's newest "metrics" event and the
// newest "eval" event; for
// a benchmark job its newest "bench" event: step = rows done, max_steps =
// rows planned, tokens/s and peak memory of the newest row that ran).
struct JobProgressInfo {
  int64_t step = 0;
  int64_t max_steps = 0;
  double loss = 0;
  double learning_rate = 0;
  double tokens_per_second = 0;
  int64_t peak_memory_bytes = 0;
  double elapsed_s = 0;
  std::optional<double> eval_loss;
  // A job of several ranks: one entry per rank (index = rank), its peak
  // memory from its newest step report ([0] = peak_memory_bytes; 0 for a rank
  // not heard from yet). Empty for a job of one rank and before the first
  // step report.
  std::vector<int64_t> rank_peak_memory_bytes;
};

struct JobView {
  JobRecord record;
  std::string output_dir;
  std::optional<JobProgressInfo> progress;
};

// One report of a worker (WorkerService), as plain data.
struct WorkerReportInput {
  enum class Kind { kStarted, kMetrics, kEval, kCheckpoint, kBench };
  std::string job_id;
  int64_t attempt = 0;
  // 0 speaks for the job; a rank > 0 sends kMetrics only (kStarted is
  // accepted and ignored, the others refused).
  int64_t rank = 0;
  Kind kind = Kind::kMetrics;
  // kStarted
  int64_t max_steps = 0;
  int64_t start_step = 0;
  std::string device;
  // kMetrics (max_steps above too)
  int64_t step = 0;
  double loss = 0;
  double learning_rate = 0;
  double grad_norm = 0;
  int64_t tokens = 0;
  double tokens_per_second = 0;
  int64_t peak_memory_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  double elapsed_s = 0;
  // kEval (step above too)
  double eval_loss = 0;
  int64_t eval_tokens = 0;
  int64_t eval_examples = 0;
  double eval_s = 0;
  // kCheckpoint (step above too)
  std::string checkpoint_path;
  // kBench: one row of a benchmark job (stored as a "bench" event with the
  // field names of bench.jsonl, BenchResultToJson).
  BenchResult bench;
};

class JobManager {
 public:
  using LauncherFactory = std::function<absl::StatusOr<std::unique_ptr<Launcher>>(Launcher::Callbacks)>;

  // `store`, `files`, `tokens` and `metrics` (may be null) outlive the manager.
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(
      JobManagerOptions options, JobStore* store, FileStore* files, WorkerTokens* tokens,
      ServerMetrics* metrics, SchedulerOptions scheduler, const LauncherFactory& launcher);
  ~JobManager();

  // The address workers report to (FOAK_COORDINATOR); set before Start().
  void SetCoordinatorAddress(const std::string& address);
  // Reconciles what a previous foakd left and schedules the queue.
  absl::Status Start();
  // Refuses new jobs and wakes every watcher (their streams end); workers run on.
  void BeginShutdown();
  // BeginShutdown, then stops the workers without changing job states.
  void Shutdown();
  bool shutting_down() const;

  // validate_only: the checked job, not stored (empty id). `tenant`: who
  // submits it (foakd --auth_tokens_file; empty without tokens); the spec may
  // name only that tenant's uploaded files.
  absl::StatusOr<JobView> CreateJob(const std::string& spec_json, const std::string& request_id,
                                    bool validate_only, const std::string& tenant = "");
  absl::StatusOr<JobView> GetJob(const std::string& id);
  // The job's state alone (a watch's loop asks it on every wake-up).
  absl::StatusOr<JobState> GetState(const std::string& id);
  absl::StatusOr<std::vector<JobView>> ListJobs(const ListJobsQuery& query,
                                                std::string* next_page_token);
  absl::StatusOr<JobView> CancelJob(const std::string& id);
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(const std::string& id);
  absl::StatusOr<std::vector<JobEvent>> ListEvents(const std::string& id, int64_t after_seq,
                                                   int64_t limit);
  // Watching without missing anything: read EventGeneration(id) first, then
  // the store's events; if none were new, WaitForChange(id, generation, ...)
  // returns as soon as anything was recorded for the job after that read (or
  // at the deadline, or when foakd shuts down). Callers re-read the store.
  int64_t EventGeneration(const std::string& id) const;
  void WaitForChange(const std::string& id, int64_t generation, absl::Time deadline);

  // OK, UNAUTHENTICATED (no token) or PERMISSION_DENIED (not this job's).
  absl::Status AuthorizeWorker(const std::string& job_id, const std::string& token) const;
  absl::Status OnWorkerReport(const WorkerReportInput& report);

  // Files (FileService): DeleteFile refuses a file that an unfinished job names.
  FileStore* files() { return files_; }
  absl::Status DeleteFile(const std::string& id);

  std::string JobDir(const std::string& id) const;

  // Stops every attempt that has been silent for longer than its stall
  // timeout, or not heard from at all for longer than its start timeout
  // since its launch (see JobManagerOptions.stall_timeout_ms and
  // start_timeout_ms); returns their job ids. A thread calls it every
  // stall_check_interval_ms.
  std::vector<std::string> CheckStalls();

 private:
  JobManager(JobManagerOptions options, JobStore* store, FileStore* files, WorkerTokens* tokens,
             ServerMetrics* metrics, SchedulerOptions scheduler);

  JobSpecContext SpecContext() const;
  // SpecContext with the path roots of `tenant`'s jobs (PolicyForTenant) and,
  // with tenants, only that tenant's uploaded files.
  absl::StatusOr<JobSpecContext> TenantSpecContext(const std::string& tenant) const;
  // Output folders in use (job_manager_outputs.cc): two unfinished jobs may
  // not write one folder, nor one inside the other's -- the second would
  // resume the first's newest checkpoint, and save_total_limit would delete
  // the first's checkpoints. OK, or FAILED_PRECONDITION naming the other job
  // when it is the same tenant's (else only "in use").
  // A retry of the same tenant's request_id is not a conflict (the store
  // answers it with the job it created).
  absl::Status CheckOutputDirFree(const std::string& given, const std::string& resolved,
                                  const std::string& tenant, const std::string& request_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(outputs_mu_);
  // `dir`'s real path (ResolvePath, may not exist yet), or `dir` as given
  // when it cannot be resolved; empty stays empty.
  static std::string ResolveOrGiven(const std::string& dir);
  absl::Status LoadOutputDirsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(outputs_mu_);
  void ReleaseOutputDir(const std::string& id);
  std::string OutputDir(const JobRecord& job) const;
  absl::StatusOr<JobView> View(JobRecord record);
  void Schedule();
  void LaunchLocked(const JobRecord& job, const Placement& placement)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(schedule_mu_);
  void OnLog(const LogLine& line);
  void OnExit(const LaunchOutcome& outcome);
  absl::StatusOr<JobRecord> Transition(const std::string& id, JobState to,
                                       const std::string& reason, const std::string& message,
                                       bool count_restart = true);
  absl::StatusOr<int64_t> Append(const std::string& id, const std::string& kind,
                                 const std::string& payload_json);
  void Notify(const std::string& id);

  JobManagerOptions options_;
  JobStore* store_;
  FileStore* files_;
  WorkerTokens* tokens_;
  ServerMetrics* metrics_;
  const int64_t total_gpus_;
  const bool cluster_;  // the Kubernetes launcher: the cluster places jobs
  std::unique_ptr<Launcher> launcher_;

  // Held while deciding and launching, so two Schedule() calls never place
  // the same job twice. Never held while calling the launcher's callbacks.
  absl::Mutex schedule_mu_;
  Scheduler scheduler_ ABSL_GUARDED_BY(schedule_mu_);
  std::map<std::string, int64_t> attempt_ ABSL_GUARDED_BY(schedule_mu_);
  // Ranks of the job's current launch; a report from a rank outside is refused.
  std::map<std::string, int64_t> world_size_ ABSL_GUARDED_BY(schedule_mu_);

  // Held from CreateJob's output-folder check until the job is stored, so
  // two submissions cannot both claim one folder. Never held while taking
  // another of the manager's mutexes.
  absl::Mutex outputs_mu_;
  struct OutputDirUse {
    std::string dir;  // resolved
    std::string tenant;
    std::string request_id;
  };
  // Every unfinished job's output folder by job id, read from the store at
  // the first CreateJob, then kept: added at CreateJob, removed when the job
  // reaches a final state (Transition).
  bool outputs_loaded_ ABSL_GUARDED_BY(outputs_mu_) = false;
  std::map<std::string, OutputDirUse> outputs_ ABSL_GUARDED_BY(outputs_mu_);

  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, int64_t> generation_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobProgressInfo> progress_ ABSL_GUARDED_BY(mu_);
  absl::CondVar shutdown_cv_;  // wakes the stall thread at BeginShutdown
  // Each watched job's own condition variable (WaitForChange): an event wakes
  // that job's watchers only. One shared by all woke every open WatchJob
  // stream on every event -- 1,000 threads per new job in issue 9's load
  // bench. An entry lives while someone waits on it.
  struct JobWaiters {
    absl::CondVar cv;
    int64_t count = 0;
  };
  std::map<std::string, JobWaiters> waiters_ ABSL_GUARDED_BY(mu_);

  // Stall detection (job_manager_stalls.cc): per running attempt, when it
  // was launched and last heard from; per stopped one, why, until its exit
  // arrives.
  struct Liveness {
    int64_t attempt = 0;
    int64_t timeout_ms = 0;  // the stall timeout; 0 = none
    int64_t last_ms = 0;
    std::string last_heard;  // "the launch", "step 12", ...
    // Cluster mode: the stall clock starts at the attempt's first report, as
    // pods may wait for capacity or in Kueue's queue; the start timeout
    // bounds that wait instead.
    bool armed = true;
    int64_t start_timeout_ms = 0;  // 0 = none
    int64_t launched_ms = 0;
    bool reported = false;  // a report came: the start timeout no longer applies
    // Until the first report, for the StartTimeout message: the launcher's
    // newest word on each pod and on the Job ("kubernetes: " lines: pending,
    // unschedulable, image pull backoff, waiting for Kueue), by subject
    // ("pod foak-...", "job foak-..."), and the workers' newest output line.
    std::map<std::string, std::string> launcher_notes;
    std::string last_output;
  };
  struct Stall {
    Liveness liveness;  // its attempt; put back if the launcher could not stop it
    std::string reason;  // "Stalled" or "StartTimeout"
    std::string message;
  };
  void TrackLaunch(const std::string& id, int64_t attempt, int64_t spec_stall_timeout_s,
                   int64_t spec_start_timeout_s);
  void ForgetLaunch(const std::string& id);
  void NoteProgress(const WorkerReportInput& report);
  // A log line of an attempt that has not reported yet (Liveness).
  void NoteLog(const LogLine& line);
  // The outcome as the job should see it: a stopped stalled attempt's
  // "Cancelled" becomes a retryable "Stalled" (or "StartTimeout") failure.
  LaunchOutcome TakeStall(const LaunchOutcome& outcome);
  void StallLoop();
  std::map<std::string, Liveness> liveness_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Stall> stalled_ ABSL_GUARDED_BY(mu_);
  std::thread stall_thread_;
};

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_JOB_MANAGER_H_

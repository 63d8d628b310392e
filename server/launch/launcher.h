// Launcher: how the coordinator starts and stops the worker processes of a
// job. It is an interface because where workers run is a deployment choice:
// LocalLauncher (fork/exec on this host) today, Kubernetes pods later. The
// JobManager only ever sees these plain structs, so the scheduling and state
// logic is the same for both and is tested against FakeLauncher.
//
// The contract every implementation keeps:
//   * A launch is a gang: all ranks start together, and when one fails the
//     others are stopped; the job's outcome is reported once, through
//     Callbacks::on_exit, after every rank is gone.
//   * IsRunning(job) turns false just BEFORE on_exit fires, so on_exit may
//     Launch the same job again (a restart).
//   * Callbacks come from one thread per launcher, in order (a rank's log
//     lines before its job's outcome), and never while the launcher holds its
//     own lock: a callback may call IsRunning, Cancel or Launch.
#ifndef FOAK_SERVER_LAUNCH_LAUNCHER_H_
#define FOAK_SERVER_LAUNCH_LAUNCHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/domain/job_state.h"

namespace foak {

// One process of a gang (one rank of a data-parallel job).
struct RankSpec {
  std::vector<std::string> argv;  // argv[0] = executable path
  // Added to, or overriding, the inherited environment. FOAK_JOB_ID is always
  // set to the job's id on top of these.
  std::vector<std::pair<std::string, std::string>> env;
  std::string log_path;  // stdout+stderr of this rank, appended
};

// A Kubernetes toleration (job spec resources.tolerations[i]).
struct Toleration {
  std::string key;             // empty with op "Exists" = tolerate every taint
  std::string op = "Equal";    // "Equal" or "Exists"
  std::string value;           // empty for "Exists"
  std::string effect;          // "", "NoSchedule", "PreferNoSchedule" or "NoExecute"
  std::optional<int64_t> toleration_seconds;  // NoExecute only
};

// The gang as the job spec shapes it, for a launcher that places it on
// machines itself (Kubernetes: one pod per node, each running
// `foak-worker launch --nproc-per-node ranks_per_node --nnodes nodes -- ARGS`).
// LocalLauncher starts `ranks` instead and ignores this.
struct GangSpec {
  int64_t nodes = 1;           // hosts (pods); > 1 only where the launcher supports it
  int64_t ranks_per_node = 1;  // worker processes per host: its GPUs, or a CPU job's processes
  int64_t gpus_per_node = 0;   // 0 = a CPU job
  // After the worker executable, e.g. {"train", "--job", "/shared/foakd/jobs/J/job-0.json"};
  // the launcher picks the executable (its own image's).
  std::vector<std::string> worker_args;
  // The same for every rank: FOAK_COORDINATOR, FOAK_JOB_ID, FOAK_JOB_TOKEN,
  // FOAK_JOB_ATTEMPT. The rank variables (RANK, WORLD_SIZE, MASTER_ADDR, ...)
  // come from `foak-worker launch` on each node.
  std::vector<std::pair<std::string, std::string>> env;
  std::map<std::string, std::string> node_selector;
  std::vector<Toleration> tolerations;
  std::string queue;  // Kueue LocalQueue name; empty = no Kueue
};

struct LaunchRequest {
  std::string job_id;
  int64_t attempt = 0;      // 0 first run, 1.. restarts
  std::string working_dir;  // cwd of the processes
  std::string run_dir;      // where the launcher keeps pid files for this job (created)
  std::vector<RankSpec> ranks;  // a gang: all start together (LocalLauncher)
  GangSpec gang;                // the same gang by shape (KubernetesLauncher)
};

// How one rank ended: exit_code >= 0 when it exited, else signal > 0.
struct RankExit {
  int64_t rank = 0;
  int exit_code = -1;
  int signal = 0;
};

// Reasons of a LaunchOutcome (also the reasons the JobManager records).
inline constexpr char kReasonCompleted[] = "Completed";
inline constexpr char kReasonCancelled[] = "Cancelled";
inline constexpr char kReasonWorkerError[] = "WorkerError";  // exit code != 0, 2, 3
inline constexpr char kReasonInvalidJob[] = "InvalidJob";    // exit code 2: usage / bad job file
// Exit code 3: a step's loss or gradient was NaN or infinite (the worker's
// on_nonfinite = "fail"); not retried, it would recur from the checkpoint.
inline constexpr char kReasonNonFinite[] = "NonFinite";
inline constexpr char kReasonKilled[] = "Killed";  // a signal the launcher did not send
inline constexpr char kReasonGangMemberFailed[] = "GangMemberFailed";
inline constexpr char kReasonLaunchFailed[] = "LaunchFailed";

// What a worker's own exit code means when it says more than "failed": the
// worker's exit codes -- 2 usage error or invalid job file
// (InvalidJob), 3 a NaN or infinite loss or gradient (NonFinite); neither is
// retried, as a relaunch would fail the same way. Both launchers ask this one
// function; false for any other code (the launcher's own reason applies).
struct WorkerExitMeaning {
  const char* reason = nullptr;  // kReasonInvalidJob or kReasonNonFinite
  bool retryable = false;
  const char* what = nullptr;  // "exited with code 2 (...)"
};
inline bool MeaningOfWorkerExit(int exit_code, WorkerExitMeaning* out) {
  if (exit_code == 2) {
    *out = {kReasonInvalidJob, false, "exited with code 2 (usage error or invalid job file)"};
    return true;
  }
  if (exit_code == 3) {
    *out = {kReasonNonFinite, false,
            "exited with code 3 (a NaN or infinite loss or gradient; not retried)"};
    return true;
  }
  return false;
}

struct LaunchOutcome {
  std::string job_id;
  int64_t attempt = 0;
  JobState state = JobState::kFailed;  // kSucceeded, kFailed or kCancelled
  std::string reason;                  // one of the kReason* above
  // For people: which rank, exit code or signal, the last lines of its log
  // (at most about 2 KB).
  std::string message;
  // WorkerError / Killed / GangMemberFailed: yes; InvalidJob / NonFinite /
  // Cancelled / Completed: no.
  bool retryable = false;
  std::vector<RankExit> ranks;
};

// One line of a rank's output, without its '\n' (or "\r\n"), truncated to
// 4096 bytes, valid UTF-8 (bytes that are not become U+FFFD).
struct LogLine {
  std::string job_id;
  int64_t attempt = 0;
  int64_t rank = 0;
  std::string text;
};

class Launcher {
 public:
  struct Callbacks {
    std::function<void(const LogLine&)> on_log;
    std::function<void(const LaunchOutcome&)> on_exit;
  };

  virtual ~Launcher() = default;

  // Starts every rank of the request. FAILED_PRECONDITION if the job already
  // runs; an error naming the path when an executable, folder or log file is
  // unusable (then nothing runs and on_exit does not fire for this request).
  virtual absl::Status Launch(const LaunchRequest& request) = 0;

  // SIGTERM to every rank's process group, SIGKILL after the grace period;
  // on_exit later reports kCancelled. NOT_FOUND for a job that does not run.
  virtual absl::Status Cancel(const std::string& job_id) = 0;

  virtual bool IsRunning(const std::string& job_id) = 0;
  virtual int64_t RunningJobs() = 0;

  // Called once at coordinator start: kills the process groups a previous
  // coordinator left for jobs under `run_root` (found through their pid
  // files) and returns the ids of the jobs that still had processes. A pid is
  // only killed once it is verified to still belong to that job, so a reused
  // pid is never killed.
  virtual absl::StatusOr<std::vector<std::string>> KillOrphans(const std::string& run_root) = 0;

  // Cancels everything (SIGTERM, grace, SIGKILL) and waits until all is
  // reaped; callbacks may still fire while it waits, never after it returns.
  // Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_LAUNCHER_H_

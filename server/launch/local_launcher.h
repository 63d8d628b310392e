// LocalLauncher: runs the ranks of a job as child processes of foakd on this
// host.
//
// Why it is built the way it is:
//   * Each rank is spawned (posix_spawn: no fork of a large multi-threaded
//     coordinator, no atfork handlers) into its own process group, so one
//     kill(-pgid) reaches the worker and everything it started (data loaders,
//     compilers). When a rank's main process exits, whatever it left in its
//     group is SIGKILLed before the rank is reaped, while the zombie still
//     holds the group id, so the kill can never hit a reused id.
//   * stdout and stderr go straight into the rank's log file (O_APPEND), not
//     through a pipe: a worker survives its coordinator dying, and a restarted
//     coordinator finds it again through the pid files in run_dir
//     (KillOrphans). stdin is /dev/null; no other descriptor is inherited;
//     the signal mask and dispositions are reset (foakd may block or ignore
//     signals, the worker must not inherit that).
//   * ONE monitor thread polls waitpid(WNOHANG) on exactly the pids it
//     started (never waitpid(-1), which would steal other children of the
//     process) and tails every log file from its size at launch, turning
//     complete lines into on_log calls. Polling instead of SIGCHLD keeps the
//     launcher free of process-wide signal state.
//   * Outcome of a gang, decided by the FIRST rank that failed (later
//     failures are mostly the consequences of stopping the gang):
//       cancelled (Cancel / Shutdown)       -> kCancelled "Cancelled", whatever
//                                              the exit codes were
//       all ranks exit 0                    -> kSucceeded "Completed"
//       first failure exit 2                -> "InvalidJob", not retryable (a
//                                              bad job fails the same way on
//                                              every rank and every retry)
//       first failure by a signal we did
//       not send                            -> "Killed", retryable (names the
//                                              signal; SIGKILL is most likely
//                                              the out-of-memory killer)
//       first failure other exit code       -> "WorkerError" for a single rank,
//                                              "GangMemberFailed" in a gang of
//                                              2+; both retryable
//     InvalidJob and Killed win over GangMemberFailed because they tell the
//     user what to do (fix the job; give it memory); the message always names
//     the rank, its exit code or signal, and the last lines of its log.
//     A failure stops the other ranks: SIGTERM, then SIGKILL after the grace.
#ifndef FOAK_SERVER_LAUNCH_LOCAL_LAUNCHER_H_
#define FOAK_SERVER_LAUNCH_LOCAL_LAUNCHER_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/launch/launcher.h"

namespace foak {

struct LocalLauncherOptions {
  // Time between SIGTERM and SIGKILL (Cancel, a failed gang, Shutdown,
  // KillOrphans). A worker saves nothing on SIGTERM today, but gets the
  // chance to flush its log and report.
  int64_t grace_period_ms = 10000;
  // How often the monitor thread checks for exits and reads new log output.
  int64_t poll_interval_ms = 100;
};

class LocalLauncher : public Launcher {
 public:
  // INVALID_ARGUMENT for a negative grace period or a poll interval < 1 ms.
  static absl::StatusOr<std::unique_ptr<LocalLauncher>> Create(LocalLauncherOptions options,
                                                               Launcher::Callbacks callbacks);
  ~LocalLauncher() override;  // Shutdown()

  LocalLauncher(const LocalLauncher&) = delete;
  LocalLauncher& operator=(const LocalLauncher&) = delete;

  absl::Status Launch(const LaunchRequest& request) override;
  absl::Status Cancel(const std::string& job_id) override;
  bool IsRunning(const std::string& job_id) override;
  int64_t RunningJobs() override;
  // Looks for rank-<r>.pid files up to three folders below `run_root` (e.g.
  // <run_root>/<job>/run/rank-0.pid). A recorded group is killed only if one
  // of its live members has FOAK_JOB_ID=<job> in /proc/<pid>/environ. The
  // pid files are removed. Blocks up to one grace period.
  absl::StatusOr<std::vector<std::string>> KillOrphans(const std::string& run_root) override;
  // Must not be called from a callback (it would wait for itself); there it
  // only starts stopping, and the destructor finishes the wait.
  void Shutdown() override;

 private:
  using Clock = std::chrono::steady_clock;

  struct Rank {
    int64_t index = 0;
    pid_t pid = -1;  // also the process group id
    std::string log_path;
    std::string pid_file;
    int tail_fd = -1;  // read side of the log, from `offset`
    int64_t offset = 0;
    std::string partial;         // bytes of an unfinished line
    bool partial_overflow = false;  // the unfinished line passed 4096 bytes
    std::deque<std::string> recent;  // last lines, for the outcome's message
    size_t recent_bytes = 0;
    bool signaled = false;  // we sent it SIGTERM or SIGKILL
    bool reaped = false;
    RankExit exit;
  };

  struct Job {
    std::string job_id;
    int64_t attempt = 0;
    std::vector<Rank> ranks;
    bool cancelled = false;
    std::string cancel_message;
    std::optional<size_t> first_failure;  // index into ranks
    std::optional<Clock::time_point> kill_at;  // SIGKILL the rest then
    bool kill_sent = false;
  };

  LocalLauncher(LocalLauncherOptions options, Launcher::Callbacks callbacks);

  absl::Status SpawnRank(const LaunchRequest& request, size_t r, Rank* rank)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopJob(Job* job, const std::string& cancel_message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SignalRanks(Job* job, int sig) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MonitorLoop();
  // One poll of every job; returns what to deliver once the lock is released.
  void PollLocked(std::vector<LogLine>* lines, std::vector<LaunchOutcome>* outcomes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReadLog(const Job& job, Rank* rank, bool final, std::vector<LogLine>* lines);
  void AddLine(const Job& job, Rank* rank, std::string text, std::vector<LogLine>* lines);
  void ReapRank(Job* job, Rank* rank, int status, std::vector<LogLine>* lines)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Picks the gang's failure among the ranks that ended in one poll (none
  // if it has one already or was cancelled) and stops the rest.
  void NoteFirstFailure(Job* job, const std::vector<const Rank*>& ended)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LaunchOutcome BuildOutcome(const Job& job) const;

  const LocalLauncherOptions options_;
  const Launcher::Callbacks callbacks_;

  absl::Mutex shutdown_mu_;  // serializes Shutdown(); taken before mu_
  bool joined_ ABSL_GUARDED_BY(shutdown_mu_) = false;

  absl::Mutex mu_;
  absl::CondVar wake_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);

  std::thread monitor_;
};

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_LOCAL_LAUNCHER_H_

// FakeLauncher: a Launcher without processes, for tests of the scheduler and
// the JobManager. It records what it was asked to do; the test decides when
// and how jobs end (Finish / EmitLog), so state transitions can be tested
// deterministically and instantly.
//
// Like LocalLauncher it fires callbacks without holding its lock, and a job
// stops "running" before on_exit fires, so a callback may Launch it again.
// Callbacks fire on the thread that calls Finish / EmitLog / Cancel (with
// auto-finish) / Shutdown, not on a thread of their own.
#ifndef FOAK_SERVER_LAUNCH_FAKE_LAUNCHER_H_
#define FOAK_SERVER_LAUNCH_FAKE_LAUNCHER_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/launch/launcher.h"

namespace foak {

class FakeLauncher : public Launcher {
 public:
  explicit FakeLauncher(Launcher::Callbacks callbacks) : callbacks_(std::move(callbacks)) {}
  ~FakeLauncher() override = default;

  // --- what the test controls ------------------------------------------------
  // The next Launch returns `status` instead of starting (once).
  void FailNextLaunch(absl::Status status) {
    absl::MutexLock lock(&mu_);
    next_launch_error_ = std::move(status);
  }
  // Cancel() ends the job at once with kCancelled (default true); when false it
  // only records, and the test calls Finish itself.
  void SetAutoFinishOnCancel(bool auto_finish) {
    absl::MutexLock lock(&mu_);
    auto_finish_on_cancel_ = auto_finish;
  }
  // What KillOrphans returns.
  void SetOrphans(std::vector<std::string> job_ids) {
    absl::MutexLock lock(&mu_);
    orphans_ = std::move(job_ids);
  }

  // Ends a running job: on_exit(outcome) with job_id and attempt filled in.
  // NOT_FOUND when the job does not run.
  absl::Status Finish(const std::string& job_id, LaunchOutcome outcome) {
    {
      absl::MutexLock lock(&mu_);
      auto it = running_.find(job_id);
      if (it == running_.end()) {
        return absl::NotFoundError(absl::StrCat("job ", job_id, " is not running in the fake"));
      }
      outcome.job_id = job_id;
      outcome.attempt = it->second.attempt;
      running_.erase(it);
    }
    if (callbacks_.on_exit) callbacks_.on_exit(outcome);
    return absl::OkStatus();
  }
  // Shorthands for Finish.
  absl::Status Succeed(const std::string& job_id) {
    return Finish(job_id, MakeOutcome(JobState::kSucceeded, kReasonCompleted, false,
                                      "all 1 rank(s) exited with code 0"));
  }
  absl::Status Fail(const std::string& job_id, const std::string& reason, bool retryable,
                    const std::string& message = "rank 0 failed") {
    return Finish(job_id, MakeOutcome(JobState::kFailed, reason, retryable, message));
  }
  static LaunchOutcome MakeOutcome(JobState state, const std::string& reason, bool retryable,
                                   const std::string& message) {
    LaunchOutcome outcome;
    outcome.state = state;
    outcome.reason = reason;
    outcome.retryable = retryable;
    outcome.message = message;
    return outcome;
  }

  // on_log with the job's current attempt. NOT_FOUND when the job does not run.
  absl::Status EmitLog(const std::string& job_id, int64_t rank, const std::string& text) {
    LogLine line;
    {
      absl::MutexLock lock(&mu_);
      auto it = running_.find(job_id);
      if (it == running_.end()) {
        return absl::NotFoundError(absl::StrCat("job ", job_id, " is not running in the fake"));
      }
      line = LogLine{job_id, it->second.attempt, rank, text};
    }
    if (callbacks_.on_log) callbacks_.on_log(line);
    return absl::OkStatus();
  }

  // --- what the test inspects -------------------------------------------------
  std::vector<LaunchRequest> launches() {
    absl::MutexLock lock(&mu_);
    return launches_;
  }
  std::vector<std::string> cancels() {
    absl::MutexLock lock(&mu_);
    return cancels_;
  }
  std::vector<std::string> running_job_ids() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> ids;
    for (const auto& [id, request] : running_) ids.push_back(id);
    return ids;
  }
  // The request a running job was launched with.
  absl::StatusOr<LaunchRequest> RunningRequest(const std::string& job_id) {
    absl::MutexLock lock(&mu_);
    auto it = running_.find(job_id);
    if (it == running_.end()) return absl::NotFoundError(job_id);
    return it->second;
  }
  int64_t kill_orphans_calls() {
    absl::MutexLock lock(&mu_);
    return kill_orphans_calls_;
  }
  bool shut_down() {
    absl::MutexLock lock(&mu_);
    return shut_down_;
  }

  // --- Launcher ---------------------------------------------------------------
  absl::Status Launch(const LaunchRequest& request) override {
    absl::MutexLock lock(&mu_);
    if (!next_launch_error_.ok()) {
      absl::Status error = std::move(next_launch_error_);
      next_launch_error_ = absl::OkStatus();
      return error;
    }
    if (shut_down_) return absl::UnavailableError("the launcher is shutting down");
    if (running_.count(request.job_id) > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", request.job_id, " is already running"));
    }
    launches_.push_back(request);
    running_[request.job_id] = request;
    return absl::OkStatus();
  }

  absl::Status Cancel(const std::string& job_id) override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (running_.count(job_id) == 0) {
        return absl::NotFoundError(absl::StrCat("job ", job_id, " has no running processes"));
      }
      cancels_.push_back(job_id);
      finish = auto_finish_on_cancel_;
    }
    if (finish) {
      (void)Finish(job_id, MakeOutcome(JobState::kCancelled, kReasonCancelled, false,
                                       "cancelled by request"));
    }
    return absl::OkStatus();
  }

  bool IsRunning(const std::string& job_id) override {
    absl::MutexLock lock(&mu_);
    return running_.count(job_id) > 0;
  }

  int64_t RunningJobs() override {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(running_.size());
  }

  absl::StatusOr<std::vector<std::string>> KillOrphans(const std::string& run_root) override {
    absl::MutexLock lock(&mu_);
    ++kill_orphans_calls_;
    return orphans_;
  }

  // Ends every running job with kCancelled (as LocalLauncher does), then
  // refuses new launches.
  void Shutdown() override {
    std::vector<std::string> ids;
    {
      absl::MutexLock lock(&mu_);
      shut_down_ = true;
      for (const auto& [id, request] : running_) ids.push_back(id);
    }
    for (const std::string& id : ids) {
      (void)Finish(id, MakeOutcome(JobState::kCancelled, kReasonCancelled, false,
                                   "stopped: the coordinator is shutting down"));
    }
  }

 private:
  const Launcher::Callbacks callbacks_;
  absl::Mutex mu_;
  std::map<std::string, LaunchRequest> running_ ABSL_GUARDED_BY(mu_);
  std::vector<LaunchRequest> launches_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancels_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> orphans_ ABSL_GUARDED_BY(mu_);
  absl::Status next_launch_error_ ABSL_GUARDED_BY(mu_);
  bool auto_finish_on_cancel_ ABSL_GUARDED_BY(mu_) = true;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  int64_t kill_orphans_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_FAKE_LAUNCHER_H_

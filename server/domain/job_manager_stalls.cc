// JobManager, stall detection: an attempt that stops reporting is stopped.
//
// Why foakd and not the worker: a worker that hangs (a collective whose peer
// vanished without NCCL noticing, a dead NFS mount, a deadlock) cannot be
// trusted to notice itself, and its GPUs stay taken. Progress is any report
// the attempt's ranks send -- its start, a logged step, an evaluation, a
// checkpoint, a benchmark row -- so the timeout must exceed the slowest
// stretch between two of them: model loading before the start, and
// logging_steps x the step time or an evaluation or a save after it.
//
// A stalled attempt is stopped through the launcher's Cancel (SIGTERM, then
// SIGKILL; on Kubernetes the Job is deleted). Its exit then arrives as
// "Cancelled", which TakeStall turns into a retryable failure with reason
// "Stalled": the job restarts from its newest checkpoint while
// restarts < max_restarts, else fails, with a message that says how long it
// was silent and what was heard last. A user's cancel that arrives meanwhile
// still wins (the job is CANCELLING).
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/domain/job_manager.h"

namespace foak {
namespace {

constexpr char kReasonStalled[] = "Stalled";

std::string Heard(const WorkerReportInput& r) {
  const std::string rank = r.rank > 0 ? absl::StrCat(" from rank ", r.rank) : "";
  switch (r.kind) {
    case WorkerReportInput::Kind::kStarted:
      return absl::StrCat("the worker's start", rank);
    case WorkerReportInput::Kind::kMetrics:
      return absl::StrCat("step ", r.step, rank);
    case WorkerReportInput::Kind::kEval:
      return absl::StrCat("the evaluation at step ", r.step);
    case WorkerReportInput::Kind::kCheckpoint:
      return absl::StrCat("the checkpoint at step ", r.step);
    case WorkerReportInput::Kind::kBench:
      return absl::StrCat("benchmark row ", r.bench.index + 1);
  }
  return "a report";
}

}  // namespace

void JobManager::TrackLaunch(const std::string& id, int64_t attempt,
                             int64_t spec_stall_timeout_s) {
  const int64_t timeout_ms = spec_stall_timeout_s < 0    ? 0
                             : spec_stall_timeout_s > 0 ? spec_stall_timeout_s * 1000
                                                        : options_.stall_timeout_ms;
  absl::MutexLock lock(&mu_);
  stalled_.erase(id);
  if (timeout_ms <= 0) {
    liveness_.erase(id);
    return;
  }
  liveness_[id] = Liveness{attempt, timeout_ms, options_.now_ms(), "the launch", !cluster_};
}

void JobManager::ForgetLaunch(const std::string& id) {
  absl::MutexLock lock(&mu_);
  liveness_.erase(id);
}

void JobManager::NoteProgress(const WorkerReportInput& report) {
  const int64_t now = options_.now_ms();
  absl::MutexLock lock(&mu_);
  auto it = liveness_.find(report.job_id);
  if (it == liveness_.end() || it->second.attempt != report.attempt) return;
  it->second.last_ms = now;
  it->second.last_heard = Heard(report);
  it->second.armed = true;
}

std::vector<std::string> JobManager::CheckStalls() {
  std::vector<std::string> stalled;
  const int64_t now = options_.now_ms();
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return stalled;
    for (auto it = liveness_.begin(); it != liveness_.end();) {
      const Liveness& l = it->second;
      if (!l.armed || now - l.last_ms < l.timeout_ms) {
        ++it;
        continue;
      }
      stalled_[it->first] = Stall{
          l,
          absl::StrCat("attempt ", l.attempt, " sent no report for ", (now - l.last_ms) / 1000,
                       " s (last heard: ", l.last_heard, "); the stall timeout is ",
                       l.timeout_ms / 1000,
                       " s (the spec's stall_timeout_s, else foakd's --stall_timeout_s), so its "
                       "workers were stopped")};
      stalled.push_back(it->first);
      it = liveness_.erase(it);
    }
  }
  for (const std::string& id : stalled) {
    absl::Status stop = launcher_->Cancel(id);
    if (stop.ok()) continue;
    absl::MutexLock lock(&mu_);
    auto it = stalled_.find(id);
    if (it == stalled_.end()) continue;
    if (!absl::IsNotFound(stop)) {
      // The launcher could not stop it now (e.g. the API server is down):
      // watch it again, so the next check tries once more.
      liveness_.emplace(id, it->second.liveness);
    }
    // NOT_FOUND: already gone; its exit came or comes as it is.
    stalled_.erase(it);
  }
  return stalled;
}

LaunchOutcome JobManager::TakeStall(const LaunchOutcome& outcome) {
  LaunchOutcome seen = outcome;
  absl::MutexLock lock(&mu_);
  liveness_.erase(outcome.job_id);
  auto it = stalled_.find(outcome.job_id);
  if (it == stalled_.end()) return seen;
  if (outcome.state == JobState::kCancelled && outcome.attempt == it->second.liveness.attempt) {
    seen.state = JobState::kFailed;
    seen.reason = kReasonStalled;
    seen.retryable = true;
    seen.message = it->second.message;
  }
  stalled_.erase(it);
  return seen;
}

void JobManager::StallLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time until =
          absl::Now() + absl::Milliseconds(options_.stall_check_interval_ms);
      while (!shutting_down_ && absl::Now() < until) {
        shutdown_cv_.WaitWithDeadline(&mu_, until);
      }
      if (shutting_down_) return;
    }
    CheckStalls();
  }
}

}  // namespace foak

// JobManager, the workers' side: their reports (WorkerService), their log
// lines and their exits (the launcher's callbacks), each turned into events
// and state changes. The API side and scheduling are in job_manager.cc.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/domain/job_manager.h"
#include "server/metrics/server_metrics.h"

namespace foak {
namespace {

using Json = nlohmann::json;

// Never throws: invalid UTF-8 (a worker's odd output) becomes U+FFFD instead
// of an exception that would take foakd down.
std::string SafeDump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// JSON numbers must be finite; a NaN loss is reported as null.
Json Finite(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

}  // namespace

absl::Status JobManager::AuthorizeWorker(const std::string& job_id,
                                         const std::string& token) const {
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no worker token: send the job's FOAK_JOB_TOKEN as 'authorization: Bearer <token>'");
  }
  if (!tokens_->Verify(job_id, token)) {
    return absl::PermissionDeniedError(
        absl::StrCat("the worker token is not valid for job '", job_id, "'"));
  }
  return absl::OkStatus();
}

absl::Status JobManager::OnWorkerReport(const WorkerReportInput& r) {
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(r.job_id));
  if (IsFinal(job.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", r.job_id, " is ", JobStateName(job.state), "; reports are not accepted"));
  }
  {
    absl::MutexLock lock(&schedule_mu_);
    auto it = attempt_.find(r.job_id);
    if (it != attempt_.end() && r.attempt != it->second) {
      return absl::FailedPreconditionError(absl::StrCat(
          "report from attempt ", r.attempt, " of job ", r.job_id, "; the current attempt is ",
          it->second));
    }
  }
  const bool first = job.state == JobState::kStarting;
  if (first && r.kind != WorkerReportInput::Kind::kCheckpoint) {
    RETURN_IF_ERROR(Transition(r.job_id, JobState::kRunning, "Running",
                               r.device.empty() ? "the worker reports progress"
                                                : absl::StrCat("training on ", r.device))
                        .status());
  }
  switch (r.kind) {
    case WorkerReportInput::Kind::kStarted:
      if (r.max_steps > 0) {
        absl::MutexLock lock(&mu_);
        progress_[r.job_id].max_steps = r.max_steps;
        progress_[r.job_id].step = r.start_step;
      }
      return absl::OkStatus();
    case WorkerReportInput::Kind::kMetrics: {
      Json m = {{"step", r.step},
                {"max_steps", r.max_steps},
                {"loss", Finite(r.loss)},
                {"learning_rate", Finite(r.learning_rate)},
                {"grad_norm", Finite(r.grad_norm)},
                {"tokens", r.tokens},
                {"tokens_per_second", Finite(r.tokens_per_second)},
                {"peak_memory_bytes", r.peak_memory_bytes},
                {"peak_reserved_bytes", r.peak_reserved_bytes},
                {"elapsed_s", Finite(r.elapsed_s)},
                {"rank", r.rank}};
      RETURN_IF_ERROR(Append(r.job_id, "metrics", SafeDump(m)).status());
      {
        absl::MutexLock lock(&mu_);
        JobProgressInfo& p = progress_[r.job_id];
        p.step = r.step;
        if (r.max_steps > 0) p.max_steps = r.max_steps;
        p.loss = r.loss;
        p.learning_rate = r.learning_rate;
        p.tokens_per_second = r.tokens_per_second;
        p.peak_memory_bytes = r.peak_memory_bytes;
        p.elapsed_s = r.elapsed_s;
      }
      if (metrics_ != nullptr) {
        JobProgressSample s;
        s.step = r.step;
        s.max_steps = r.max_steps;
        s.loss = r.loss;
        s.learning_rate = r.learning_rate;
        s.grad_norm = r.grad_norm;
        s.tokens_per_second = r.tokens_per_second;
        s.peak_memory_bytes = r.peak_memory_bytes;
        s.tokens = r.tokens;
        metrics_->OnJobProgress(r.job_id, s);
      }
      return absl::OkStatus();
    }
    case WorkerReportInput::Kind::kEval: {
      Json e = {{"step", r.step},
                {"eval_loss", Finite(r.eval_loss)},
                {"eval_tokens", r.eval_tokens},
                {"eval_examples", r.eval_examples},
                {"eval_s", Finite(r.eval_s)}};
      RETURN_IF_ERROR(Append(r.job_id, "eval", SafeDump(e)).status());
      absl::MutexLock lock(&mu_);
      progress_[r.job_id].eval_loss = r.eval_loss;
      return absl::OkStatus();
    }
    case WorkerReportInput::Kind::kCheckpoint: {
      CheckpointRecord c;
      c.job_id = r.job_id;
      c.step = r.step;
      c.path = r.checkpoint_path;
      RETURN_IF_ERROR(store_->AddCheckpoint(c));
      Notify(r.job_id);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

void JobManager::OnLog(const LogLine& line) {
  Json l = {{"rank", line.rank}, {"attempt", line.attempt}, {"text", line.text}};
  (void)Append(line.job_id, "log", SafeDump(l));
}

void JobManager::OnExit(const LaunchOutcome& outcome) {
  if (shutting_down()) return;  // states stay; the next Start() requeues the job
  {
    absl::MutexLock lock(&schedule_mu_);
    scheduler_.Release(outcome.job_id);
  }
  absl::StatusOr<JobRecord> job = store_->GetJob(outcome.job_id);
  if (job.ok()) {
    if (outcome.state == JobState::kCancelled ||
        (job->state == JobState::kCancelling && outcome.state != JobState::kSucceeded)) {
      (void)Transition(outcome.job_id, JobState::kCancelled, "Cancelled",
                       job->state == JobState::kCancelling ? "cancelled by request"
                                                           : outcome.message);
    } else if (outcome.state == JobState::kSucceeded) {  // also when it beat a cancel
      (void)Transition(outcome.job_id, JobState::kSucceeded, "Completed",
                       absl::StrCat("training finished; output in ", OutputDir(*job)));
    } else if (outcome.retryable && job->restarts < job->max_restarts) {
      (void)Transition(outcome.job_id, JobState::kQueued, "Restarting",
                       absl::StrCat("restart ", job->restarts + 1, " of ", job->max_restarts,
                                    " after ", outcome.reason, ": ", outcome.message));
    } else {
      std::string message = outcome.message;
      if (outcome.retryable && job->max_restarts > 0) {
        message = absl::StrCat(message, " (after ", job->restarts, " restart(s); max_restarts = ",
                               job->max_restarts, ")");
      }
      (void)Transition(outcome.job_id, JobState::kFailed, outcome.reason, message);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    progress_.erase(outcome.job_id);
  }
  Schedule();
}

}  // namespace foak

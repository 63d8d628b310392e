// JobManager, the workers' side: their reports (WorkerService), their log
// lines and their exits (the launcher's callbacks), each turned into events
// and state changes. The API side and scheduling are in job_manager.cc.
//
// A data-parallel job has several ranks, each with its own report stream.
// Rank 0 speaks for the job: its first report makes the job RUNNING, and its
// steps, evaluations, checkpoints and benchmark rows are the job's. A rank
// > 0 sends only its step metrics: stored as "metrics" events (their payload
// names the rank; watchers show rank 0's) for its peak memory, which becomes
// that rank's entry of the progress and its foak_job_peak_memory_bytes
// series; its loss and step, local to its shard, move nothing.
//
// A benchmark job's rows arrive as kBench reports: each is stored as a
// "bench" event (a bench.jsonl line: BenchResultToJson's field names, which
// are also foak.v1.BenchResult's) and advances the job's progress as a logged
// step does, rows done out of rows planned.
#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
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

// Sets one rank's peak memory in the job's progress; `world` (> 1: a
// data-parallel job) sizes the per-rank list so every rank has an entry.
void SetRankPeakMemory(int64_t rank, int64_t bytes, int64_t world, JobProgressInfo* p) {
  if (rank == 0) p->peak_memory_bytes = bytes;
  const size_t size = static_cast<size_t>(std::max(world, rank + 1));
  if (size <= 1) return;  // one rank: peak_memory_bytes says it all
  if (p->rank_peak_memory_bytes.size() < size) p->rank_peak_memory_bytes.resize(size, 0);
  p->rank_peak_memory_bytes[0] = p->peak_memory_bytes;
  p->rank_peak_memory_bytes[static_cast<size_t>(rank)] = bytes;
}

// Mean seconds per optimizer step of a logged step's window, for
// foak_job_step_seconds. The worker computes tokens_per_second as the
// window's tokens over its wall time (evaluations excluded), so tokens /
// tokens_per_second gives that wall time back; the window holds the steps
// after `previous_step` (the previous report's, or the attempt's start step).
// 0 (unknown) when a figure is missing or the step did not advance.
double StepSeconds(const JobProgressSample& s, int64_t previous_step) {
  const int64_t steps = s.step - previous_step;
  if (steps <= 0 || s.tokens <= 0 || !(s.tokens_per_second > 0) || !std::isfinite(s.tokens_per_second)) {
    return 0;
  }
  return static_cast<double>(s.tokens) / s.tokens_per_second / static_cast<double>(steps);
}

// True for a benchmark job's spec (it has a "bench" object).
bool IsBenchSpec(const std::string& spec_json) {
  const Json spec = Json::parse(spec_json, nullptr, /*allow_exceptions=*/false);
  return spec.is_object() && spec.contains("bench") && !spec["bench"].is_null();
}

// A "bench" event's payload: the row with bench.jsonl's field names;
// pct_change is null when the row has none (the baseline kernel set).
std::string BenchPayload(const BenchResult& b) {
  Json j = {{"index", b.index},
            {"total", b.total},
            {"framework", b.framework},
            {"model", b.model},
            {"method", b.method},
            {"kernels", b.kernels},
            {"gpus", b.gpus},
            {"batch", b.batch},
            {"seq", b.seq},
            {"precision", b.precision},
            {"activation_checkpointing", b.activation_checkpointing},
            {"status", b.status},
            {"error", b.error},
            {"tokens_per_second", Finite(b.tokens_per_second)},
            {"pct_change", b.pct_change.has_value() ? Finite(*b.pct_change) : Json(nullptr)},
            {"ms_per_step", Finite(b.ms_per_step)},
            {"peak_allocated_bytes", b.peak_allocated_bytes},
            {"peak_reserved_bytes", b.peak_reserved_bytes},
            {"loss_first", Finite(b.loss_first)},
            {"loss_last", Finite(b.loss_last)},
            {"warmup_steps", b.warmup_steps},
            {"steps", b.steps},
            {"max_batch", b.max_batch},
            {"device", b.device}};
  return SafeDump(j);
}

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
  int64_t world = 1;  // ranks of the current launch (1 when foakd has not launched it)
  {
    absl::MutexLock lock(&schedule_mu_);
    auto it = attempt_.find(r.job_id);
    if (it != attempt_.end() && r.attempt != it->second) {
      return absl::FailedPreconditionError(absl::StrCat(
          "report from attempt ", r.attempt, " of job ", r.job_id, "; the current attempt is ",
          it->second));
    }
    if (auto w = world_size_.find(r.job_id); w != world_size_.end()) world = w->second;
  }
  // Each rank is a series of foak_job_peak_memory_bytes: a rank outside the
  // gang would be a series that no job has.
  if (r.rank < 0 || r.rank >= world) {
    return absl::InvalidArgumentError(absl::StrCat(
        "report from rank ", r.rank, " of job ", r.job_id, ", which runs ",
        world == 1 ? "rank 0 only" : absl::StrCat("ranks 0 to ", world - 1)));
  }
  if (r.rank > 0 && r.kind != WorkerReportInput::Kind::kMetrics) {
    // A rank's start says nothing that rank 0's does not; the rest would
    // repeat rank 0's evaluations, checkpoints or rows.
    if (r.kind == WorkerReportInput::Kind::kStarted) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", r.rank, " of job ", r.job_id, " sent ",
        r.kind == WorkerReportInput::Kind::kEval         ? "an evaluation"
        : r.kind == WorkerReportInput::Kind::kCheckpoint ? "a checkpoint"
                                                         : "a benchmark row",
        "; only rank 0 reports those (ranks > 0 send step metrics only)"));
  }
  NoteProgress(r);
  const bool first = job.state == JobState::kStarting;
  if (first && r.rank == 0 && r.kind != WorkerReportInput::Kind::kCheckpoint) {
    RETURN_IF_ERROR(Transition(r.job_id, JobState::kRunning, "Running",
                               r.device.empty()
                                   ? "the worker reports progress"
                                   : absl::StrCat(IsBenchSpec(job.spec_json) ? "benchmarking on "
                                                                             : "training on ",
                                                  r.device))
                        .status());
  }
  // A step's or a benchmark row's figures become the job's progress and
  // its Prometheus series.
  auto record_progress = [this, &r, world](JobProgressSample s, std::optional<double> elapsed_s) {
    {
      absl::MutexLock lock(&mu_);
      JobProgressInfo& p = progress_[r.job_id];
      // A training step's report covers the steps since the previous one
      // (since the attempt's start_step for its first); a benchmark row's
      // "step" is a row index, so it has none.
      if (elapsed_s.has_value()) s.step_seconds = StepSeconds(s, p.step);
      p.step = s.step;
      if (s.max_steps > 0) p.max_steps = s.max_steps;
      p.loss = s.loss;
      p.learning_rate = s.learning_rate;
      p.tokens_per_second = s.tokens_per_second;
      SetRankPeakMemory(0, s.peak_memory_bytes, world, &p);
      if (elapsed_s.has_value()) p.elapsed_s = *elapsed_s;
    }
    if (metrics_ != nullptr) metrics_->OnJobProgress(r.job_id, s);
  };
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
      if (r.rank > 0) {
        {
          absl::MutexLock lock(&mu_);
          SetRankPeakMemory(r.rank, r.peak_memory_bytes, world, &progress_[r.job_id]);
        }
        if (metrics_ != nullptr) metrics_->OnRankPeakMemory(r.job_id, r.rank, r.peak_memory_bytes);
        return absl::OkStatus();
      }
      JobProgressSample s;
      s.step = r.step;
      s.max_steps = r.max_steps;
      s.loss = r.loss;
      s.learning_rate = r.learning_rate;
      s.grad_norm = r.grad_norm;
      s.tokens_per_second = r.tokens_per_second;
      s.peak_memory_bytes = r.peak_memory_bytes;
      s.tokens = r.tokens;
      record_progress(s, r.elapsed_s);
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
    case WorkerReportInput::Kind::kBench: {
      const BenchResult& b = r.bench;
      RETURN_IF_ERROR(Append(r.job_id, "bench", BenchPayload(b)).status());
      // The newest row's figures, as a step report gives the newest step's
      // (a row that did not run, e.g. out of memory, has none).
      const bool ran = b.status == "ok";
      JobProgressSample s;
      s.step = std::max<int64_t>(b.index + 1, 0);
      s.max_steps = b.total;
      s.loss = b.loss_last;
      s.tokens_per_second = ran ? b.tokens_per_second : 0;
      s.peak_memory_bytes = b.peak_allocated_bytes;
      s.tokens = ran ? b.batch * b.seq * (b.warmup_steps + b.steps) : 0;
      record_progress(s, std::nullopt);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

void JobManager::OnLog(const LogLine& line) {
  NoteLog(line);  // what a StartTimeout message says was heard last
  Json l = {{"rank", line.rank}, {"attempt", line.attempt}, {"text", line.text}};
  (void)Append(line.job_id, "log", SafeDump(l));
}

void JobManager::OnExit(const LaunchOutcome& reported) {
  const LaunchOutcome outcome = TakeStall(reported);  // a stopped stall is a failure
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
                       IsBenchSpec(job->spec_json)
                           ? absl::StrCat("benchmark finished; rows in ",
                                          JoinPath(OutputDir(*job), "bench.jsonl"))
                           : absl::StrCat("training finished; output in ", OutputDir(*job)));
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

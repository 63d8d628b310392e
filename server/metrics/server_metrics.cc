#include "server/metrics/server_metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <utility>

#include "common/clock.h"

namespace foak {
namespace {

// The families below have constant names, help texts and label names, and
// tests render all of them, so creating them cannot fail at run time; a typo
// would fail every test at once (StatusOr::value() on an error aborts).
MetricFamily* Must(absl::StatusOr<MetricFamily*> family) { return family.value(); }

// The label values of foak_jobs_finished_total: the final states of
// server/domain/job_state.h.
constexpr const char* kFinalStates[] = {"SUCCEEDED", "FAILED", "CANCELLED"};

// Mutations on those families use their fixed label arity and type, so they
// cannot fail either; this keeps the call sites readable.
void Ignore(const absl::Status& status) { (void)status; }

std::vector<double> QueueWaitBuckets(std::vector<double> bounds) {
  bounds.erase(std::remove_if(bounds.begin(), bounds.end(), [](double b) { return !std::isfinite(b); }),
               bounds.end());
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  if (bounds.empty()) {
    for (double b = 1; b <= 4096; b *= 2) bounds.push_back(b);
  }
  return bounds;
}

ServerMetricsOptions WithDefaults(ServerMetricsOptions options) {
  if (!options.now_ms) options.now_ms = SystemNowMs;
  options.queue_wait_buckets_s = QueueWaitBuckets(std::move(options.queue_wait_buckets_s));
  return options;
}

}  // namespace

const std::vector<std::string>& ServerMetrics::JobStateNames() {
  // Mirrors JobState in server/domain/job_state.h (this library does not
  // depend on the domain); the exposition test checks all seven.
  static const std::vector<std::string> kNames = {"QUEUED",    "STARTING",   "RUNNING",  "SUCCEEDED",
                                                  "FAILED",    "CANCELLING", "CANCELLED"};
  return kNames;
}

ServerMetrics::ServerMetrics(ServerMetricsOptions options) : options_(WithDefaults(std::move(options))) {
  const std::vector<std::string> job = {"job_id"};
  job_step_ = Must(registry_.AddGauge("foak_job_step", "Last training step a job reported.", job));
  job_max_steps_ =
      Must(registry_.AddGauge("foak_job_max_steps", "Number of training steps a job will run.", job));
  job_loss_ = Must(registry_.AddGauge("foak_job_loss", "Training loss at the job's last logged step.", job));
  job_learning_rate_ = Must(registry_.AddGauge(
      "foak_job_learning_rate", "Learning rate at the job's last logged step.", job));
  job_grad_norm_ = Must(registry_.AddGauge(
      "foak_job_grad_norm", "Global gradient norm (before clipping) at the job's last logged step.", job));
  job_tokens_per_second_ = Must(registry_.AddGauge(
      "foak_job_tokens_per_second", "Input tokens per second over the job's last logging interval.", job));
  job_step_seconds_ = Must(registry_.AddGauge(
      "foak_job_step_seconds",
      "Mean wall seconds per optimizer step over the job's last logging interval.", job));
  job_peak_memory_bytes_ = Must(registry_.AddGauge(
      "foak_job_peak_memory_bytes",
      "Peak memory of each worker process (rank) of the job in bytes: GPU memory on CUDA, peak "
      "RSS on CPU.",
      {"job_id", "rank"}));
  job_tokens_total_ = Must(registry_.AddCounter(
      "foak_job_tokens_total", "Input tokens the job has trained on since foakd started.", job));
  job_last_progress_ = Must(registry_.AddGauge(
      "foak_job_last_progress_timestamp_seconds",
      "Unix time in seconds of the job's last progress report.", job));
  jobs_ = Must(registry_.AddGauge("foak_jobs", "Number of jobs in each state.", {"state"}));
  jobs_finished_ = Must(registry_.AddCounter(
      "foak_jobs_finished_total",
      "Jobs that reached a final state since foakd started, by that state.", {"state"}));
  for (const char* state : kFinalStates) Ignore(jobs_finished_->Inc({state}, 0));
  queue_wait_ = Must(registry_.AddHistogram(
      "foak_job_queue_wait_seconds", "Time jobs waited from QUEUED until STARTING, in seconds.", {},
      options_.queue_wait_buckets_s));
  grpc_handled_ = Must(registry_.AddCounter(
      "foak_grpc_server_handled_total", "RPCs completed by foakd, by service, method and status code.",
      {"grpc_service", "grpc_method", "grpc_code"}));
  build_info_ = Must(registry_.AddGauge("foak_build_info",
                                        "Always 1; its label carries the foakd version.", {"version"}));
  SetJobsByState({});
}

void ServerMetrics::OnJobProgress(const std::string& job_id, const JobProgressSample& sample) {
  if (!options_.per_job_series) return;
  const std::vector<std::string> labels = {job_id};
  // Under mu_ so that a concurrent prune drops all of a sample or none of it.
  absl::MutexLock lock(&mu_);
  Ignore(job_step_->Set(labels, static_cast<double>(sample.step)));
  if (sample.max_steps > 0) {
    Ignore(job_max_steps_->Set(labels, static_cast<double>(sample.max_steps)));
  }
  Ignore(job_loss_->Set(labels, sample.loss));
  Ignore(job_learning_rate_->Set(labels, sample.learning_rate));
  Ignore(job_grad_norm_->Set(labels, sample.grad_norm));
  Ignore(job_tokens_per_second_->Set(labels, sample.tokens_per_second));
  if (std::isfinite(sample.step_seconds) && sample.step_seconds > 0) {
    Ignore(job_step_seconds_->Set(labels, sample.step_seconds));
  }
  Ignore(job_peak_memory_bytes_->Set({job_id, "0"}, static_cast<double>(sample.peak_memory_bytes)));
  Ignore(job_tokens_total_->Inc(labels, static_cast<double>(std::max<int64_t>(0, sample.tokens))));
  if (finished_at_ms_.count(job_id) == 0) {
    Ignore(job_last_progress_->Set(labels, static_cast<double>(options_.now_ms()) / 1000.0));
  }
}

void ServerMetrics::OnRankPeakMemory(const std::string& job_id, int64_t rank,
                                     int64_t peak_memory_bytes) {
  if (!options_.per_job_series) return;
  absl::MutexLock lock(&mu_);
  Ignore(job_peak_memory_bytes_->Set({job_id, std::to_string(rank)},
                                     static_cast<double>(peak_memory_bytes)));
}

void ServerMetrics::OnJobFinished(const std::string& job_id, const std::string& final_state) {
  const int64_t now = options_.now_ms();
  absl::MutexLock lock(&mu_);
  const bool first = finished_at_ms_.emplace(job_id, now).second;  // keeps the first finish time
  if (first) job_last_progress_->Remove({job_id});
  if (first && std::find(std::begin(kFinalStates), std::end(kFinalStates), final_state) !=
                   std::end(kFinalStates)) {
    Ignore(jobs_finished_->Inc({final_state}));
  }
  PruneFinishedJobs();
}

void ServerMetrics::SetJobsByState(const std::vector<std::pair<std::string, int64_t>>& counts) {
  std::map<std::string, int64_t> by_state;
  for (const std::string& state : JobStateNames()) by_state[state] = 0;
  for (const auto& [state, n] : counts) by_state[state] += n;
  for (const auto& [state, n] : by_state) Ignore(jobs_->Set({state}, static_cast<double>(n)));
}

void ServerMetrics::ObserveQueueWait(double seconds) { Ignore(queue_wait_->Observe({}, seconds)); }

void ServerMetrics::OnGrpcRequest(const std::string& full_method, const std::string& code_name) {
  // "/foak.v1.JobService/CreateJob" -> ("foak.v1.JobService", "CreateJob").
  std::string service = "unknown";
  std::string method = "unknown";
  const size_t slash = full_method.find('/', 1);
  if (full_method.size() > 2 && full_method[0] == '/' && slash != std::string::npos && slash > 1 &&
      slash + 1 < full_method.size() && full_method.find('/', slash + 1) == std::string::npos) {
    service = full_method.substr(1, slash - 1);
    method = full_method.substr(slash + 1);
  }
  Ignore(grpc_handled_->Inc({service, method, code_name}));
}

void ServerMetrics::SetBuildInfo(const std::string& version) {
  build_info_->Clear();
  Ignore(build_info_->Set({version}, 1));
}

void ServerMetrics::PruneFinishedJobs() {
  const int64_t now = options_.now_ms();
  MetricFamily* const job_families[] = {
      job_step_,          job_max_steps_,         job_loss_,         job_learning_rate_,
      job_grad_norm_,     job_tokens_per_second_, job_step_seconds_, job_peak_memory_bytes_,
      job_tokens_total_,  job_last_progress_};
  for (auto it = finished_at_ms_.begin(); it != finished_at_ms_.end();) {
    if (now - it->second < options_.finished_job_retention_ms) {
      ++it;
      continue;
    }
    // Every series whose first label is this job_id (the peak memory has one
    // per rank).
    for (MetricFamily* family : job_families) family->RemoveWithPrefix({it->first});
    it = finished_at_ms_.erase(it);
  }
}

void ServerMetrics::SetJobsByStateSource(JobsByStateSource source) {
  absl::MutexLock lock(&source_mu_);
  jobs_by_state_source_ = std::move(source);
}

std::string ServerMetrics::Render() {
  {
    absl::MutexLock lock(&source_mu_);
    if (jobs_by_state_source_) {
      if (auto counts = jobs_by_state_source_(); counts.has_value()) SetJobsByState(*counts);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    PruneFinishedJobs();
  }
  return registry_.Render();
}

}  // namespace foak

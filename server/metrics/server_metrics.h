// What foakd tells Prometheus: per-job training progress, the job count per
// state, how long jobs wait in the queue, and the gRPC requests it handled.
// The job manager and the gRPC interceptor call the On*/Set*/Observe* methods;
// the HTTP endpoint calls Render() on each scrape.
//
// Why the job series expire: every job_id is a new label value, so keeping
// the series of every job ever run would grow /metrics (and Prometheus's
// series count) without bound. A finished job keeps its series for
// `finished_job_retention_ms` -- long enough for a few scrapes to record its
// final step, loss and token count -- and Render() then drops them.
//
// Exported families (the series of a job carry the label job_id, and only
// it but for the peak memory):
//   foak_job_step, foak_job_max_steps                       gauges
//   foak_job_loss, foak_job_learning_rate, foak_job_grad_norm gauges
//   foak_job_tokens_per_second                               gauge
//   foak_job_step_seconds       gauge: mean wall seconds per optimizer step
//                               over the last logging interval (set when
//                               the job manager could derive it)
//   foak_job_peak_memory_bytes{job_id,rank}  gauge: GPU memory on CUDA, peak
//                               RSS on CPU, per worker process; rank="0" for
//                               a job of one process, so a data-parallel
//                               job's ranks plot side by side (and
//                               max by (job_id) gives the job's highest)
//   foak_job_tokens_total       counter: input tokens trained on
//   foak_job_last_progress_timestamp_seconds  gauge: unix time of the last
//                               sample; only while the job is not final (it
//                               goes at OnJobFinished), so "time() - it" is
//                               the silence of an active job, which is what
//                               deploy/prometheus's no-progress alert needs
//   foak_jobs{state}            gauge: all 7 job states, 0 when none
//   foak_jobs_finished_total{state}  counter: jobs that reached SUCCEEDED,
//                               FAILED or CANCELLED since foakd started; all
//                               three exported from the start at 0, so that
//                               increase() sees a state's first job
//   foak_job_queue_wait_seconds histogram: QUEUED -> STARTING wait
//   foak_grpc_server_handled_total{grpc_service,grpc_method,grpc_code} counter
//   foak_build_info{version}    gauge, 1 (after SetBuildInfo)
// Label sets stay bounded: job_id expires as above (with all its ranks), a
// job's ranks are at most its GPUs or resources.processes, states and gRPC
// codes are fixed sets, and gRPC services/methods are the registered ones.
//
// The other job series follow rank 0 alone: it reports the job's step, loss
// and throughput, and the other ranks only their memory.
//
// Thread-safe. No torch, protobuf or gRPC headers: both the engine and the
// transport can include it.
#ifndef FOAK_SERVER_METRICS_SERVER_METRICS_H_
#define FOAK_SERVER_METRICS_SERVER_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/metrics/metric_family.h"
#include "server/metrics/metric_registry.h"

namespace foak {

// One logged training step of a job, as its rank 0 worker reports it.
struct JobProgressSample {
  int64_t step = 0;
  int64_t max_steps = 0;  // <= 0: unknown, the previous value is kept
  double loss = 0;
  double learning_rate = 0;
  double grad_norm = 0;
  double tokens_per_second = 0;
  int64_t peak_memory_bytes = 0;  // rank 0's: GPU memory on CUDA, peak RSS on CPU
  int64_t tokens = 0;  // input tokens processed since the previous sample (a delta; < 0 counts as 0)
  // Mean wall seconds per optimizer step since the previous sample; <= 0 (or
  // not finite): unknown, foak_job_step_seconds keeps its previous value.
  double step_seconds = 0;
};

struct ServerMetricsOptions {
  // A finished job's series are dropped by the first Render() at least this
  // long after OnJobFinished.
  int64_t finished_job_retention_ms = 10 * 60 * 1000;
  // Milliseconds since the unix epoch; also the source of
  // foak_job_last_progress_timestamp_seconds. Empty: the system clock.
  std::function<int64_t()> now_ms;
  // Upper bounds of foak_job_queue_wait_seconds in seconds. Empty: 1, 2, 4,
  // ..., 4096 (1 s to ~1.1 h). Given bounds are sorted and deduplicated, and
  // non-finite ones dropped, so a bad option cannot disable the histogram.
  std::vector<double> queue_wait_buckets_s;
  // False: no series labelled by job_id at all (OnJobProgress and
  // OnRankPeakMemory record nothing), for operators who do not want job ids
  // on /metrics or whose job churn would swell Prometheus's series count.
  // The aggregate series (jobs by state, finished jobs, queue wait, requests)
  // stay. foakd --metrics_per_job_series.
  bool per_job_series = true;
};

class ServerMetrics {
 public:
  explicit ServerMetrics(ServerMetricsOptions options = {});
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Sets the job's gauges to the sample (the peak memory as rank="0"; the
  // step time only when sample.step_seconds is known), adds
  // sample.tokens to foak_job_tokens_total and stamps
  // foak_job_last_progress_timestamp_seconds.
  // A report that arrives after OnJobFinished updates the series but does not
  // extend their retention, nor bring back the last-progress timestamp.
  void OnJobProgress(const std::string& job_id, const JobProgressSample& sample);
  // The peak memory of one rank > 0 of a data-parallel job (rank 0's comes
  // with OnJobProgress); touches no other series. Expires with the job's.
  void OnRankPeakMemory(const std::string& job_id, int64_t rank, int64_t peak_memory_bytes);
  // The job reached the final state `final_state` ("SUCCEEDED", "FAILED" or
  // "CANCELLED"; another name counts nothing): foak_jobs_finished_total
  // {state} counts it, its last-progress timestamp goes at once, and the
  // job's other series stay for the retention, then go.
  // Calling it again for a job whose retention runs neither counts it again
  // nor restarts the retention.
  void OnJobFinished(const std::string& job_id, const std::string& final_state);

  // Job counts by state name ("QUEUED", ...). All 7 states are exported every
  // time; a state absent from `counts` reads 0.
  void SetJobsByState(const std::vector<std::pair<std::string, int64_t>>& counts);
  // Where Render() takes the job counts from (SetJobsByState with what it
  // returns; nullopt keeps the last ones), so a count that scans the job table
  // runs once per scrape, not once per state change (issue 9's load bench:
  // 12,000 queued jobs, 200 new ones a second). Render() calls it under a
  // lock; setting another (or an empty one) waits for a call in progress, so
  // its owner clears it before going away.
  using JobsByStateSource =
      std::function<std::optional<std::vector<std::pair<std::string, int64_t>>>()>;
  void SetJobsByStateSource(JobsByStateSource source);
  // One job's wait from QUEUED to STARTING, in seconds.
  void ObserveQueueWait(double seconds);
  // One finished RPC: `full_method` as gRPC names it ("/foak.v1.JobService/
  // CreateJob") and the status code's name ("OK", "NOT_FOUND"). A method that
  // is not of the form /service/method is counted as service and method
  // "unknown".
  void OnGrpcRequest(const std::string& full_method, const std::string& code_name);
  // foak_build_info{version="..."} 1 (replaces an earlier version).
  void SetBuildInfo(const std::string& version);

  // Drops the series of jobs whose retention has passed, then renders every
  // family in the text format 0.0.4.
  std::string Render();

  // The 7 job states, in the order of the API's enum.
  static const std::vector<std::string>& JobStateNames();

 private:
  void PruneFinishedJobs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ServerMetricsOptions options_;
  MetricRegistry registry_;
  // Owned by registry_; set once in the constructor.
  MetricFamily* job_step_;
  MetricFamily* job_max_steps_;
  MetricFamily* job_loss_;
  MetricFamily* job_learning_rate_;
  MetricFamily* job_grad_norm_;
  MetricFamily* job_tokens_per_second_;
  MetricFamily* job_step_seconds_;
  MetricFamily* job_peak_memory_bytes_;
  MetricFamily* job_tokens_total_;
  MetricFamily* job_last_progress_;
  MetricFamily* jobs_;
  MetricFamily* jobs_finished_;
  MetricFamily* queue_wait_;
  MetricFamily* grpc_handled_;
  MetricFamily* build_info_;

  absl::Mutex source_mu_;
  JobsByStateSource jobs_by_state_source_ ABSL_GUARDED_BY(source_mu_);
  absl::Mutex mu_;
  // job_id -> when OnJobFinished was first called (options_.now_ms()).
  std::map<std::string, int64_t> finished_at_ms_ ABSL_GUARDED_BY(mu_);
};

}  // namespace foak

#endif  // FOAK_SERVER_METRICS_SERVER_METRICS_H_

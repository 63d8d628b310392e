// CoordinatorReporter: forwards a training run's progress (TrainObserver,
// worker/train/train_observer.h) to foakd's WorkerService
// (proto/foak/v1/worker_service.proto) over one ReportEvents client stream.
//
// Why it is built this way:
//  - Training never waits on the network. The callbacks only append to a
//    bounded in-memory queue; a background thread holds the stream and writes
//    the queue in order. When foakd is away (restarting) the thread reconnects
//    with exponential backoff (initial_backoff doubling up to max_backoff) and
//    sends what has queued up meanwhile. A full queue drops the oldest step
//    metrics first, then the oldest evaluations; WorkerStarted, Checkpoint
//    and BenchResult reports are never dropped (they are few, foakd needs
//    them, and a benchmark row is the job's result, not a progress sample).
//  - Delivery is at most once: a report written just as the stream breaks can
//    be lost (the RPC has no per-report acknowledgement, and resending could
//    duplicate events). metrics.jsonl in the output folder stays the complete
//    record; what foakd gets is the live view.
//  - A token foakd refuses (PERMISSION_DENIED, UNAUTHENTICATED) or a foakd
//    without WorkerService (UNIMPLEMENTED) will not get better by retrying:
//    the reporter logs one line and stops sending; training goes on.
//  - This header is included by foak-worker's torch-facing code, so it names
//    no generated protobuf or gRPC type (pimpl): those live in the .cc,
//    compiled in foak_worker_report, which never sees torch include paths
//    (shared/GPU_HOST.md, trap 1).
#ifndef FOAK_WORKER_REPORT_COORDINATOR_REPORTER_H_
#define FOAK_WORKER_REPORT_COORDINATOR_REPORTER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/train/metrics_writer.h"
#include "worker/train/train_observer.h"

namespace foak {

class CoordinatorReporter : public TrainObserver {
 public:
  struct Options {
    std::string address;  // foakd's gRPC server, "host:port" (required)
    std::string job_id;   // required
    std::string token;    // sent as "authorization: Bearer <token>" (required)
    int32_t attempt = 0;  // the job's restart count, as foakd launched it
    int32_t rank = 0;     // this process's rank in the job
    // TLS to foakd (foakd --tls_cert): the CA (PEM) that signed foakd's
    // certificate; empty = a plaintext channel. With foakd --tls_client_ca
    // (mutual TLS) also the certificate chain and key this worker presents.
    std::string tls_ca_pem;
    std::string tls_cert_pem;
    std::string tls_key_pem;
    // With TLS: the name foakd's certificate is checked against instead of
    // the host of `address` (gRPC's SSL target name override; foakd
    // --worker_tls_server_name), for a worker that dials foakd by an IP or a
    // Service name the certificate does not carry. Empty = that host.
    std::string tls_server_name;
    // Reports waiting to be sent at most (>= 1); see the drop order above.
    int64_t max_queue = 10000;
    absl::Duration initial_backoff = absl::Milliseconds(200);
    absl::Duration max_backoff = absl::Seconds(5);
    // Where the few lines for people go (the refused token, the first drop);
    // may be null.
    std::FILE* log = stderr;
  };

  // What the reporter has done so far (for tests and the closing message).
  struct Stats {
    int64_t enqueued = 0;  // reports accepted into the queue
    int64_t sent = 0;      // reports written to a stream
    int64_t dropped = 0;   // reports dropped because the queue was full
    int64_t streams = 0;   // ReportEvents calls started
    int64_t broken = 0;    // streams that ended before Close (foakd away, restarting)
    bool refused = false;  // foakd refused the token; nothing more is sent
    // Why the newest stream that broke did ("UNAVAILABLE: ..." as gRPC says
    // it, e.g. a failed TLS handshake); cleared when a report gets through.
    std::string last_error;
  };

  // INVALID_ARGUMENT when a required option is empty, max_queue < 1, or only
  // one of tls_cert_pem / tls_key_pem is set (or either, or tls_server_name,
  // without tls_ca_pem). Does not connect: the background thread does, once
  // there is a report to send. The first time foakd cannot be reached after
  // a report got through (or ever) one line goes to `log`, saying why.
  static absl::StatusOr<std::unique_ptr<CoordinatorReporter>> Create(Options options);

  // The reporter foakd asks for through the worker's environment:
  // FOAK_COORDINATOR (host:port), FOAK_JOB_ID, FOAK_JOB_TOKEN, and optionally
  // FOAK_JOB_ATTEMPT and RANK (integers, default 0), and for TLS
  // FOAK_COORDINATOR_TLS_CA (a PEM file; set = TLS) with, for mutual TLS,
  // FOAK_COORDINATOR_TLS_CERT and FOAK_COORDINATOR_TLS_KEY, and optionally
  // FOAK_COORDINATOR_TLS_SERVER_NAME (tls_server_name). nullptr (OK) when
  // FOAK_COORDINATOR is unset or empty (a worker run by hand); INVALID_ARGUMENT
  // naming the variable when one is missing or not an integer.
  static absl::StatusOr<std::unique_ptr<CoordinatorReporter>> FromEnvironment();

  // Close(absl::Seconds(1)) unless Close was called.
  ~CoordinatorReporter() override;
  CoordinatorReporter(const CoordinatorReporter&) = delete;
  CoordinatorReporter& operator=(const CoordinatorReporter&) = delete;

  // TrainObserver: each queues one report and returns at once.
  void OnStart(int64_t max_steps, int64_t start_step, const std::string& device) override;
  void OnStep(const StepMetrics& metrics) override;
  void OnEval(const EvalMetrics& metrics) override;
  void OnCheckpoint(int64_t step, const std::string& path) override;
  void OnBenchResult(const BenchResult& result) override;

  // Sends what is queued (waiting up to `timeout` for foakd), half-closes the
  // stream and waits for foakd's answer, then stops the thread; later reports
  // are ignored. DEADLINE_EXCEEDED (saying how many reports were not
  // delivered) when the timeout ran out first; OK otherwise, also when foakd
  // refused the token (already logged); the DEADLINE_EXCEEDED message ends
  // with Stats::last_error when there is one. A second call returns the
  // first call's status.
  absl::Status Close(absl::Duration timeout);

  Stats stats() const;

 private:
  class Impl;
  explicit CoordinatorReporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace foak

#endif  // FOAK_WORKER_REPORT_COORDINATOR_REPORTER_H_

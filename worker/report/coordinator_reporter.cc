// CoordinatorReporter's gRPC side (see the header for why it is shaped this
// way). One background thread owns the stream; the training thread only
// touches the queue, under mu_.
//
// The thread's life: wait for a report, open a ReportEvents stream, write
// the queue front to back, and when the stream breaks wait the backoff and
// open a new one. Close sets closing_: the thread drains the queue,
// half-closes (WritesDone, then the final status) and exits; if that takes
// longer than the caller's timeout, Close sets stop_ and the thread cancels
// the call (unblocking a Write stuck on flow control, a connect to an
// unreachable host, or a foakd that never answers).
//
// Why the asynchronous API on a completion queue the thread polls itself:
// the call's final status is asked for right after the call starts, so a
// foakd that goes away (restart: it cancels the call and closes the
// connection) is noticed while the stream is idle, before the next report is
// written. With the blocking API the first Write after the restart succeeds
// into a dead connection and that report is lost. Only one Write is in flight
// at a time; each report is taken off the queue before it is written and put
// back at the front when the write fails, so a drop from a full queue never
// races the write.
//
// The channel's own reconnect backoff is set to the reporter's, so that once
// foakd is back the next attempt is not refused by a channel still waiting out
// gRPC's default backoff (which grows to two minutes).
#include "worker/report/coordinator_reporter.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "foak/v1/worker_service.grpc.pb.h"

namespace foak {
namespace {

enum class ReportKind { kStarted, kMetrics, kEval, kCheckpoint, kBench };

struct QueuedReport {
  ReportKind kind = ReportKind::kMetrics;
  v1::WorkerReport report;
};

// Codes retrying cannot fix: the token is wrong for this job, or this foakd
// has no WorkerService.
bool IsPermanent(grpc::StatusCode code) {
  return code == grpc::StatusCode::PERMISSION_DENIED ||
         code == grpc::StatusCode::UNAUTHENTICATED || code == grpc::StatusCode::UNIMPLEMENTED;
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    default:
      return "error";
  }
}

// How often the stream loop looks at the queue and the stop flag while the
// completion queue has nothing for it: the added latency of a report.
constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

// Completion-queue tags of a stream's operations.
enum class Op : intptr_t { kStart = 1, kWrite, kWritesDone, kFinish };
void* OpTag(Op op) { return reinterpret_cast<void*>(static_cast<intptr_t>(op)); }
Op TagOp(void* tag) { return static_cast<Op>(reinterpret_cast<intptr_t>(tag)); }

int ToMillis(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), 1 << 30));
}

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) /
                                      absl::Nanoseconds(1)));
}

// The value of a variable FOAK_COORDINATOR implies; INVALID_ARGUMENT naming it.
absl::StatusOr<std::string> RequiredEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    return absl::InvalidArgumentError(absl::StrCat(
        "FOAK_COORDINATOR is set but ", name,
        " is missing or empty; foakd sets FOAK_COORDINATOR, FOAK_JOB_ID and FOAK_JOB_TOKEN "
        "together (unset FOAK_COORDINATOR to train without reporting to foakd)"));
  }
  return std::string(value);
}

// An optional integer variable (0 when unset or empty).
absl::StatusOr<int32_t> IntEnv(const char* name) {
  const char* value = std::getenv(name);
  int32_t out = 0;
  if (value == nullptr || *value == '\0') return out;
  if (!absl::SimpleAtoi(value, &out) || out < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " = '", value, "'; expected a non-negative integer"));
  }
  return out;
}

// The contents of the PEM file an optional variable names ("" when unset);
// INVALID_ARGUMENT naming the variable and the file when it cannot be read.
absl::StatusOr<std::string> PemFileEnv(const char* name) {
  const char* path = std::getenv(name);
  if (path == nullptr || *path == '\0') return std::string();
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " = '", path, "': ", pem.status().message(),
                                                   "; foakd passes the files of its --worker_tls_* "
                                                   "flags, which must be readable by the worker"));
  }
  if (pem->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " = '", path, "' holds no PEM block (-----BEGIN ...)"));
  }
  return *std::move(pem);
}

// What to do about a stream that broke with `error`: with TLS, a handshake
// that failed on foakd's certificate most often means it does not name the
// host this worker dials.
std::string ConnectHint(const CoordinatorReporter::Options& options, const std::string& error) {
  if (options.tls_ca_pem.empty()) return "";
  const std::string lower = absl::AsciiStrToLower(error);
  const bool certificate = lower.find("certificate") != std::string::npos ||
                           lower.find("handshake") != std::string::npos ||
                           lower.find("ssl") != std::string::npos;
  if (!certificate) return "";
  if (options.tls_server_name.empty()) {
    return absl::StrCat(
        "; with TLS, check that foakd's certificate names the host dialled (", options.address,
        ") and is signed by FOAK_COORDINATOR_TLS_CA; when workers reach foakd by a name or IP "
        "its certificate does not carry, set foakd --worker_tls_server_name "
        "(FOAK_COORDINATOR_TLS_SERVER_NAME) to a name it does");
  }
  return absl::StrCat("; with TLS, check that foakd's certificate names '",
                      options.tls_server_name,
                      "' (FOAK_COORDINATOR_TLS_SERVER_NAME) and is signed by "
                      "FOAK_COORDINATOR_TLS_CA");
}

}  // namespace

class CoordinatorReporter::Impl {
 public:
  explicit Impl(Options options) : options_(std::move(options)) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, ToMillis(options_.initial_backoff));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ToMillis(options_.max_backoff));
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (!options_.tls_ca_pem.empty()) {
      grpc::SslCredentialsOptions tls;
      tls.pem_root_certs = options_.tls_ca_pem;
      tls.pem_cert_chain = options_.tls_cert_pem;
      tls.pem_private_key = options_.tls_key_pem;
      credentials = grpc::SslCredentials(tls);
      // Checked against foakd's certificate (and sent as SNI) in place of
      // the dialled host; the connection still goes to `address`.
      if (!options_.tls_server_name.empty()) {
        args.SetSslTargetNameOverride(options_.tls_server_name);
      }
    }
    channel_ = grpc::CreateCustomChannel(options_.address, credentials, args);
    stub_ = v1::WorkerService::NewStub(channel_);
    thread_ = std::thread([this] { Run(); });
  }

  ~Impl() {
    if (thread_.joinable()) Close(absl::ZeroDuration()).IgnoreError();
  }

  // A report with the fields every report carries.
  v1::WorkerReport NewReport() const {
    v1::WorkerReport report;
    report.set_job_id(options_.job_id);
    report.set_attempt(options_.attempt);
    report.set_rank(options_.rank);
    return report;
  }

  void Enqueue(ReportKind kind, v1::WorkerReport report) {
    absl::MutexLock lock(&mu_);
    if (closing_ || done_ || stats_.refused) return;
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
      bool made_room = DropOldestLocked(ReportKind::kMetrics);
      if (!made_room && kind != ReportKind::kMetrics) {
        made_room = DropOldestLocked(ReportKind::kEval);
      }
      if (!made_room && (kind == ReportKind::kMetrics || kind == ReportKind::kEval)) {
        NoteDropLocked();
        return;
      }
      // Otherwise WorkerStarted, a Checkpoint or a BenchResult goes over the
      // bound: never dropped.
    }
    queue_.push_back(QueuedReport{kind, std::move(report)});
    ++stats_.enqueued;
  }

  absl::Status Close(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    {
      absl::MutexLock lock(&mu_);
      if (closing_) {
        mu_.Await(absl::Condition(&closed_));
        return close_status_;
      }
      closing_ = true;
      if (!mu_.AwaitWithDeadline(absl::Condition(&done_), deadline)) stop_ = true;
    }
    thread_.join();
    absl::MutexLock lock(&mu_);
    if (!queue_.empty() && !stats_.refused) {
      close_status_ = absl::DeadlineExceededError(absl::StrCat(
          queue_.size(), " progress report(s) not delivered to foakd at ", options_.address,
          " within ", absl::FormatDuration(timeout), " (metrics.jsonl has them all)",
          stats_.last_error.empty() ? "" : "; last error: ", stats_.last_error,
          ConnectHint(options_, stats_.last_error)));
    }
    closed_ = true;
    return close_status_;
  }

  Stats stats() const {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

  // Written and read on the training thread only (OnStart, OnStep).
  int64_t max_steps = 0;

 private:
  enum class StreamEnd { kDone, kBroken };

  bool HasWorkLocked() const { return stop_ || closing_ || !queue_.empty(); }

  bool DropOldestLocked(ReportKind kind) {
    auto it = std::find_if(queue_.begin(), queue_.end(),
                           [kind](const QueuedReport& r) { return r.kind == kind; });
    if (it == queue_.end()) return false;
    queue_.erase(it);
    NoteDropLocked();
    return true;
  }

  void NoteDropLocked() {
    if (stats_.dropped++ == 0 && options_.log != nullptr) {
      std::fprintf(options_.log,
                   "foak-worker: %lld progress reports wait for foakd at %s; dropping the "
                   "oldest step metrics until it is reachable (metrics.jsonl keeps them)\n",
                   static_cast<long long>(queue_.size()), options_.address.c_str());
      std::fflush(options_.log);
    }
  }

  void Run() {
    absl::Duration backoff = options_.initial_backoff;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &Impl::HasWorkLocked));
        // Closing with nothing left to send: no stream to open.
        if (stop_ || queue_.empty()) break;
      }
      if (RunStream(&backoff) == StreamEnd::kDone) break;
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), backoff);
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

  // One ReportEvents call: writes the queue until Close drains it (kDone) or
  // the stream breaks (kBroken: reconnect after the backoff).
  StreamEnd RunStream(absl::Duration* backoff) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return StreamEnd::kDone;
      ++stats_.streams;
    }
    grpc::CompletionQueue cq;
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + options_.token);
    v1::ReportEventsResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncWriter<v1::WorkerReport>> writer =
        stub_->PrepareAsyncReportEvents(&context, &response, &cq);
    writer->StartCall(OpTag(Op::kStart));
    writer->Finish(&status, OpTag(Op::kFinish));  // completes when the call ends, for any reason
    int pending = 2;
    bool started = false;        // initial metadata sent: writes may begin
    bool write_pending = false;  // one Write or WritesDone at a time
    bool writes_done = false;
    bool broken = false;         // a write failed or the call ended under us
    bool cancelled = false;
    std::optional<QueuedReport> in_flight;
    while (pending > 0) {
      if (!cancelled) {
        absl::MutexLock lock(&mu_);
        if (stop_) {
          context.TryCancel();  // every pending operation completes now
          cancelled = true;
        } else if (started && !write_pending && !writes_done && !broken) {
          if (!queue_.empty()) {
            in_flight = std::move(queue_.front());
            queue_.pop_front();
            writer->Write(in_flight->report, OpTag(Op::kWrite));
            write_pending = true;
            ++pending;
          } else if (closing_) {
            writer->WritesDone(OpTag(Op::kWritesDone));
            write_pending = true;
            writes_done = true;
            ++pending;
          }
        }
      }
      void* tag = nullptr;
      bool ok = false;
      const auto deadline =
          std::chrono::system_clock::now() + absl::ToChronoMilliseconds(kPollInterval);
      if (cq.AsyncNext(&tag, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) continue;
      --pending;
      switch (TagOp(tag)) {
        case Op::kStart:
          started = ok;
          if (!ok) broken = true;  // no connection; kFinish brings the status
          break;
        case Op::kWrite: {
          write_pending = false;
          absl::MutexLock lock(&mu_);
          if (ok) {
            ++stats_.sent;
            stats_.last_error.clear();
            told_unreachable_ = false;
            *backoff = options_.initial_backoff;
          } else {
            queue_.push_front(std::move(*in_flight));
            broken = true;
          }
          in_flight.reset();
          break;
        }
        case Op::kWritesDone:
          write_pending = false;
          if (!ok) broken = true;
          break;
        case Op::kFinish:
          // The call is over; a write still pending completes with !ok.
          if (!writes_done) broken = true;
          break;
      }
    }
    cq.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
    }
    absl::MutexLock lock(&mu_);
    if (IsPermanent(status.error_code())) {
      stats_.refused = true;
      queue_.clear();
      if (options_.log != nullptr) {
        std::fprintf(options_.log,
                     "foak-worker: foakd at %s refused this worker's progress reports for job "
                     "%s (%s: %s); not reporting any more, training goes on (metrics.jsonl "
                     "has everything)\n",
                     options_.address.c_str(), options_.job_id.c_str(),
                     CodeName(status.error_code()), status.error_message().c_str());
        std::fflush(options_.log);
      }
      return StreamEnd::kDone;
    }
    if (!broken || stop_) return StreamEnd::kDone;
    ++stats_.broken;
    if (!status.ok()) {
      stats_.last_error = absl::StrCat(CodeName(status.error_code()), ": ", status.error_message());
      if (!told_unreachable_ && options_.log != nullptr) {
        told_unreachable_ = true;
        std::fprintf(options_.log,
                     "foak-worker: cannot report to foakd at %s for job %s (%s%s); retrying "
                     "with backoff up to %s, training goes on\n",
                     options_.address.c_str(), options_.job_id.c_str(),
                     stats_.last_error.c_str(), ConnectHint(options_, stats_.last_error).c_str(),
                     absl::FormatDuration(options_.max_backoff).c_str());
        std::fflush(options_.log);
      }
    }
    return StreamEnd::kBroken;
  }

  const Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;

  mutable absl::Mutex mu_;
  std::deque<QueuedReport> queue_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // Close called: drain, then finish
  bool stop_ ABSL_GUARDED_BY(mu_) = false;     // Close timed out: give up now
  bool done_ ABSL_GUARDED_BY(mu_) = false;     // the thread has returned
  bool closed_ ABSL_GUARDED_BY(mu_) = false;   // Close has returned
  // The line about a broken stream was logged; again once a report got through.
  bool told_unreachable_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);

  std::thread thread_;  // last: starts after everything above exists
};

absl::StatusOr<std::unique_ptr<CoordinatorReporter>> CoordinatorReporter::Create(
    Options options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("CoordinatorReporter: address (host:port) is empty");
  }
  if (options.job_id.empty()) {
    return absl::InvalidArgumentError("CoordinatorReporter: job_id is empty");
  }
  if (options.token.empty()) {
    return absl::InvalidArgumentError("CoordinatorReporter: token is empty");
  }
  if (!options.tls_server_name.empty() && options.tls_ca_pem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CoordinatorReporter: tls_server_name = '", options.tls_server_name,
        "' needs TLS: set tls_ca_pem too (FOAK_COORDINATOR_TLS_SERVER_NAME applies only with "
        "FOAK_COORDINATOR_TLS_CA)"));
  }
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty() ||
      (!options.tls_cert_pem.empty() && options.tls_ca_pem.empty())) {
    return absl::InvalidArgumentError(
        "CoordinatorReporter: a client certificate needs its key and the CA of foakd's "
        "certificate: set tls_cert_pem, tls_key_pem and tls_ca_pem together "
        "(FOAK_COORDINATOR_TLS_CERT, _KEY, _CA)");
  }
  if (options.max_queue < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CoordinatorReporter: max_queue = ", options.max_queue, "; must be >= 1"));
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CoordinatorReporter: initial_backoff = ", absl::FormatDuration(options.initial_backoff),
        ", max_backoff = ", absl::FormatDuration(options.max_backoff),
        "; need 0 < initial_backoff <= max_backoff"));
  }
  return std::unique_ptr<CoordinatorReporter>(
      new CoordinatorReporter(std::make_unique<Impl>(std::move(options))));
}

absl::StatusOr<std::unique_ptr<CoordinatorReporter>> CoordinatorReporter::FromEnvironment() {
  const char* address = std::getenv("FOAK_COORDINATOR");
  if (address == nullptr || *address == '\0') return std::unique_ptr<CoordinatorReporter>();
  Options options;
  options.address = address;
  ASSIGN_OR_RETURN(options.job_id, RequiredEnv("FOAK_JOB_ID"));
  ASSIGN_OR_RETURN(options.token, RequiredEnv("FOAK_JOB_TOKEN"));
  ASSIGN_OR_RETURN(options.attempt, IntEnv("FOAK_JOB_ATTEMPT"));
  ASSIGN_OR_RETURN(options.rank, IntEnv("RANK"));
  ASSIGN_OR_RETURN(options.tls_ca_pem, PemFileEnv("FOAK_COORDINATOR_TLS_CA"));
  ASSIGN_OR_RETURN(options.tls_cert_pem, PemFileEnv("FOAK_COORDINATOR_TLS_CERT"));
  ASSIGN_OR_RETURN(options.tls_key_pem, PemFileEnv("FOAK_COORDINATOR_TLS_KEY"));
  if (const char* name = std::getenv("FOAK_COORDINATOR_TLS_SERVER_NAME"); name != nullptr) {
    options.tls_server_name = name;
  }
  return Create(std::move(options));
}

CoordinatorReporter::CoordinatorReporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CoordinatorReporter::~CoordinatorReporter() { impl_->Close(absl::Seconds(1)).IgnoreError(); }

void CoordinatorReporter::OnStart(int64_t max_steps, int64_t start_step,
                                  const std::string& device) {
  impl_->max_steps = max_steps;
  v1::WorkerReport report = impl_->NewReport();
  v1::WorkerStarted* started = report.mutable_started();
  started->set_max_steps(max_steps);
  started->set_start_step(start_step);
  started->set_device(device);
  impl_->Enqueue(ReportKind::kStarted, std::move(report));
}

void CoordinatorReporter::OnStep(const StepMetrics& metrics) {
  v1::WorkerReport report = impl_->NewReport();
  v1::StepMetrics* m = report.mutable_metrics();
  m->set_step(metrics.step);
  m->set_max_steps(impl_->max_steps);
  m->set_loss(metrics.loss);
  m->set_learning_rate(metrics.learning_rate);
  m->set_grad_norm(metrics.grad_norm);
  m->set_tokens(metrics.tokens);
  m->set_tokens_per_second(metrics.tokens_per_second);
  m->set_peak_memory_bytes(metrics.peak_memory_bytes);
  m->set_peak_reserved_bytes(metrics.peak_reserved_bytes);
  m->set_elapsed_s(metrics.elapsed_s);
  m->set_rank(report.rank());
  impl_->Enqueue(ReportKind::kMetrics, std::move(report));
}

void CoordinatorReporter::OnEval(const EvalMetrics& metrics) {
  v1::WorkerReport report = impl_->NewReport();
  v1::EvalMetrics* e = report.mutable_eval();
  e->set_step(metrics.step);
  e->set_eval_loss(metrics.eval_loss);
  e->set_eval_tokens(metrics.eval_tokens);
  e->set_eval_examples(metrics.eval_examples);
  e->set_eval_s(metrics.eval_s);
  impl_->Enqueue(ReportKind::kEval, std::move(report));
}

void CoordinatorReporter::OnCheckpoint(int64_t step, const std::string& path) {
  v1::WorkerReport report = impl_->NewReport();
  v1::Checkpoint* c = report.mutable_checkpoint();
  c->set_step(step);
  c->set_path(path);
  SetTimestamp(absl::Now(), c->mutable_time());
  impl_->Enqueue(ReportKind::kCheckpoint, std::move(report));
}

void CoordinatorReporter::OnBenchResult(const BenchResult& result) {
  v1::WorkerReport report = impl_->NewReport();
  v1::BenchResult* b = report.mutable_bench();
  b->set_index(result.index);
  b->set_total(result.total);
  b->set_framework(result.framework);
  b->set_model(result.model);
  b->set_method(result.method);
  b->set_kernels(result.kernels);
  b->set_gpus(result.gpus);
  b->set_batch(result.batch);
  b->set_seq(result.seq);
  b->set_precision(result.precision);
  b->set_activation_checkpointing(result.activation_checkpointing);
  b->set_status(result.status);
  b->set_error(result.error);
  b->set_tokens_per_second(result.tokens_per_second);
  if (result.pct_change.has_value()) b->set_pct_change(*result.pct_change);
  b->set_ms_per_step(result.ms_per_step);
  b->set_peak_allocated_bytes(result.peak_allocated_bytes);
  b->set_peak_reserved_bytes(result.peak_reserved_bytes);
  b->set_loss_first(result.loss_first);
  b->set_loss_last(result.loss_last);
  b->set_warmup_steps(result.warmup_steps);
  b->set_steps(result.steps);
  b->set_max_batch(result.max_batch);
  b->set_device(result.device);
  impl_->Enqueue(ReportKind::kBench, std::move(report));
}

absl::Status CoordinatorReporter::Close(absl::Duration timeout) { return impl_->Close(timeout); }

CoordinatorReporter::Stats CoordinatorReporter::stats() const { return impl_->stats(); }

}  // namespace foak

// foakd under load (issue 9): N concurrent WatchJob streams held open while
// CreateJob arrives at a steady R per second for D seconds, against a foakd
// this program starts (or one at --target). Not a timed test: it measures and
// reports, it asserts nothing.
//
//   foak_foakd_load_bench [--watchers 1000] [--rate 200] [--duration_s 60]
//                         [--json PATH] [--target HOST:PORT --foakd_pid PID]
//
// What the started foakd runs: --gpus none --cpu_slots 1 and a fake worker (a
// shell script that sleeps), so the first job takes the one CPU slot and
// holds it, and every later job stays QUEUED behind it. The run therefore
// builds a backlog of about R*D queued jobs -- the scheduler and the store
// see the realistic "a long job runs, thousands wait" case -- without
// training anything on the machine the measurement shares.
//
// Phases:
//  1. seed: ceil(N / watchers_per_job) jobs created back to back;
//  2. watch: N streams opened (callback API, spread over --connections
//     channels), each on a seed job; a stream counts as open when its first
//     event (the replayed "Created") arrives;
//  3. load: CreateJob paced open loop (the i-th call is sent at t0 + i/R,
//     whatever the earlier ones are doing, so a slow server shows up as
//     latency, not as a lower rate) and, at --probe_rate per second, a
//     CancelJob on a watched seed job: the time from sending it to each of
//     that job's watchers receiving the CANCELLED event is the live delivery
//     latency (it includes the CancelJob call itself). A watch that ended
//     (its job is final) is reopened on the newest created job, so N stay
//     open;
//  4. stop: SIGTERM to foakd with the streams still open; they must end with
//     UNAVAILABLE.
// A sampler reads foakd's VmRSS, Threads and CPU time from /proc every
// second, and this process's CPU time (the client must not be the
// bottleneck: its CPU share and the pacing lag are reported). Exit status 3
// when any CreateJob or CancelJob failed or a stream ended other than OK
// during the load. Results: docs/benchmarks.md, "foakd under load".
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "foak/v1/job_service.grpc.pb.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(int, watchers, 1000, "concurrent WatchJob streams");
ABSL_FLAG(int, watchers_per_job, 4, "streams per watched job (the seed jobs are watchers / this)");
ABSL_FLAG(double, rate, 200, "CreateJob calls per second, paced open loop");
ABSL_FLAG(double, duration_s, 60, "seconds of load");
ABSL_FLAG(double, probe_rate, 2, "CancelJob probes per second on watched jobs (delivery latency)");
ABSL_FLAG(int, connections, 4, "channels (TCP connections) the watch streams are spread over");
ABSL_FLAG(std::string, target, "", "HOST:PORT of a running foakd (default: start one)");
ABSL_FLAG(int, foakd_pid, 0, "with --target: foakd's pid, to sample its memory (0 = do not)");
ABSL_FLAG(std::string, foakd, FOAKD_BIN, "the foakd executable to start");
ABSL_FLAG(std::string, work_dir, "",
          "folder for foakd's data, the fake model and dataset (default: a new one under $TMPDIR "
          "or /tmp, removed at the end)");
ABSL_FLAG(std::string, json, "", "write the results here as JSON");

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using foak::v1::JobService;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Latencies in seconds; summarized as nearest-rank percentiles.
class Samples {
 public:
  void Add(double s) {
    std::lock_guard<std::mutex> lock(mu_);
    v_.push_back(s);
  }
  Json Summary() {
    std::lock_guard<std::mutex> lock(mu_);
    Json j = {{"count", v_.size()}};
    if (v_.empty()) return j;
    std::vector<double> v = v_;
    std::sort(v.begin(), v.end());
    auto pct = [&v](double p) {
      size_t i = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
      return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)] * 1000.0;
    };
    j["p50_ms"] = pct(50);
    j["p90_ms"] = pct(90);
    j["p99_ms"] = pct(99);
    j["max_ms"] = v.back() * 1000.0;
    return j;
  }

 private:
  std::mutex mu_;
  std::vector<double> v_;
};

// Calls by final status code.
class Codes {
 public:
  void Add(grpc::StatusCode code, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_[code];
    if (code != grpc::StatusCode::OK && first_error_.empty()) first_error_ = message;
  }
  int64_t Errors() {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t n = 0;
    for (const auto& [code, c] : count_) n += code == grpc::StatusCode::OK ? 0 : c;
    return n;
  }
  Json ToJson() {
    std::lock_guard<std::mutex> lock(mu_);
    Json j = Json::object();
    for (const auto& [code, c] : count_) j[CodeName(code)] = c;
    if (!first_error_.empty()) j["first_non_ok"] = first_error_;
    return j;
  }
  static std::string CodeName(grpc::StatusCode code) {
    static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                   "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                   "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                   "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                   "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    const int i = static_cast<int>(code);
    return i >= 0 && i <= 16 ? kNames[i] : absl::StrCat("CODE_", i);
  }

 private:
  std::mutex mu_;
  std::map<grpc::StatusCode, int64_t> count_;
  std::string first_error_;
};

// /proc/<pid>: VmRSS (KiB), Threads, and utime + stime (clock ticks).
struct ProcSample {
  int64_t rss_kib = -1;
  int64_t threads = -1;
  int64_t cpu_ticks = -1;
};

ProcSample ReadProc(int pid) {
  ProcSample s;
  const std::string base = pid == 0 ? "/proc/self" : absl::StrCat("/proc/", pid);
  if (absl::StatusOr<std::string> status = foak::ReadFileToString(base + "/status"); status.ok()) {
    for (const char* key : {"VmRSS:", "Threads:"}) {
      const size_t at = status->find(key);
      if (at == std::string::npos) continue;
      const size_t start = status->find_first_of("0123456789", at);
      const size_t end = status->find_first_not_of("0123456789", start);
      int64_t v = 0;
      if (absl::SimpleAtoi(status->substr(start, end - start), &v)) {
        (key[0] == 'V' ? s.rss_kib : s.threads) = v;
      }
    }
  }
  if (absl::StatusOr<std::string> stat = foak::ReadFileToString(base + "/stat"); stat.ok()) {
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    const size_t close = stat->rfind(')');
    std::vector<std::string> fields;
    size_t at = close + 2;
    while (at < stat->size() && fields.size() < 13) {
      const size_t sp = stat->find(' ', at);
      fields.push_back(stat->substr(at, sp - at));
      at = sp == std::string::npos ? stat->size() : sp + 1;
    }
    int64_t utime = 0, stime = 0;
    if (fields.size() == 13 && absl::SimpleAtoi(fields[11], &utime) &&
        absl::SimpleAtoi(fields[12], &stime)) {
      s.cpu_ticks = utime + stime;
    }
  }
  return s;
}

std::string LoadAverage() {
  return foak::ReadFileToString("/proc/loadavg").value_or("?");
}

class Bench;

// One WatchJob stream on the callback API: no thread of its own.
class Watcher : public grpc::ClientReadReactor<foak::v1::JobEvent> {
 public:
  // `probed`: a watch of the setup, whose job a probe may cancel (a reopened
  // watch is not: its CANCELLED, if any, is not a probe's).
  Watcher(Bench* bench, JobService::Stub* stub, std::string job_id, bool probed)
      : bench_(bench), stub_(stub), job_id_(std::move(job_id)), probed_(probed) {}
  void Start();
  void Cancel() { context_.TryCancel(); }
  const std::string& job_id() const { return job_id_; }
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Bench* bench_;
  JobService::Stub* stub_;
  std::string job_id_;
  bool probed_;
  grpc::ClientContext context_;
  foak::v1::WatchJobRequest request_;
  foak::v1::JobEvent event_;
  Clock::time_point opened_;
  bool first_ = true;
};

class Bench {
 public:
  int Run();

  // Watcher callbacks (gRPC's threads).
  void OnFirstEvent(bool initial, double open_s) {
    (initial ? watch_open_ : reopen_).Add(open_s);
    opened_.fetch_add(1);
  }
  void OnEvent(const std::string& job_id, bool probed, const foak::v1::JobEvent& event) {
    events_.fetch_add(1);
    if (probed && event.has_state() && event.state().state() == foak::v1::Job::CANCELLED) {
      std::lock_guard<std::mutex> lock(probe_mu_);
      if (auto it = probe_sent_.find(job_id); it != probe_sent_.end()) {
        delivery_.Add(Seconds(it->second, Clock::now()));
      }
    }
  }
  void OnWatchDone(Watcher* w, const grpc::Status& status);

 private:
  bool StartFoakd();
  void StopFoakd();
  foak::v1::JobSpec Spec(int64_t n) const;
  std::string NewestJob();
  void OpenWatch(const std::string& job_id, bool probed);
  void Reopener();
  void Sampler();
  void PaceCreates(Clock::time_point t0, int64_t total);
  void PaceProbes(Clock::time_point t0, int64_t total);
  void PrintAndWrite(Json& result);

  // Flags.
  int watchers_ = 0;
  double rate_ = 0;
  double duration_s_ = 0;
  std::string work_dir_;
  bool own_work_dir_ = false;
  bool started_foakd_ = false;
  pid_t pid_ = 0;
  std::string address_;
  std::string model_, train_;

  std::vector<std::shared_ptr<grpc::Channel>> watch_channels_;
  std::vector<std::unique_ptr<JobService::Stub>> watch_stubs_;
  std::unique_ptr<JobService::Stub> stub_;  // CreateJob and CancelJob, on a channel of their own
  std::atomic<int64_t> next_stub_{0};

  std::mutex jobs_mu_;
  std::vector<std::string> seeds_;
  std::string newest_job_;

  // Watches: owned here until OnDone; ended ones are reopened by Reopener().
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  std::map<Watcher*, std::unique_ptr<Watcher>> live_;
  std::vector<std::unique_ptr<Watcher>> ended_;
  int64_t reopen_pending_ = 0;
  bool reopening_ = true;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> opened_{0};
  std::atomic<int64_t> events_{0};
  std::atomic<int64_t> reopened_{0};
  Codes watch_end_load_, watch_end_stop_;

  std::mutex probe_mu_;
  std::map<std::string, Clock::time_point> probe_sent_;

  Samples create_, create_sched_, cancel_, delivery_, watch_open_, reopen_;
  Codes create_codes_, cancel_codes_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> max_in_flight_{0};
  std::atomic<int64_t> created_{0};
  double max_lag_s_ = 0;
  double last_send_s_ = 0;  // when the last CreateJob was sent, after t0

  // Sampler.
  std::atomic<bool> sampling_{true};
  std::mutex sample_mu_;
  Json series_ = Json::array();
  Clock::time_point bench_start_;
  Clock::time_point load_start_;
  std::atomic<bool> load_started_{false};
};

void Watcher::Start() {
  request_.set_id(job_id_);
  opened_ = Clock::now();
  stub_->async()->WatchJob(&context_, &request_, this);
  StartRead(&event_);
  StartCall();
}

void Watcher::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  if (first_) {
    first_ = false;
    bench_->OnFirstEvent(probed_, Seconds(opened_, Clock::now()));
  }
  bench_->OnEvent(job_id_, probed_, event_);
  StartRead(&event_);
}

void Watcher::OnDone(const grpc::Status& status) { bench_->OnWatchDone(this, status); }

void Bench::OnWatchDone(Watcher* w, const grpc::Status& status) {
  (stopping_.load() ? watch_end_stop_ : watch_end_load_).Add(status.error_code(),
                                                               status.error_message());
  std::lock_guard<std::mutex> lock(watch_mu_);
  auto it = live_.find(w);
  if (it == live_.end()) return;
  ended_.push_back(std::move(it->second));  // deleted by Reopener, off gRPC's thread
  live_.erase(it);
  if (!stopping_.load() && status.ok()) ++reopen_pending_;
  watch_cv_.notify_all();
}

void Bench::OpenWatch(const std::string& job_id, bool probed) {
  JobService::Stub* stub = watch_stubs_[next_stub_.fetch_add(1) % watch_stubs_.size()].get();
  auto w = std::make_unique<Watcher>(this, stub, job_id, probed);
  Watcher* raw = w.get();
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    live_[raw] = std::move(w);
  }
  raw->Start();
}

std::string Bench::NewestJob() {
  std::lock_guard<std::mutex> lock(jobs_mu_);
  return newest_job_;
}

// Keeps N streams open: a watch that ended because its job became final is
// reopened on the newest job (which replays its history first).
void Bench::Reopener() {
  std::unique_lock<std::mutex> lock(watch_mu_);
  while (true) {
    watch_cv_.wait(lock, [&] { return !reopening_ || reopen_pending_ > 0 || !ended_.empty(); });
    ended_.clear();
    if (!reopening_) return;
    while (reopen_pending_ > 0 && !stopping_.load()) {
      --reopen_pending_;
      lock.unlock();
      OpenWatch(NewestJob(), /*probed=*/false);
      reopened_.fetch_add(1);
      lock.lock();
    }
  }
}

void Bench::Sampler() {
  const long hz = sysconf(_SC_CLK_TCK);
  ProcSample prev_server = ReadProc(pid_), prev_client = ReadProc(0);
  Clock::time_point prev = Clock::now();
  while (sampling_.load()) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const Clock::time_point now = Clock::now();
    const ProcSample server = pid_ > 0 ? ReadProc(pid_) : ProcSample{};
    const ProcSample client = ReadProc(0);
    const double dt = Seconds(prev, now);
    Json s = {{"t_s", Seconds(bench_start_, now)},
              {"load_t_s", load_started_.load() ? Seconds(load_start_, now) : -1.0},
              {"created", created_.load()},
              {"events", events_.load()},
              {"in_flight", in_flight_.load()},
              {"client_cpu_pct", 100.0 * (client.cpu_ticks - prev_client.cpu_ticks) / hz / dt},
              {"client_threads", client.threads}};
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      s["watches_open"] = live_.size();
    }
    if (server.rss_kib >= 0) {
      s["rss_mib"] = server.rss_kib / 1024.0;
      s["threads"] = server.threads;
      s["foakd_cpu_pct"] = 100.0 * (server.cpu_ticks - prev_server.cpu_ticks) / hz / dt;
    }
    {
      std::lock_guard<std::mutex> lock(sample_mu_);
      series_.push_back(std::move(s));
    }
    prev = now;
    prev_server = server;
    prev_client = client;
  }
}

foak::v1::JobSpec Bench::Spec(int64_t n) const {
  foak::v1::JobSpec spec;
  spec.set_name(absl::StrCat("load-", n));
  spec.set_model(model_);
  spec.mutable_dataset()->set_train(train_);
  spec.mutable_hyperparameters()->set_max_steps(1);
  return spec;
}

// The i-th call leaves at t0 + i/R: open loop, so the calls in flight grow
// when foakd slows down instead of the rate dropping.
void Bench::PaceCreates(Clock::time_point t0, int64_t total) {
  for (int64_t i = 0; i < total; ++i) {
    const Clock::time_point due =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(i / rate_));
    std::this_thread::sleep_until(due);
    const Clock::time_point sent = Clock::now();
    max_lag_s_ = std::max(max_lag_s_, Seconds(due, sent));
    last_send_s_ = Seconds(t0, sent);
    struct Call {
      grpc::ClientContext context;
      foak::v1::CreateJobRequest request;
      foak::v1::Job job;
    };
    auto* call = new Call;
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    *call->request.mutable_spec() = Spec(i);
    const int64_t n = in_flight_.fetch_add(1) + 1;
    int64_t m = max_in_flight_.load();
    while (n > m && !max_in_flight_.compare_exchange_weak(m, n)) {
    }
    stub_->async()->CreateJob(&call->context, &call->request, &call->job,
                              [this, call, due, sent](grpc::Status status) {
                                const Clock::time_point done = Clock::now();
                                create_.Add(Seconds(sent, done));
                                create_sched_.Add(Seconds(due, done));
                                create_codes_.Add(status.error_code(), status.error_message());
                                if (status.ok()) {
                                  created_.fetch_add(1);
                                  std::lock_guard<std::mutex> lock(jobs_mu_);
                                  newest_job_ = call->job.id();
                                }
                                in_flight_.fetch_sub(1);
                                delete call;
                              });
  }
}

void Bench::PaceProbes(Clock::time_point t0, int64_t total) {
  const double rate = absl::GetFlag(FLAGS_probe_rate);
  for (int64_t i = 0; i < total && i < static_cast<int64_t>(seeds_.size()); ++i) {
    std::this_thread::sleep_until(
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>((i + 0.5) / rate)));
    struct Call {
      grpc::ClientContext context;
      foak::v1::CancelJobRequest request;
      foak::v1::Job job;
    };
    auto* call = new Call;
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    call->request.set_id(seeds_[i]);
    const Clock::time_point sent = Clock::now();
    {
      std::lock_guard<std::mutex> lock(probe_mu_);
      probe_sent_[seeds_[i]] = sent;
    }
    in_flight_.fetch_add(1);
    stub_->async()->CancelJob(&call->context, &call->request, &call->job,
                              [this, call, sent](grpc::Status status) {
                                cancel_.Add(Seconds(sent, Clock::now()));
                                cancel_codes_.Add(status.error_code(), status.error_message());
                                in_flight_.fetch_sub(1);
                                delete call;
                              });
  }
}

bool Bench::StartFoakd() {
  // The fake worker holds the one CPU slot until foakd stops it.
  const std::string worker = foak::JoinPath(work_dir_, "fake-worker.sh");
  if (!foak::WriteFileAtomically(worker, "#!/bin/sh\n# foakd_load_bench: holds the CPU slot\n"
                                         "exec sleep 100000\n")
           .ok() ||
      chmod(worker.c_str(), 0755) != 0) {
    std::fprintf(stderr, "foakd_load_bench: cannot write %s\n", worker.c_str());
    return false;
  }
  const std::string data = foak::JoinPath(work_dir_, "foakd-data");
  const std::string port_file = foak::JoinPath(work_dir_, "ports.txt");
  std::vector<std::string> args = {absl::GetFlag(FLAGS_foakd), "--listen=127.0.0.1:0",
                                   "--metrics_listen=127.0.0.1:0", "--data_dir=" + data,
                                   "--gpus=none", "--cpu_slots=1", "--grace_period_s=2",
                                   "--worker=" + worker, "--port_file=" + port_file};
  const std::string log = foak::JoinPath(work_dir_, "foakd.log");
  pid_ = fork();
  if (pid_ == 0) {
    if (freopen(log.c_str(), "a", stderr) == nullptr) _exit(126);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<std::string> ports = foak::ReadFileToString(port_file);
    if (ports.ok() && ports->find("metrics=") != std::string::npos) {
      address_ = absl::StrCat("127.0.0.1:", std::stoi(ports->substr(ports->find("grpc=") + 5)));
      started_foakd_ = true;
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::fprintf(stderr, "foakd_load_bench: foakd did not start; its log (%s):\n%s\n", log.c_str(),
               foak::ReadFileToString(log).value_or("").c_str());
  return false;
}

int Bench::Run() {
  watchers_ = absl::GetFlag(FLAGS_watchers);
  rate_ = absl::GetFlag(FLAGS_rate);
  duration_s_ = absl::GetFlag(FLAGS_duration_s);
  const int per_job = std::max(1, absl::GetFlag(FLAGS_watchers_per_job));
  if (watchers_ < 0 || rate_ <= 0 || duration_s_ <= 0 || absl::GetFlag(FLAGS_connections) < 1) {
    std::fprintf(stderr, "foakd_load_bench: need --watchers >= 0, --rate > 0, --duration_s > 0, "
                         "--connections >= 1\n");
    return 2;
  }
  bench_start_ = Clock::now();
  work_dir_ = absl::GetFlag(FLAGS_work_dir);
  if (work_dir_.empty()) {
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = foak::JoinPath(tmp != nullptr && *tmp ? tmp : "/tmp", "foakd-load-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("foakd_load_bench: mkdtemp");
      return 1;
    }
    work_dir_ = tmpl;
    own_work_dir_ = true;
  }
  // The smallest inputs foakd accepts (tests/testing/fake_job_inputs.h): its
  // checks never load the model.
  model_ = foak::JoinPath(work_dir_, "model");
  train_ = foak::JoinPath(work_dir_, "train.jsonl");
  if (!foak::MakeDirs(model_).ok() ||
      !foak::WriteFileAtomically(foak::JoinPath(model_, "config.json"), "{}").ok() ||
      !foak::WriteFileAtomically(train_, "{\"text\": \"hi\"}\n").ok()) {
    std::fprintf(stderr, "foakd_load_bench: cannot write the fake inputs under %s\n",
                 work_dir_.c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_target).empty()) {
    if (!StartFoakd()) return 1;
  } else {
    address_ = absl::GetFlag(FLAGS_target);
    pid_ = absl::GetFlag(FLAGS_foakd_pid);
  }
  std::printf("foakd_load_bench: foakd at %s (pid %d), %d watchers, %.0f CreateJob/s for %.0f s; "
              "load average %s",
              address_.c_str(), static_cast<int>(pid_), watchers_, rate_, duration_s_,
              LoadAverage().c_str());
  std::fflush(stdout);

  // Separate TCP connections: a local subchannel pool per channel.
  auto channel = [this](int i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("foak.load_bench_channel", i);
    return grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
  };
  stub_ = JobService::NewStub(channel(0));
  for (int i = 0; i < absl::GetFlag(FLAGS_connections); ++i) {
    watch_channels_.push_back(channel(i + 1));
    watch_stubs_.push_back(JobService::NewStub(watch_channels_.back()));
  }
  const ProcSample at_start = pid_ > 0 ? ReadProc(pid_) : ProcSample{};
  std::thread sampler([this] { Sampler(); });

  // 1. Seed jobs, back to back.
  const int seeds = (watchers_ + per_job - 1) / per_job;
  Codes seed_codes;
  for (int i = 0; i < seeds; ++i) {
    grpc::ClientContext context;
    foak::v1::CreateJobRequest request;
    *request.mutable_spec() = Spec(-1 - i);
    foak::v1::Job job;
    const grpc::Status s = stub_->CreateJob(&context, request, &job);
    seed_codes.Add(s.error_code(), s.error_message());
    if (!s.ok()) {
      std::fprintf(stderr, "foakd_load_bench: seed CreateJob failed: %s\n",
                   s.error_message().c_str());
      break;
    }
    seeds_.push_back(job.id());
  }
  if (seeds_.size() != static_cast<size_t>(seeds)) {
    sampling_ = false;
    sampler.join();
    StopFoakd();
    return 1;
  }
  newest_job_ = seeds_.empty() ? "" : seeds_.back();
  // The first seed holds the CPU slot (its fake worker sleeps); probes
  // cancel queued ones, the newest first.
  std::reverse(seeds_.begin(), seeds_.end());
  if (!seeds_.empty()) seeds_.pop_back();

  // 2. N streams.
  std::thread reopener([this] { Reopener(); });
  const Clock::time_point open_start = Clock::now();
  for (int i = 0; i < watchers_; ++i) {
    OpenWatch(seeds_.empty() ? newest_job_ : seeds_[static_cast<size_t>(i / per_job) % seeds_.size()],
              /*probed=*/true);
  }
  while (opened_.load() < watchers_ && Seconds(open_start, Clock::now()) < 60) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double open_all_s = Seconds(open_start, Clock::now());
  std::this_thread::sleep_for(std::chrono::seconds(2));  // settle
  const ProcSample before_load = pid_ > 0 ? ReadProc(pid_) : ProcSample{};
  std::printf("  %lld of %d streams open in %.2f s; foakd RSS %.1f MiB, %lld threads\n",
              static_cast<long long>(opened_.load()), watchers_, open_all_s,
              before_load.rss_kib / 1024.0, static_cast<long long>(before_load.threads));
  std::fflush(stdout);

  // 3. Load.
  const int64_t total = static_cast<int64_t>(std::llround(rate_ * duration_s_));
  const int64_t probes =
      static_cast<int64_t>(std::llround(absl::GetFlag(FLAGS_probe_rate) * duration_s_));
  const double client_cpu0 = ReadProc(0).cpu_ticks, server_cpu0 = before_load.cpu_ticks;
  load_start_ = Clock::now() + std::chrono::milliseconds(50);
  load_started_ = true;
  std::thread prober([this, probes] { PaceProbes(load_start_, probes); });
  PaceCreates(load_start_, total);
  prober.join();
  const double send_s = Seconds(load_start_, Clock::now());
  for (int i = 0; i < 600 && in_flight_.load() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // last deliveries
  const double load_s = Seconds(load_start_, Clock::now());
  const long hz = sysconf(_SC_CLK_TCK);
  const ProcSample after_load = pid_ > 0 ? ReadProc(pid_) : ProcSample{};
  const double client_cpu_s = (ReadProc(0).cpu_ticks - client_cpu0) / static_cast<double>(hz);
  const double server_cpu_s = (after_load.cpu_ticks - server_cpu0) / static_cast<double>(hz);
  int64_t open_at_end = 0;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    open_at_end = static_cast<int64_t>(live_.size());
  }

  // 4. Stop foakd under the open streams (or, with --target, cancel them).
  stopping_ = true;
  const Clock::time_point stop_start = Clock::now();
  if (started_foakd_) {
    kill(pid_, SIGTERM);
  } else {
    std::lock_guard<std::mutex> lock(watch_mu_);
    for (auto& [raw, w] : live_) w->Cancel();
  }
  for (int i = 0; i < 3000; ++i) {
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      if (live_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double streams_ended_s = Seconds(stop_start, Clock::now());
  sampling_ = false;
  sampler.join();
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    for (auto& [raw, w] : live_) w->Cancel();  // any left (should be none)
  }
  StopFoakd();
  const double stop_s = Seconds(stop_start, Clock::now());
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    reopening_ = false;
    watch_cv_.notify_all();
  }
  reopener.join();

  Json result;
  result["machine"] = {{"cpus", std::thread::hardware_concurrency()},
                       {"load_average_at_end", LoadAverage()}};
  result["config"] = {{"watchers", watchers_},
                      {"watchers_per_job", per_job},
                      {"seed_jobs", seeds},
                      {"rate_per_s", rate_},
                      {"duration_s", duration_s_},
                      {"probe_rate_per_s", absl::GetFlag(FLAGS_probe_rate)},
                      {"connections", absl::GetFlag(FLAGS_connections)},
                      {"foakd", started_foakd_ ? "started: --gpus=none --cpu_slots=1, fake worker"
                                               : address_}};
  result["create"] = create_.Summary();
  result["create"]["from_due_time"] = create_sched_.Summary();
  result["create"]["codes"] = create_codes_.ToJson();
  result["create"]["sent"] = total;
  result["create"]["sent_over_s"] = last_send_s_;
  result["create"]["achieved_rate_per_s"] = total / std::max(1e-9, last_send_s_) ;
  result["create"]["max_pacing_lag_ms"] = max_lag_s_ * 1000;
  result["create"]["max_in_flight"] = max_in_flight_.load();
  result["cancel_probe"] = cancel_.Summary();
  result["cancel_probe"]["codes"] = cancel_codes_.ToJson();
  result["watch"] = {{"open_all_s", open_all_s},
                     {"opened", opened_.load()},
                     {"reopened", reopened_.load()},
                     {"open_at_end_of_load", open_at_end},
                     {"events_received", events_.load()},
                     {"open_to_first_event", watch_open_.Summary()},
                     {"reopen_to_first_event", reopen_.Summary()},
                     {"delivery_from_cancel_sent", delivery_.Summary()},
                     {"ended_during_load", watch_end_load_.ToJson()},
                     {"ended_at_stop", watch_end_stop_.ToJson()},
                     {"all_ended_after_sigterm_s", streams_ended_s}};
  result["client"] = {{"cpu_s", client_cpu_s},
                      {"cpu_pct_of_one_core", 100 * client_cpu_s / load_s}};
  result["load_s"] = load_s;
  result["send_s"] = send_s;
  result["foakd_stop_s"] = stop_s;
  if (at_start.rss_kib >= 0) {
    double peak = 0, mid = -1;
    int64_t peak_threads = 0;
    {
      std::lock_guard<std::mutex> lock(sample_mu_);
      for (const Json& s : series_) {
        if (!s.contains("rss_mib")) continue;
        const double rss = s["rss_mib"].get<double>();
        peak = std::max(peak, rss);
        peak_threads = std::max(peak_threads, s["threads"].get<int64_t>());
        const double t = s["load_t_s"].get<double>();
        if (t >= duration_s_ / 2 && mid < 0) mid = rss;
      }
    }
    result["foakd"] = {{"rss_start_mib", at_start.rss_kib / 1024.0},
                       {"rss_before_load_mib", before_load.rss_kib / 1024.0},
                       {"rss_peak_mib", peak},
                       {"rss_mid_load_mib", mid},
                       {"rss_end_of_load_mib", after_load.rss_kib / 1024.0},
                       {"rss_growth_last_half_mib", after_load.rss_kib / 1024.0 - mid},
                       {"threads_start", at_start.threads},
                       {"threads_before_load", before_load.threads},
                       {"threads_peak", peak_threads},
                       {"threads_end_of_load", after_load.threads},
                       {"cpu_s", server_cpu_s},
                       {"cpu_pct_of_one_core", 100 * server_cpu_s / load_s}};
  }
  {
    std::lock_guard<std::mutex> lock(sample_mu_);
    result["series"] = series_;
  }
  result["errors"] = create_codes_.Errors() + cancel_codes_.Errors() + watch_end_load_.Errors();
  PrintAndWrite(result);
  if (own_work_dir_) foak::RemoveTree(work_dir_).IgnoreError();
  // A failed call is a finding, not noise: the exit status says so (the
  // figures are printed either way).
  return result["errors"].get<int64_t>() == 0 ? 0 : 3;
}

void Bench::StopFoakd() {
  if (!started_foakd_ || pid_ <= 0) return;
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 3000; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "foakd_load_bench: foakd did not stop in 30 s after SIGTERM; killing it\n");
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = 0;
}

std::string Ms(const Json& summary, const char* key) {
  if (!summary.contains(key)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", summary[key].get<double>());
  return buf;
}

void Bench::PrintAndWrite(Json& r) {
  auto row = [](const char* name, const Json& s) {
    std::printf("  %-34s %7lld %9s %9s %9s %9s\n", name,
                static_cast<long long>(s.value("count", int64_t{0})), Ms(s, "p50_ms").c_str(),
                Ms(s, "p90_ms").c_str(), Ms(s, "p99_ms").c_str(), Ms(s, "max_ms").c_str());
  };
  std::printf("\nlatency                               count   p50 ms    p90 ms    p99 ms    max ms\n");
  row("CreateJob (from send)", r["create"]);
  row("CreateJob (from due time)", r["create"]["from_due_time"]);
  row("CancelJob probe", r["cancel_probe"]);
  row("watch delivery (cancel sent->event)", r["watch"]["delivery_from_cancel_sent"]);
  row("watch open -> first event (setup)", r["watch"]["open_to_first_event"]);
  row("watch reopen -> first event (load)", r["watch"]["reopen_to_first_event"]);
  std::printf("\nCreateJob: %lld sent over %.1f s (%.1f/s), max pacing lag %.1f ms, max in flight %lld; "
              "codes %s\n",
              static_cast<long long>(r["create"]["sent"].get<int64_t>()),
              r["create"]["sent_over_s"].get<double>(), r["create"]["achieved_rate_per_s"].get<double>(),
              r["create"]["max_pacing_lag_ms"].get<double>(),
              static_cast<long long>(r["create"]["max_in_flight"].get<int64_t>()),
              r["create"]["codes"].dump().c_str());
  std::printf("CancelJob probes: codes %s\n", r["cancel_probe"]["codes"].dump().c_str());
  const Json& w = r["watch"];
  std::printf("watches: %lld opened in %.2f s, %lld reopened, %lld open at the end of the load, "
              "%lld events received\n  ended during load %s; at SIGTERM %s (all ended %.2f s "
              "after it)\n",
              static_cast<long long>(w["opened"].get<int64_t>()), w["open_all_s"].get<double>(),
              static_cast<long long>(w["reopened"].get<int64_t>()),
              static_cast<long long>(w["open_at_end_of_load"].get<int64_t>()),
              static_cast<long long>(w["events_received"].get<int64_t>()),
              w["ended_during_load"].dump().c_str(), w["ended_at_stop"].dump().c_str(),
              w["all_ended_after_sigterm_s"].get<double>());
  if (r.contains("foakd")) {
    const Json& f = r["foakd"];
    std::printf("foakd RSS MiB: start %.1f, with streams %.1f, peak %.1f, mid-load %.1f, end %.1f "
                "(last-half growth %+.1f)\nfoakd threads: start %lld, with streams %lld, peak "
                "%lld, end %lld\nCPU during load: foakd %.0f%%, client %.0f%% of one core\n",
                f["rss_start_mib"].get<double>(), f["rss_before_load_mib"].get<double>(),
                f["rss_peak_mib"].get<double>(), f["rss_mid_load_mib"].get<double>(),
                f["rss_end_of_load_mib"].get<double>(), f["rss_growth_last_half_mib"].get<double>(),
                static_cast<long long>(f["threads_start"].get<int64_t>()),
                static_cast<long long>(f["threads_before_load"].get<int64_t>()),
                static_cast<long long>(f["threads_peak"].get<int64_t>()),
                static_cast<long long>(f["threads_end_of_load"].get<int64_t>()),
                f["cpu_pct_of_one_core"].get<double>(), r["client"]["cpu_pct_of_one_core"].get<double>());
  } else {
    std::printf("CPU during load: client %.0f%% of one core\n",
                r["client"]["cpu_pct_of_one_core"].get<double>());
  }
  std::printf("foakd stopped %.2f s after SIGTERM; errors %lld; load average %s",
              r["foakd_stop_s"].get<double>(), static_cast<long long>(r["errors"].get<int64_t>()),
              LoadAverage().c_str());
  const std::string path = absl::GetFlag(FLAGS_json);
  if (!path.empty()) {
    absl::Status s = foak::WriteFileAtomically(path, r.dump(2) + "\n");
    if (!s.ok()) std::fprintf(stderr, "foakd_load_bench: %s\n", std::string(s.message()).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "foakd under load: N WatchJob streams and CreateJob at R/s for D seconds (issue 9).\n"
      "  foak_foakd_load_bench [--watchers 1000] [--rate 200] [--duration_s 60] [--json PATH]");
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  Bench bench;
  return bench.Run();
}

// The JobManager's decisions with the FakeLauncher (no processes): what a
// launch gets (job file, environment, token), worker reports moving a job to
// RUNNING and recording progress and checkpoints, exits mapped to states,
// restarts up to max_restarts, cancel in each state, reconciliation after a
// foakd restart, worker authorisation, watchers woken by new events, a
// benchmark job's rows stored as "bench" events that advance its progress,
// and data-parallel gangs: one rank per GPU or per CPU process, torchrun's
// environment, rank 0 driving the job while other ranks report only memory.
#include "server/domain/job_manager.h"

#include <algorithm>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/metrics/server_metrics.h"
#include "server/launch/fake_launcher.h"
#include "server/storage/sqlite_job_store.h"
#include "tests/testing/fake_job_inputs.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const testing::FakeJobInputs inputs = testing::WriteFakeJobInputs(dir_.path());
    model_ = inputs.model;
    train_ = inputs.train;
    worker_ = JoinPath(dir_.path(), "foak-worker");
    ASSERT_TRUE(WriteFileAtomically(worker_, "#!/bin/sh\n").ok());
    ASSERT_EQ(chmod(worker_.c_str(), 0755), 0);
    SqliteJobStoreOptions so;
    so.path = JoinPath(dir_.path(), "foakd.db");
    store_ = OpenSqliteJobStore(so).value();
    FileStoreOptions fo;
    fo.root = JoinPath(dir_.path(), "files");
    files_ = FileStore::Open(fo).value();
    tokens_ = WorkerTokens::WithKey(std::string(32, 'k'));
    Open({});
  }

  void Open(std::vector<int> gpus, bool cluster = false) {
    manager_.reset();
    JobManagerOptions o;
    o.data_dir = JoinPath(dir_.path(), "data");
    o.worker_path = worker_;
    o.stall_check_interval_ms = 0;  // the tests call CheckStalls themselves
    o.worker_env = worker_env_;
    if (fake_now_ms_ > 0) o.now_ms = [this] { return fake_now_ms_; };
    SchedulerOptions s;
    s.gpu_ids = std::move(gpus);
    s.cluster = cluster;
    manager_ = JobManager::Create(o, store_.get(), files_.get(), tokens_.get(), &metrics_, s,
                                  [this](Launcher::Callbacks cb) -> absl::StatusOr<std::unique_ptr<Launcher>> {
                                    auto l = std::make_unique<FakeLauncher>(std::move(cb));
                                    l->SetAutoFinishOnCancel(false);
                                    launcher_ = l.get();
                                    return std::unique_ptr<Launcher>(std::move(l));
                                  })
                   .value();
    manager_->SetCoordinatorAddress("127.0.0.1:7070");
    ASSERT_TRUE(manager_->Start().ok());
  }

  std::string Spec(const std::string& name, int priority = 0, int gpus = 0, int max_restarts = 0,
                   int processes = 0) {
    Json spec = {{"name", name},
                 {"model", model_},
                 {"dataset", {{"train", train_}}},
                 {"priority", priority},
                 {"max_restarts", max_restarts},
                 {"resources", {{"gpus", gpus}}}};
    if (processes > 0) spec["resources"]["processes"] = processes;
    return spec.dump();
  }
  std::string CreateId(const std::string& spec) {
    absl::StatusOr<JobView> v = manager_->CreateJob(spec, "", false);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? v->record.id : "";
  }
  JobState State(const std::string& id) { return manager_->GetJob(id).value().record.state; }
  std::string Env(const LaunchRequest& r, const std::string& key) { return Env(r.ranks[0], key); }
  std::string Env(const RankSpec& rank, const std::string& key) {
    for (const auto& [k, v] : rank.env) {
      if (k == key) return v;
    }
    return "<unset>";
  }
  // Every rank of a launch: torchrun's variables for rank i of one node, one
  // job file and rendezvous port for all, its own log.
  void ExpectGang(const LaunchRequest& r, const std::string& visible_gpus) {
    const std::string world = absl::StrCat(r.ranks.size());
    for (size_t i = 0; i < r.ranks.size(); ++i) {
      const RankSpec& rank = r.ranks[i];
      SCOPED_TRACE(absl::StrCat("rank ", i));
      EXPECT_EQ(Env(rank, "RANK"), absl::StrCat(i));
      EXPECT_EQ(Env(rank, "LOCAL_RANK"), absl::StrCat(i));
      EXPECT_EQ(Env(rank, "WORLD_SIZE"), world);
      EXPECT_EQ(Env(rank, "LOCAL_WORLD_SIZE"), world);
      EXPECT_EQ(Env(rank, "GROUP_RANK"), "0");
      EXPECT_EQ(Env(rank, "CUDA_VISIBLE_DEVICES"), visible_gpus);
      EXPECT_EQ(Env(rank, "MASTER_ADDR"), "127.0.0.1");
      EXPECT_EQ(Env(rank, "MASTER_PORT"), Env(r.ranks[0], "MASTER_PORT"));
      EXPECT_EQ(Env(rank, "FOAK_JOB_ID"), r.job_id);
      EXPECT_EQ(Env(rank, "FOAK_JOB_ATTEMPT"), absl::StrCat(r.attempt));
      EXPECT_EQ(Env(rank, "FOAK_COORDINATOR"), "127.0.0.1:7070");
      EXPECT_TRUE(manager_->AuthorizeWorker(r.job_id, Env(rank, "FOAK_JOB_TOKEN")).ok());
      EXPECT_EQ(rank.argv, r.ranks[0].argv);
      EXPECT_EQ(rank.log_path, JoinPath(JoinPath(manager_->JobDir(r.job_id), "logs"),
                                        absl::StrCat("attempt-", r.attempt, "-rank-", i, ".log")));
    }
    EXPECT_NE(Env(r.ranks[0], "MASTER_PORT"), "0");
    EXPECT_EQ(r.ranks[0].argv.back(),
              JoinPath(manager_->JobDir(r.job_id), absl::StrCat("job-", r.attempt, ".json")));
  }
  WorkerReportInput Report(const std::string& id, WorkerReportInput::Kind kind, int64_t attempt = 0) {
    WorkerReportInput r;
    r.job_id = id;
    r.kind = kind;
    r.attempt = attempt;
    return r;
  }

  int64_t fake_now_ms_ = 0;  // > 0: the manager's clock (set before Open)
  std::vector<std::pair<std::string, std::string>> worker_env_;  // foakd's TLS variables
  testing::TempDir dir_{"job_manager"};
  std::string model_, train_, worker_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<FileStore> files_;
  std::unique_ptr<WorkerTokens> tokens_;
  ServerMetrics metrics_;
  std::unique_ptr<JobManager> manager_;
  FakeLauncher* launcher_ = nullptr;
};

TEST_F(JobManagerTest, LaunchGetsJobFileEnvironmentAndToken) {
  const std::string id = CreateId(Spec("a"));
  EXPECT_EQ(State(id), JobState::kStarting);
  ASSERT_EQ(launcher_->launches().size(), 1u);
  const LaunchRequest r = launcher_->launches()[0];
  EXPECT_EQ(r.job_id, id);
  ASSERT_EQ(r.ranks.size(), 1u);
  EXPECT_EQ(r.ranks[0].argv[0], worker_);
  EXPECT_EQ(r.ranks[0].argv[1], "train");
  Json job = Json::parse(ReadFileToString(r.ranks[0].argv[3]).value());
  EXPECT_EQ(job["device"], "cpu");
  EXPECT_EQ(job["output_dir"], JoinPath(manager_->JobDir(id), "output"));
  EXPECT_FALSE(job.contains("resources"));
  EXPECT_EQ(Env(r, "CUDA_VISIBLE_DEVICES"), "");
  EXPECT_EQ(Env(r, "RANK"), "0");
  EXPECT_EQ(Env(r, "WORLD_SIZE"), "1");
  ExpectGang(r, "");  // a gang of one
  EXPECT_EQ(Env(r, "FOAK_COORDINATOR"), "127.0.0.1:7070");
  EXPECT_EQ(Env(r, "FOAK_JOB_ID"), id);
  EXPECT_TRUE(manager_->AuthorizeWorker(id, Env(r, "FOAK_JOB_TOKEN")).ok());
  EXPECT_NE(Env(r, "MASTER_PORT"), "0");
  EXPECT_EQ(manager_->GetJob(id).value().output_dir, JoinPath(manager_->JobDir(id), "output"));
}

// foakd's worker environment (with TLS: FOAK_COORDINATOR_TLS_CA, ...,
// FOAK_COORDINATOR_TLS_SERVER_NAME) reaches every rank of a local launch and
// a Kubernetes gang's pod environment alike.
TEST_F(JobManagerTest, FoakdsWorkerEnvironmentReachesEveryLaunch) {
  worker_env_ = {{"FOAK_COORDINATOR_TLS_CA", "/shared/tls/ca.pem"},
                 {"FOAK_COORDINATOR_TLS_SERVER_NAME", "foakd.example"}};
  Open({0, 1});
  const std::string local = CreateId(Spec("local", 0, /*gpus=*/2));
  ASSERT_EQ(launcher_->launches().size(), 1u);
  const LaunchRequest r = launcher_->launches()[0];
  ASSERT_EQ(r.ranks.size(), 2u);
  for (const RankSpec& rank : r.ranks) {
    EXPECT_EQ(Env(rank, "FOAK_COORDINATOR_TLS_CA"), "/shared/tls/ca.pem");
    EXPECT_EQ(Env(rank, "FOAK_COORDINATOR_TLS_SERVER_NAME"), "foakd.example");
  }
  ASSERT_TRUE(launcher_->Succeed(local).ok());

  Open({}, /*cluster=*/true);
  CreateId(Spec("pods", 0, /*gpus=*/1));
  ASSERT_EQ(launcher_->launches().size(), 1u);
  const GangSpec gang = launcher_->launches()[0].gang;
  auto has = [&](const std::string& key, const std::string& value) {
    return std::find(gang.env.begin(), gang.env.end(), std::make_pair(key, value)) !=
           gang.env.end();
  };
  EXPECT_TRUE(has("FOAK_COORDINATOR_TLS_CA", "/shared/tls/ca.pem"));
  EXPECT_TRUE(has("FOAK_COORDINATOR_TLS_SERVER_NAME", "foakd.example"));
}

TEST_F(JobManagerTest, ReportsDriveStateProgressAndCheckpoints) {
  const std::string id = CreateId(Spec("a"));
  const std::string token = Env(launcher_->launches()[0], "FOAK_JOB_TOKEN");
  EXPECT_EQ(manager_->AuthorizeWorker(id, "").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(manager_->AuthorizeWorker(id, "nope").code(), absl::StatusCode::kPermissionDenied);
  const std::string other = CreateId(Spec("b"));  // queued behind a (one CPU slot)
  EXPECT_EQ(manager_->AuthorizeWorker(other, token).code(), absl::StatusCode::kPermissionDenied);

  WorkerReportInput started = Report(id, WorkerReportInput::Kind::kStarted);
  started.max_steps = 10;
  started.device = "cpu";
  ASSERT_TRUE(manager_->OnWorkerReport(started).ok());
  EXPECT_EQ(State(id), JobState::kRunning);
  WorkerReportInput m = Report(id, WorkerReportInput::Kind::kMetrics);
  m.step = 5;
  m.max_steps = 10;
  m.loss = 1.5;
  m.tokens = 100;
  m.tokens_per_second = 50;
  ASSERT_TRUE(manager_->OnWorkerReport(m).ok());
  WorkerReportInput c = Report(id, WorkerReportInput::Kind::kCheckpoint);
  c.step = 5;
  c.checkpoint_path = "/x/checkpoint-5";
  ASSERT_TRUE(manager_->OnWorkerReport(c).ok());
  JobView v = manager_->GetJob(id).value();
  ASSERT_TRUE(v.progress.has_value());
  EXPECT_EQ(v.progress->step, 5);
  EXPECT_EQ(v.progress->max_steps, 10);
  EXPECT_DOUBLE_EQ(v.progress->loss, 1.5);
  EXPECT_EQ(manager_->ListCheckpoints(id).value().at(0).path, "/x/checkpoint-5");
  EXPECT_NE(metrics_.Render().find("foak_job_step{job_id=\"" + id + "\"} 5"), std::string::npos);
  // A report from another attempt is refused.
  EXPECT_EQ(manager_->OnWorkerReport(Report(id, WorkerReportInput::Kind::kMetrics, 7)).code(),
            absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(launcher_->EmitLog(id, 0, "hello from the worker").ok());
  ASSERT_TRUE(launcher_->Succeed(id).ok());
  EXPECT_EQ(State(id), JobState::kSucceeded);
  std::vector<std::string> kinds;
  const std::vector<JobEvent> events = manager_->ListEvents(id, 0, 100).value();
  for (const JobEvent& e : events) kinds.push_back(e.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"state", "state", "state", "metrics", "checkpoint",
                                             "log", "state"}));
  EXPECT_EQ(State(other), JobState::kStarting) << "the next job starts when the slot frees";
  EXPECT_EQ(manager_->OnWorkerReport(m).code(), absl::StatusCode::kFailedPrecondition)
      << "a finished job takes no reports";
}

// foak_job_step_seconds: each logged step's window (tokens / tokens_per_second
// seconds) over the steps it covers; foak_jobs_finished_total counts the
// final state.
TEST_F(JobManagerTest, StepTimeAndFinishedJobsReachPrometheus) {
  const std::string id = CreateId(Spec("a"));
  WorkerReportInput started = Report(id, WorkerReportInput::Kind::kStarted);
  started.max_steps = 20;
  started.start_step = 4;  // resumed: the first window covers steps 5..8
  started.device = "cpu";
  ASSERT_TRUE(manager_->OnWorkerReport(started).ok());
  auto step = [&](int64_t n, int64_t tokens, double tokens_per_second) {
    WorkerReportInput m = Report(id, WorkerReportInput::Kind::kMetrics);
    m.step = n;
    m.max_steps = 20;
    m.tokens = tokens;
    m.tokens_per_second = tokens_per_second;
    return manager_->OnWorkerReport(m);
  };
  const std::string series = "foak_job_step_seconds{job_id=\"" + id + "\"} ";
  ASSERT_TRUE(step(8, 400, 100).ok());  // 4 s over 4 steps
  EXPECT_NE(metrics_.Render().find(series + "1\n"), std::string::npos) << metrics_.Render();
  ASSERT_TRUE(step(12, 600, 200).ok());  // 3 s over 4 steps
  EXPECT_NE(metrics_.Render().find(series + "0.75\n"), std::string::npos) << metrics_.Render();
  ASSERT_TRUE(step(12, 600, 0).ok());  // no step and no rate: the last value stays
  EXPECT_NE(metrics_.Render().find(series + "0.75\n"), std::string::npos) << metrics_.Render();

  EXPECT_NE(metrics_.Render().find("foak_jobs_finished_total{state=\"FAILED\"} 0"), std::string::npos);
  ASSERT_TRUE(launcher_->Fail(id, "WorkerError", /*retryable=*/false).ok());
  EXPECT_EQ(State(id), JobState::kFailed);
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("foak_jobs_finished_total{state=\"FAILED\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("foak_jobs_finished_total{state=\"SUCCEEDED\"} 0"), std::string::npos) << text;
}

TEST_F(JobManagerTest, BenchRowsAreStoredAsEventsAndAdvanceProgress) {
  const std::string id = CreateId(Json{{"name", "bench"},
                                       {"model", model_},
                                       {"bench", {{"kernel_sets", {"none", "foak", "all"}}}}}
                                      .dump());
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(launcher_->launches().size(), 1u) << manager_->GetJob(id).value().record.message;
  Json job = Json::parse(ReadFileToString(launcher_->launches()[0].ranks[0].argv[3]).value());
  EXPECT_FALSE(job.contains("dataset"));
  EXPECT_EQ(job["bench"]["kernel_sets"].size(), 3u);

  WorkerReportInput started = Report(id, WorkerReportInput::Kind::kStarted);
  started.max_steps = 3;  // the rows planned
  started.device = "cpu";
  ASSERT_TRUE(manager_->OnWorkerReport(started).ok());
  EXPECT_EQ(State(id), JobState::kRunning);
  EXPECT_EQ(manager_->GetJob(id).value().record.message, "benchmarking on cpu");
  auto row = [&](int32_t index, const std::string& kernels) {
    WorkerReportInput r = Report(id, WorkerReportInput::Kind::kBench);
    BenchResult& b = r.bench;
    b.index = index;
    b.total = 3;
    b.model = "debug";
    b.method = "full";
    b.kernels = kernels;
    b.batch = 2;
    b.seq = 64;
    b.precision = "bf16";
    b.status = "ok";
    b.tokens_per_second = 1000.0 * (index + 1);
    b.ms_per_step = 12.5;
    b.peak_allocated_bytes = int64_t{3} << 20;
    b.loss_first = 5.5;
    b.loss_last = 5.25;
    b.warmup_steps = 1;
    b.steps = 2;
    b.device = "cpu";
    return r;
  };
  ASSERT_TRUE(manager_->OnWorkerReport(row(0, "none")).ok());
  WorkerReportInput second = row(1, "foak");
  second.bench.pct_change = 100.0;
  ASSERT_TRUE(manager_->OnWorkerReport(second).ok());
  JobView v = manager_->GetJob(id).value();
  ASSERT_TRUE(v.progress.has_value());
  EXPECT_EQ(v.progress->step, 2);
  EXPECT_EQ(v.progress->max_steps, 3);
  EXPECT_DOUBLE_EQ(v.progress->tokens_per_second, 2000);
  EXPECT_EQ(v.progress->peak_memory_bytes, int64_t{3} << 20);
  const std::string rendered = metrics_.Render();
  EXPECT_NE(rendered.find("foak_job_step{job_id=\"" + id + "\"} 2"), std::string::npos) << rendered;
  EXPECT_NE(rendered.find("foak_job_max_steps{job_id=\"" + id + "\"} 3"), std::string::npos);
  // Each of the two rows trained batch x seq x (warm-up + timed steps) tokens.
  EXPECT_NE(rendered.find("foak_job_tokens_total{job_id=\"" + id + "\"} 768"), std::string::npos)
      << rendered;

  WorkerReportInput oom = row(2, "all");
  oom.bench.status = "out_of_memory";
  oom.bench.error = "CUDA out of memory";
  oom.bench.tokens_per_second = 0;
  ASSERT_TRUE(manager_->OnWorkerReport(oom).ok());
  v = manager_->GetJob(id).value();
  EXPECT_EQ(v.progress->step, 3);
  EXPECT_EQ(v.progress->tokens_per_second, 0) << "the newest row did not run";

  std::vector<Json> rows;
  const std::vector<JobEvent> events = manager_->ListEvents(id, 0, 100).value();
  for (const JobEvent& e : events) {
    if (e.kind == "bench") rows.push_back(Json::parse(e.payload_json));
  }
  ASSERT_EQ(rows.size(), 3u);
  // bench.jsonl's field names (BenchResultToJson), all of them; the store's
  // JSON lists them sorted.
  std::vector<std::string> keys;
  for (auto it = rows[1].begin(); it != rows[1].end(); ++it) keys.push_back(it.key());
  std::vector<std::string> expected = {
      "activation_checkpointing", "batch", "device", "error", "framework", "gpus", "index",
      "kernels", "loss_first", "loss_last", "max_batch", "method", "model", "ms_per_step",
      "pct_change", "peak_allocated_bytes", "peak_reserved_bytes", "precision", "seq",
      "status", "steps", "tokens_per_second", "total", "warmup_steps"};
  EXPECT_EQ(keys, expected);
  EXPECT_TRUE(rows[0]["pct_change"].is_null());
  EXPECT_EQ(rows[1]["pct_change"], 100.0);
  EXPECT_EQ(rows[1]["kernels"], "foak");
  EXPECT_EQ(rows[1]["tokens_per_second"], 2000.0);
  EXPECT_EQ(rows[2]["status"], "out_of_memory");
  EXPECT_EQ(rows[2]["error"], "CUDA out of memory");

  // Once the job is over, the progress comes from the stored rows.
  ASSERT_TRUE(launcher_->Succeed(id).ok());
  v = manager_->GetJob(id).value();
  EXPECT_EQ(v.record.state, JobState::kSucceeded);
  EXPECT_EQ(v.record.message, absl::StrCat("benchmark finished; rows in ",
                                           JoinPath(v.output_dir, "bench.jsonl")));
  ASSERT_TRUE(v.progress.has_value());
  EXPECT_EQ(v.progress->step, 3);
  EXPECT_EQ(v.progress->max_steps, 3);
  EXPECT_DOUBLE_EQ(v.progress->loss, 5.25);
  Open({});  // and after a foakd restart
  v = manager_->GetJob(id).value();
  ASSERT_TRUE(v.progress.has_value());
  EXPECT_EQ(v.progress->step, 3);
  EXPECT_EQ(v.progress->max_steps, 3);
}

// An attempt silent for longer than its stall_timeout_s is stopped; its
// "Cancelled" exit becomes a restart, then a failure, as "Stalled".
TEST_F(JobManagerTest, ASilentAttemptIsStoppedThenRestartsThenFailsAsStalled) {
  fake_now_ms_ = 1000000;
  Open({});
  Json spec = Json::parse(Spec("quiet", 0, 0, /*max_restarts=*/1));
  spec["stall_timeout_s"] = 60;
  const std::string id = CreateId(spec.dump());
  ASSERT_EQ(launcher_->launches().size(), 1u);
  fake_now_ms_ += 59000;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "59 s after the launch";
  ASSERT_TRUE(manager_->OnWorkerReport(Report(id, WorkerReportInput::Kind::kStarted)).ok());
  fake_now_ms_ += 50000;
  WorkerReportInput step = Report(id, WorkerReportInput::Kind::kMetrics);
  step.step = 7;
  ASSERT_TRUE(manager_->OnWorkerReport(step).ok());
  fake_now_ms_ += 59000;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "each report restarts the clock";
  fake_now_ms_ += 2000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{id});
  EXPECT_EQ(launcher_->cancels(), std::vector<std::string>{id});
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "stopped once";
  EXPECT_EQ(State(id), JobState::kRunning) << "until its workers are gone";
  ASSERT_TRUE(launcher_->Finish(id, FakeLauncher::MakeOutcome(JobState::kCancelled, kReasonCancelled,
                                                              false, "stopped by foakd"))
                  .ok());
  ASSERT_EQ(launcher_->launches().size(), 2u) << "restarted (max_restarts = 1)";
  EXPECT_EQ(State(id), JobState::kStarting);
  bool saw_restart = false;
  const std::vector<JobEvent> events = manager_->ListEvents(id, 0, 100).value();
  for (const JobEvent& e : events) {
    if (e.kind != "state") continue;
    const Json p = Json::parse(e.payload_json);
    if (p.value("reason", "") != "Restarting") continue;
    saw_restart = true;
    EXPECT_NE(p.value("message", "").find(
                  "after Stalled: attempt 0 sent no report for 61 s (last heard: step 7); the "
                  "stall timeout is 60 s"),
              std::string::npos)
        << p.dump();
  }
  EXPECT_TRUE(saw_restart);

  // The new attempt never reports at all.
  fake_now_ms_ += 60000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{id});
  ASSERT_TRUE(launcher_->Finish(id, FakeLauncher::MakeOutcome(JobState::kCancelled, kReasonCancelled,
                                                              false, "stopped by foakd"))
                  .ok());
  const JobRecord r = manager_->GetJob(id).value().record;
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_EQ(r.reason, "Stalled");
  EXPECT_NE(r.message.find("attempt 1 sent no report for 60 s (last heard: the launch)"),
            std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find("max_restarts = 1"), std::string::npos) << r.message;
}

TEST_F(JobManagerTest, StallTimeoutsComeFromTheSpecOrFoakdAndACancelWins) {
  fake_now_ms_ = 1000000;
  Open({});
  Json never = Json::parse(Spec("never"));
  never["stall_timeout_s"] = -1;
  const std::string patient = CreateId(never.dump());
  Json bad = Json::parse(Spec("bad"));
  bad["stall_timeout_s"] = -2;
  absl::StatusOr<JobView> refused = manager_->CreateJob(bad.dump(), "", false);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("stall_timeout_s"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("-1 (never)"), std::string::npos) << refused.status();
  // foakd's default (30 min) for a spec without one.
  ASSERT_TRUE(launcher_->Succeed(patient).ok());
  const std::string plain = CreateId(Spec("plain"));
  fake_now_ms_ += 29 * 60 * 1000;
  EXPECT_TRUE(manager_->CheckStalls().empty());
  fake_now_ms_ += 60 * 1000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{plain});
  // The user cancels while foakd stops it: the job is CANCELLED, not Stalled.
  ASSERT_TRUE(manager_->CancelJob(plain).ok());
  ASSERT_TRUE(launcher_->Finish(plain, FakeLauncher::MakeOutcome(JobState::kCancelled,
                                                                 kReasonCancelled, false, "stopped"))
                  .ok());
  EXPECT_EQ(State(plain), JobState::kCancelled);

  const std::string quiet = CreateId(never.dump());
  // Started (else the start timeout, 24 h, would stop it), then silent.
  ASSERT_TRUE(manager_->OnWorkerReport(Report(quiet, WorkerReportInput::Kind::kStarted)).ok());
  fake_now_ms_ += 7 * 24 * 3600 * 1000ll;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "stall_timeout_s = -1: never";
  ASSERT_TRUE(launcher_->Succeed(quiet).ok());
}

// On Kubernetes the pods may wait for capacity or in Kueue's queue for as
// long as it takes: the clock starts at the attempt's first report.
TEST_F(JobManagerTest, OnAClusterTheStallClockStartsAtTheFirstReport) {
  fake_now_ms_ = 1000000;
  Open({}, /*cluster=*/true);
  const std::string id = CreateId(Spec("waits", 0, /*gpus=*/1));
  ASSERT_EQ(launcher_->launches().size(), 1u);
  fake_now_ms_ += 3 * 3600 * 1000;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "pending pods are not a stall";
  ASSERT_TRUE(manager_->OnWorkerReport(Report(id, WorkerReportInput::Kind::kStarted)).ok());
  fake_now_ms_ += 29 * 60 * 1000;
  EXPECT_TRUE(manager_->CheckStalls().empty());
  fake_now_ms_ += 60 * 1000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{id});
}

// The restart message of a job's "Restarting" state event ("" when none).
std::string RestartMessage(JobManager* manager, const std::string& id) {
  const std::vector<JobEvent> events = manager->ListEvents(id, 0, 1000).value();
  for (const JobEvent& e : events) {
    if (e.kind != "state") continue;
    const Json p = Json::parse(e.payload_json);
    if (p.value("reason", "") == "Restarting") return p.value("message", "");
  }
  return "";
}

// On Kubernetes an attempt whose pods never start (unschedulable, held by
// Kueue) is stopped after start_timeout_s: restarted, then failed as
// "StartTimeout", saying how long it waited and what Kubernetes said last.
TEST_F(JobManagerTest, OnAClusterPodsThatNeverStartTimeOutThenRestartThenFail) {
  fake_now_ms_ = 1000000;
  Open({}, /*cluster=*/true);
  Json spec = Json::parse(Spec("unplaceable", 0, /*gpus=*/1, /*max_restarts=*/1));
  spec["start_timeout_s"] = 3600;
  const std::string id = CreateId(spec.dump());
  ASSERT_EQ(launcher_->launches().size(), 1u);
  // What the Kubernetes launcher tells through on_log (kube_gang_status.cc,
  // KubeNotes): the pod's newer note replaces its older one.
  ASSERT_TRUE(launcher_->EmitLog(id, 0, "kubernetes: job foak-u-0 admitted by Kueue queue q").ok());
  ASSERT_TRUE(launcher_->EmitLog(id, 0, "kubernetes: pod foak-u-0-0-abcde Pending: "
                                        "Unschedulable: 0/3 nodes are available").ok());
  ASSERT_TRUE(launcher_->EmitLog(id, 0, "kubernetes: pod foak-u-0-0-abcde Pending: "
                                        "Unschedulable: 0/4 nodes are available: 4 Insufficient "
                                        "nvidia.com/gpu").ok());
  fake_now_ms_ += 3599 * 1000;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "59 min 59 s after the launch";
  fake_now_ms_ += 2000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{id});
  EXPECT_EQ(launcher_->cancels(), std::vector<std::string>{id}) << "stopped through the launcher";
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "stopped once";
  EXPECT_EQ(State(id), JobState::kStarting) << "until its pods are gone";
  ASSERT_TRUE(launcher_->Finish(id, FakeLauncher::MakeOutcome(JobState::kCancelled, kReasonCancelled,
                                                              false, "Job deleted"))
                  .ok());
  ASSERT_EQ(launcher_->launches().size(), 2u) << "restarted (max_restarts = 1)";
  EXPECT_EQ(State(id), JobState::kStarting);
  const std::string restart = RestartMessage(manager_.get(), id);
  EXPECT_NE(restart.find("after StartTimeout: attempt 0 sent no report in the 3601 s since its "
                         "launch; the start timeout is 3600 s (the spec's start_timeout_s, else "
                         "foakd's --start_timeout_s), so its workers were stopped; last status: "
                         "kubernetes: job foak-u-0 admitted by Kueue queue q; kubernetes: pod "
                         "foak-u-0-0-abcde Pending: Unschedulable: 0/4 nodes are available: 4 "
                         "Insufficient nvidia.com/gpu"),
            std::string::npos)
      << restart;
  EXPECT_EQ(restart.find("0/3 nodes"), std::string::npos) << restart;

  // The next attempt's clock starts at its own launch, and it hears nothing.
  fake_now_ms_ += 3600 * 1000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{id});
  ASSERT_TRUE(launcher_->Finish(id, FakeLauncher::MakeOutcome(JobState::kCancelled, kReasonCancelled,
                                                              false, "Job deleted"))
                  .ok());
  const JobRecord r = manager_->GetJob(id).value().record;
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_EQ(r.reason, "StartTimeout");
  EXPECT_NE(r.message.find("attempt 1 sent no report in the 3600 s since its launch; the start "
                           "timeout is 3600 s"),
            std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find("nothing was heard from the launcher or the workers"),
            std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find("max_restarts = 1"), std::string::npos) << r.message;
  EXPECT_EQ(launcher_->launches().size(), 2u);
}

// foakd's --start_timeout_s (24 h) for a spec without one; any report of the
// attempt stops the start clock (the stall clock takes over); -1 = never.
TEST_F(JobManagerTest, StartTimeoutsComeFromTheSpecOrFoakdAndAReportStopsTheClock) {
  fake_now_ms_ = 1000000;
  Open({}, /*cluster=*/true);
  const std::string queued = CreateId(Spec("queued", 0, /*gpus=*/2));
  fake_now_ms_ += (24 * 3600 - 1) * 1000;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "a day less a second in Kueue's queue";
  // Its rank 1 reports first: a report from any rank is a start.
  WorkerReportInput first = Report(queued, WorkerReportInput::Kind::kMetrics);
  first.rank = 1;
  first.step = 1;
  ASSERT_TRUE(manager_->OnWorkerReport(first).ok());
  fake_now_ms_ += 29 * 60 * 1000;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "started: only the stall clock runs";
  fake_now_ms_ += 60 * 1000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{queued});
  ASSERT_TRUE(launcher_->Finish(queued, FakeLauncher::MakeOutcome(JobState::kCancelled,
                                                                  kReasonCancelled, false, "gone"))
                  .ok());
  EXPECT_EQ(manager_->GetJob(queued).value().record.reason, "Stalled");

  const std::string plain = CreateId(Spec("plain", 0, /*gpus=*/1));
  fake_now_ms_ += 24 * 3600 * 1000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{plain}) << "foakd's default, 24 h";
  ASSERT_TRUE(launcher_->Finish(plain, FakeLauncher::MakeOutcome(JobState::kCancelled,
                                                                 kReasonCancelled, false, "gone"))
                  .ok());
  EXPECT_EQ(manager_->GetJob(plain).value().record.reason, "StartTimeout");

  Json never = Json::parse(Spec("patient", 0, /*gpus=*/1));
  never["start_timeout_s"] = -1;
  const std::string patient = CreateId(never.dump());
  fake_now_ms_ += 7 * 24 * 3600 * 1000ll;
  EXPECT_TRUE(manager_->CheckStalls().empty()) << "start_timeout_s = -1: never";
  EXPECT_EQ(State(patient), JobState::kStarting);
  ASSERT_TRUE(launcher_->Succeed(patient).ok());
}

// Locally the same start clock applies to a worker that never reports, and
// the message gives its last output line; the stall clock, which locally also
// runs from the launch, wins when it is the shorter.
TEST_F(JobManagerTest, LocallyAWorkerThatNeverReportsTimesOutAtTheShorterClock) {
  fake_now_ms_ = 1000000;
  Open({});
  Json spec = Json::parse(Spec("hangs"));
  spec["start_timeout_s"] = 60;
  const std::string id = CreateId(spec.dump());
  ASSERT_TRUE(launcher_->EmitLog(id, 0, "foak-worker: loading /models/tiny").ok());
  ASSERT_TRUE(launcher_->EmitLog(id, 0, "foak-worker: reading the dataset").ok());
  fake_now_ms_ += 61 * 1000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{id});
  ASSERT_TRUE(launcher_->Finish(id, FakeLauncher::MakeOutcome(JobState::kCancelled,
                                                              kReasonCancelled, false, "stopped"))
                  .ok());
  JobRecord r = manager_->GetJob(id).value().record;
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_EQ(r.reason, "StartTimeout");
  EXPECT_NE(r.message.find("attempt 0 sent no report in the 61 s since its launch; the start "
                           "timeout is 60 s"),
            std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find("; last output: foak-worker: reading the dataset"), std::string::npos)
      << r.message;

  spec["stall_timeout_s"] = 30;
  const std::string stalls = CreateId(spec.dump());
  fake_now_ms_ += 31 * 1000;
  EXPECT_EQ(manager_->CheckStalls(), std::vector<std::string>{stalls});
  ASSERT_TRUE(launcher_->Finish(stalls, FakeLauncher::MakeOutcome(JobState::kCancelled,
                                                                  kReasonCancelled, false, "stopped"))
                  .ok());
  r = manager_->GetJob(stalls).value().record;
  EXPECT_EQ(r.reason, "Stalled");
  EXPECT_NE(r.message.find("(last heard: the launch); the stall timeout is 30 s"),
            std::string::npos)
      << r.message;
}

// A gang: one rank failing fails the launch (the launcher stops the others),
// and a restart relaunches every rank.
TEST_F(JobManagerTest, FailuresRestartUpToMaxRestartsThenFail) {
  Open({0, 1});
  const std::string id = CreateId(Spec("a", 0, /*gpus=*/2, /*max_restarts=*/1));
  ASSERT_EQ(launcher_->launches().size(), 1u);
  ASSERT_TRUE(launcher_->Fail(id, kReasonGangMemberFailed, true, "rank 1 exited with code 1").ok());
  EXPECT_EQ(State(id), JobState::kStarting) << "requeued and relaunched at once";
  ASSERT_EQ(launcher_->launches().size(), 2u);
  const LaunchRequest again = launcher_->launches()[1];
  EXPECT_EQ(again.attempt, 1);
  ASSERT_EQ(again.ranks.size(), 2u);
  ExpectGang(again, "0,1");
  EXPECT_EQ(Env(again, "FOAK_JOB_ATTEMPT"), "1");
  Json job = Json::parse(ReadFileToString(again.ranks[0].argv[3]).value());
  EXPECT_EQ(job["resume_from_checkpoint"], "latest");
  EXPECT_EQ(job["device"], "cuda");
  // The old gang's ranks are not heard any more.
  WorkerReportInput stale = Report(id, WorkerReportInput::Kind::kMetrics, /*attempt=*/0);
  stale.rank = 1;
  EXPECT_EQ(manager_->OnWorkerReport(stale).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(launcher_->Fail(id, "WorkerError", true).ok());
  JobRecord r = manager_->GetJob(id).value().record;
  EXPECT_EQ(r.state, JobState::kFailed);
  EXPECT_EQ(r.reason, "WorkerError");
  EXPECT_EQ(r.restarts, 1);
  EXPECT_NE(r.message.find("max_restarts = 1"), std::string::npos) << r.message;

  const std::string bad = CreateId(Spec("b", 0, 0, 3));
  ASSERT_TRUE(launcher_->Fail(bad, "InvalidJob", false).ok());
  EXPECT_EQ(State(bad), JobState::kFailed) << "an invalid job is not retried";
}

TEST_F(JobManagerTest, GpuJobRunsOneRankPerGpu) {
  Open({4, 7});  // GPU ids that are not rank numbers
  const std::string id = CreateId(Spec("dp", 0, /*gpus=*/2));
  ASSERT_EQ(launcher_->launches().size(), 1u);
  const LaunchRequest r = launcher_->launches()[0];
  ASSERT_EQ(r.ranks.size(), 2u);
  ExpectGang(r, "4,7");  // every rank sees both and takes cuda:LOCAL_RANK
  EXPECT_EQ(Json::parse(ReadFileToString(r.ranks[0].argv[3]).value())["device"], "cuda");
  EXPECT_EQ(manager_->GetJob(id).value().record.message, "on GPU 4,7, 2 ranks, attempt 0");
}

// With the Kubernetes launcher (cluster mode) the JobManager hands over the
// gang by shape: nodes x GPUs, the worker's arguments and the job's
// environment, the placement fields; every queued job goes at once, and the
// local rank list stays empty.
TEST_F(JobManagerTest, ClusterModeHandsTheGangOverByShape) {
  Open({}, /*cluster=*/true);
  Json spec = Json::parse(Spec("multi", 0, /*gpus=*/8));
  spec["resources"]["nodes"] = 2;
  spec["resources"]["queue"] = "team-a";
  spec["resources"]["node_selector"] = {{"pool", "h100"}};
  spec["resources"]["tolerations"] = Json::parse(R"([{"key": "nvidia.com/gpu", "operator": "Exists"}])");
  const std::string id = CreateId(spec.dump());
  const std::string other = CreateId(Spec("cpu", 0, 0, 0, /*processes=*/2));
  ASSERT_EQ(launcher_->launches().size(), 2u) << "the cluster queues; foakd does not";
  const LaunchRequest r = launcher_->launches()[0];
  EXPECT_EQ(r.job_id, id);
  EXPECT_TRUE(r.ranks.empty());
  EXPECT_EQ(r.gang.nodes, 2);
  EXPECT_EQ(r.gang.ranks_per_node, 8);
  EXPECT_EQ(r.gang.gpus_per_node, 8);
  EXPECT_EQ(r.gang.queue, "team-a");
  EXPECT_EQ(r.gang.node_selector, (std::map<std::string, std::string>{{"pool", "h100"}}));
  ASSERT_EQ(r.gang.tolerations.size(), 1u);
  EXPECT_EQ(r.gang.tolerations[0].op, "Exists");
  const std::string job_file = JoinPath(manager_->JobDir(id), "job-0.json");
  EXPECT_EQ(r.gang.worker_args, (std::vector<std::string>{"train", "--job", job_file}));
  EXPECT_EQ(Json::parse(ReadFileToString(job_file).value())["device"], "cuda");
  std::map<std::string, std::string> env(r.gang.env.begin(), r.gang.env.end());
  EXPECT_EQ(env.at("FOAK_JOB_ID"), id);
  EXPECT_EQ(env.at("FOAK_JOB_ATTEMPT"), "0");
  EXPECT_EQ(env.at("FOAK_COORDINATOR"), "127.0.0.1:7070");
  EXPECT_TRUE(manager_->AuthorizeWorker(id, env.at("FOAK_JOB_TOKEN")).ok());
  EXPECT_EQ(env.count("RANK"), 0u) << "foak-worker launch sets the rank variables on each node";
  EXPECT_EQ(manager_->GetJob(id).value().record.message,
            "on Kubernetes: 2 nodes x 8 GPUs, attempt 0");
  const LaunchRequest cpu = launcher_->launches()[1];
  EXPECT_EQ(cpu.gang.nodes, 1);
  EXPECT_EQ(cpu.gang.ranks_per_node, 2);
  EXPECT_EQ(cpu.gang.gpus_per_node, 0);
  EXPECT_EQ(manager_->GetJob(other).value().record.message,
            "on Kubernetes: 1 node x 2 CPU ranks, attempt 0");
  // The world is nodes x GPUs: rank 15 of the 16 may report, rank 16 may not.
  WorkerReportInput last = Report(id, WorkerReportInput::Kind::kMetrics);
  last.rank = 15;
  last.step = 1;
  EXPECT_TRUE(manager_->OnWorkerReport(last).ok());
  last.rank = 16;
  EXPECT_FALSE(manager_->OnWorkerReport(last).ok());
}

// A CPU job of P processes: P ranks over Gloo, no GPU visible, one CPU slot.
TEST_F(JobManagerTest, CpuJobRunsItsProcessesAsOneGangInOneSlot) {
  Open({0, 1});  // GPUs on the host change nothing for a CPU job
  const std::string id = CreateId(Spec("cpu-dp", 0, 0, 0, /*processes=*/3));
  const std::string next = CreateId(Spec("next"));
  ASSERT_EQ(launcher_->launches().size(), 1u) << "the second CPU job waits for the one slot";
  const LaunchRequest r = launcher_->launches()[0];
  EXPECT_EQ(r.job_id, id);
  ASSERT_EQ(r.ranks.size(), 3u);
  ExpectGang(r, "");
  EXPECT_EQ(Json::parse(ReadFileToString(r.ranks[0].argv[3]).value())["device"], "cpu");
  EXPECT_EQ(manager_->GetJob(id).value().record.message, "on the CPU, 3 ranks, attempt 0");
  EXPECT_EQ(State(next), JobState::kQueued);
  ASSERT_TRUE(launcher_->Succeed(id).ok());
  ASSERT_EQ(launcher_->launches().size(), 2u);
  EXPECT_EQ(launcher_->launches()[1].ranks.size(), 1u) << "processes unset: one rank";
}

// Rank 0 speaks for the job; a rank > 0 reports its step metrics for its own
// peak memory, which moves nothing else.
TEST_F(JobManagerTest, RanksAboveZeroReportOnlyTheirMemory) {
  Open({0, 1});
  const std::string id = CreateId(Spec("dp", 0, /*gpus=*/2));
  auto metrics = [&](int64_t rank, int64_t step, double loss, int64_t memory) {
    WorkerReportInput m = Report(id, WorkerReportInput::Kind::kMetrics);
    m.rank = rank;
    m.step = step;
    m.max_steps = 10;
    m.loss = loss;
    m.tokens = 100;
    m.tokens_per_second = 50;
    m.peak_memory_bytes = memory;
    return m;
  };
  const std::string sel = "{job_id=\"" + id + "\"";
  // Rank 1 may be first: stored, its memory known, but the job waits for rank 0.
  ASSERT_TRUE(manager_->OnWorkerReport(metrics(1, 1, 9.0, 3000)).ok());
  EXPECT_EQ(State(id), JobState::kStarting);
  WorkerReportInput started1 = Report(id, WorkerReportInput::Kind::kStarted);
  started1.rank = 1;
  started1.device = "cuda:1";
  ASSERT_TRUE(manager_->OnWorkerReport(started1).ok()) << "accepted and ignored";
  EXPECT_EQ(State(id), JobState::kStarting);
  JobView v = manager_->GetJob(id).value();
  ASSERT_TRUE(v.progress.has_value());
  EXPECT_EQ(v.progress->step, 0);
  EXPECT_EQ(v.progress->rank_peak_memory_bytes, (std::vector<int64_t>{0, 3000}));
  std::string text = metrics_.Render();
  EXPECT_NE(text.find("foak_job_peak_memory_bytes" + sel + ",rank=\"1\"} 3000"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("foak_job_step" + sel), std::string::npos) << text;

  WorkerReportInput started = Report(id, WorkerReportInput::Kind::kStarted);
  started.device = "cuda:0";
  started.max_steps = 10;
  ASSERT_TRUE(manager_->OnWorkerReport(started).ok());
  EXPECT_EQ(State(id), JobState::kRunning);
  EXPECT_EQ(manager_->GetJob(id).value().record.message, "training on cuda:0");
  ASSERT_TRUE(manager_->OnWorkerReport(metrics(0, 5, 1.5, 1000)).ok());
  ASSERT_TRUE(manager_->OnWorkerReport(metrics(1, 6, 9.0, 4000)).ok());  // newer, rank 1's
  v = manager_->GetJob(id).value();
  EXPECT_EQ(v.progress->step, 5);
  EXPECT_DOUBLE_EQ(v.progress->loss, 1.5);
  EXPECT_EQ(v.progress->peak_memory_bytes, 1000);
  EXPECT_EQ(v.progress->rank_peak_memory_bytes, (std::vector<int64_t>{1000, 4000}));
  text = metrics_.Render();
  EXPECT_NE(text.find("foak_job_step" + sel + "} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("foak_job_loss" + sel + "} 1.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("foak_job_tokens_total" + sel + "} 100\n"), std::string::npos)
      << "rank 0's tokens only: " << text;
  EXPECT_NE(text.find("foak_job_peak_memory_bytes" + sel + ",rank=\"0\"} 1000"), std::string::npos)
      << text;
  EXPECT_NE(text.find("foak_job_peak_memory_bytes" + sel + ",rank=\"1\"} 4000"), std::string::npos)
      << text;

  // Evaluations, checkpoints and rows are rank 0's; ranks outside the gang do not exist.
  WorkerReportInput c = Report(id, WorkerReportInput::Kind::kCheckpoint);
  c.rank = 1;
  c.step = 5;
  c.checkpoint_path = "/x/checkpoint-5";
  absl::Status refused = manager_->OnWorkerReport(c);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("rank 1 of job " + id + " sent a checkpoint; only rank 0"),
            std::string::npos)
      << refused;
  EXPECT_TRUE(manager_->ListCheckpoints(id).value().empty());
  refused = manager_->OnWorkerReport(metrics(2, 5, 1.0, 1));
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("which runs ranks 0 to 1"), std::string::npos) << refused;
  EXPECT_EQ(manager_->OnWorkerReport(metrics(-1, 5, 1.0, 1)).code(),
            absl::StatusCode::kInvalidArgument);

  // Every step report is an event that names its rank (watchers show rank 0's).
  std::vector<std::pair<int64_t, int64_t>> rank_steps;
  const std::vector<JobEvent> events = manager_->ListEvents(id, 0, 100).value();
  for (const JobEvent& e : events) {
    if (e.kind != "metrics") continue;
    const Json m = Json::parse(e.payload_json);
    rank_steps.emplace_back(m["rank"].get<int64_t>(), m["step"].get<int64_t>());
  }
  EXPECT_EQ(rank_steps, (std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {0, 5}, {1, 6}}));

  // Once the job is over the progress comes from the stored events: rank 0's
  // step and loss although rank 1's event is newer, and each rank's memory;
  // the same after a foakd restart.
  ASSERT_TRUE(launcher_->Succeed(id).ok());
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) Open({0, 1});
    v = manager_->GetJob(id).value();
    EXPECT_EQ(v.record.state, JobState::kSucceeded);
    ASSERT_TRUE(v.progress.has_value());
    EXPECT_EQ(v.progress->step, 5);
    EXPECT_DOUBLE_EQ(v.progress->loss, 1.5);
    EXPECT_EQ(v.progress->peak_memory_bytes, 1000);
    EXPECT_EQ(v.progress->rank_peak_memory_bytes, (std::vector<int64_t>{1000, 4000}));
  }
}

TEST_F(JobManagerTest, CancelInEachState) {
  const std::string running = CreateId(Spec("a"));
  const std::string queued = CreateId(Spec("b"));
  JobView q = manager_->CancelJob(queued).value();
  EXPECT_EQ(q.record.state, JobState::kCancelled);
  JobView r = manager_->CancelJob(running).value();
  EXPECT_EQ(r.record.state, JobState::kCancelling);
  EXPECT_EQ(launcher_->cancels(), std::vector<std::string>{running});
  EXPECT_EQ(manager_->CancelJob(running).value().record.state, JobState::kCancelling);  // idempotent
  ASSERT_TRUE(launcher_->Finish(running, FakeLauncher::MakeOutcome(JobState::kCancelled, "Cancelled", false, "stopped")).ok());
  EXPECT_EQ(State(running), JobState::kCancelled);
  absl::Status again = manager_->CancelJob(running).status();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  EXPECT_EQ(manager_->CancelJob("job-0000000000000000").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobManagerTest, PriorityOrderAndGangOnGpus) {
  Open({0, 1});
  const std::string two = CreateId(Spec("two", 0, 2));
  const std::string low = CreateId(Spec("low", 0, 1));
  const std::string high = CreateId(Spec("high", 9, 1));
  ASSERT_EQ(launcher_->launches().size(), 1u);
  EXPECT_EQ(Env(launcher_->launches()[0], "CUDA_VISIBLE_DEVICES"), "0,1");
  ASSERT_TRUE(launcher_->Succeed(two).ok());
  ASSERT_EQ(launcher_->launches().size(), 3u);
  EXPECT_EQ(launcher_->launches()[1].job_id, high);
  EXPECT_EQ(launcher_->launches()[2].job_id, low);
  EXPECT_EQ(Json::parse(ReadFileToString(launcher_->launches()[1].ranks[0].argv[3]).value())["device"],
            "cuda");
  EXPECT_EQ(manager_->CreateJob(Spec("three", 0, 3), "", false).status().code(),
            absl::StatusCode::kResourceExhausted);
  // A GPU listed twice counts once, as the scheduler holds it once.
  Open({0, 0});
  EXPECT_EQ(manager_->CreateJob(Spec("two-of-one", 0, 2), "", false).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(JobManagerTest, RestartRequeuesLiveJobsWithoutCountingARestart) {
  const std::string running = CreateId(Spec("a", 0, 0, 0));
  ASSERT_TRUE(manager_->OnWorkerReport(Report(running, WorkerReportInput::Kind::kStarted)).ok());
  const std::string queued = CreateId(Spec("b"));
  ASSERT_TRUE(manager_->CancelJob(CreateId(Spec("c"))).ok());
  Open({});  // a new foakd on the same store
  JobRecord r = manager_->GetJob(running).value().record;
  EXPECT_EQ(r.state, JobState::kStarting) << "requeued and launched again";
  EXPECT_EQ(r.restarts, 0);
  bool saw_reason = false;
  const std::vector<JobEvent> events = manager_->ListEvents(running, 0, 100).value();
  for (const JobEvent& e : events) {
    saw_reason |= e.payload_json.find("CoordinatorRestarted") != std::string::npos;
  }
  EXPECT_TRUE(saw_reason);
  EXPECT_EQ(State(queued), JobState::kQueued);
}

TEST_F(JobManagerTest, WatchersWakeOnNewEventsAndOnShutdown) {
  const std::string id = CreateId(Spec("a"));
  const int64_t generation = manager_->EventGeneration(id);
  absl::Notification woke;
  std::thread waiter([&] {
    manager_->WaitForChange(id, generation, absl::Now() + absl::Seconds(30));
    woke.Notify();
  });
  ASSERT_TRUE(launcher_->EmitLog(id, 0, "a line").ok());
  EXPECT_TRUE(woke.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter.join();
  const int64_t g2 = manager_->EventGeneration(id);
  absl::Notification woke2;
  std::thread waiter2([&] {
    manager_->WaitForChange(id, g2, absl::Now() + absl::Seconds(30));
    woke2.Notify();
  });
  manager_->Shutdown();
  EXPECT_TRUE(woke2.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter2.join();
  EXPECT_TRUE(launcher_->shut_down());
  EXPECT_EQ(manager_->CreateJob(Spec("late"), "", false).status().code(), absl::StatusCode::kUnavailable);
}

// Each job has its own wake-up (issue 9: one shared by all woke every open
// WatchJob stream on every event): a watcher of one job sleeps through other
// jobs' events and wakes on its own job's.
TEST_F(JobManagerTest, WatchersWakeForTheirOwnJobOnly) {
  const std::string running = CreateId(Spec("running"));  // takes the CPU slot
  const std::string queued = CreateId(Spec("queued"));
  const int64_t generation = manager_->EventGeneration(running);
  absl::Notification woke;
  std::thread waiter([&] {
    manager_->WaitForChange(running, generation, absl::Now() + absl::Seconds(30));
    woke.Notify();
  });
  CreateId(Spec("another"));
  ASSERT_TRUE(manager_->CancelJob(queued).ok());
  EXPECT_FALSE(woke.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  ASSERT_TRUE(launcher_->EmitLog(running, 0, "a line").ok());
  EXPECT_TRUE(woke.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter.join();
}

// While the host is full the queue is not read on every new job (issue 9),
// so what frees the slot must still start the next job, in order.
TEST_F(JobManagerTest, FullHostStillStartsTheNextJobWhenTheSlotFrees) {
  const std::string first = CreateId(Spec("first"));
  const std::string second = CreateId(Spec("second"));
  const std::string third = CreateId(Spec("third"));
  EXPECT_EQ(State(first), JobState::kStarting);
  EXPECT_EQ(State(second), JobState::kQueued);
  // foak_jobs{state} is counted when rendered, not on every change.
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("foak_jobs{state=\"QUEUED\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("foak_jobs{state=\"STARTING\"} 1\n"), std::string::npos) << text;
  ASSERT_TRUE(launcher_->Succeed(first).ok());
  EXPECT_EQ(State(second), JobState::kStarting);
  EXPECT_EQ(State(third), JobState::kQueued);
  ASSERT_TRUE(launcher_->Fail(second, "WorkerError", /*retryable=*/false).ok());
  EXPECT_EQ(State(third), JobState::kStarting);
}

}  // namespace
}  // namespace foak

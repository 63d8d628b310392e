// The JobManager's decisions with the FakeLauncher (no processes): what a
// launch gets (job file, environment, token), worker reports moving a job to
// RUNNING and recording progress and checkpoints, exits mapped to states,
// restarts up to max_restarts, cancel in each state, reconciliation after a
// foakd restart, worker authorisation, watchers woken by new events, and a
// benchmark job's rows stored as "bench" events that advance its progress.
#include "server/domain/job_manager.h"

#include <thread>

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

  void Open(std::vector<int> gpus) {
    manager_.reset();
    JobManagerOptions o;
    o.data_dir = JoinPath(dir_.path(), "data");
    o.worker_path = worker_;
    SchedulerOptions s;
    s.gpu_ids = std::move(gpus);
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

  std::string Spec(const std::string& name, int priority = 0, int gpus = 0, int max_restarts = 0) {
    return Json{{"name", name},
                {"model", model_},
                {"dataset", {{"train", train_}}},
                {"priority", priority},
                {"max_restarts", max_restarts},
                {"resources", {{"gpus", gpus}}}}
        .dump();
  }
  std::string CreateId(const std::string& spec) {
    absl::StatusOr<JobView> v = manager_->CreateJob(spec, "", false);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? v->record.id : "";
  }
  JobState State(const std::string& id) { return manager_->GetJob(id).value().record.state; }
  std::string Env(const LaunchRequest& r, const std::string& key) {
    for (const auto& [k, v] : r.ranks[0].env) {
      if (k == key) return v;
    }
    return "<unset>";
  }
  WorkerReportInput Report(const std::string& id, WorkerReportInput::Kind kind, int64_t attempt = 0) {
    WorkerReportInput r;
    r.job_id = id;
    r.kind = kind;
    r.attempt = attempt;
    return r;
  }

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
  EXPECT_EQ(Env(r, "FOAK_COORDINATOR"), "127.0.0.1:7070");
  EXPECT_EQ(Env(r, "FOAK_JOB_ID"), id);
  EXPECT_TRUE(manager_->AuthorizeWorker(id, Env(r, "FOAK_JOB_TOKEN")).ok());
  EXPECT_NE(Env(r, "MASTER_PORT"), "0");
  EXPECT_EQ(manager_->GetJob(id).value().output_dir, JoinPath(manager_->JobDir(id), "output"));
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

TEST_F(JobManagerTest, FailuresRestartUpToMaxRestartsThenFail) {
  const std::string id = CreateId(Spec("a", 0, 0, /*max_restarts=*/1));
  ASSERT_TRUE(launcher_->Fail(id, "WorkerError", true).ok());
  EXPECT_EQ(State(id), JobState::kStarting) << "requeued and relaunched at once";
  ASSERT_EQ(launcher_->launches().size(), 2u);
  EXPECT_EQ(launcher_->launches()[1].attempt, 1);
  EXPECT_EQ(Env(launcher_->launches()[1], "FOAK_JOB_ATTEMPT"), "1");
  Json job = Json::parse(ReadFileToString(launcher_->launches()[1].ranks[0].argv[3]).value());
  EXPECT_EQ(job["resume_from_checkpoint"], "latest");
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

}  // namespace
}  // namespace foak

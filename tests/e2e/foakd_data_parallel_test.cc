// foakd's data-parallel jobs end to end on the CPU: the real foakd launching
// a job of resources.processes = 2 as two real foak-worker ranks joined over
// Gloo, driven over gRPC.
//   - The job succeeds; both ranks' step metrics arrive as events, the job's
//     progress has a peak memory per rank, each rank has its log file, and
//     only rank 0 writes the output (one metrics.jsonl line per step).
//   - A rank that dies mid-run (the worker's FOAK_TEST_EXIT_* hook, set in
//     foakd's environment, which the workers inherit) stops the gang; with
//     max_restarts = 1 the job is requeued, relaunched as attempt 1 with both
//     ranks, resumes from its checkpoint and ends with the very losses of an
//     uninterrupted run; with max_restarts = 0 it fails naming the rank.
// Every wait is bounded: a hang fails the test instead of blocking ctest.
#include <grpcpp/grpcpp.h>
#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/foakd_process.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using foak::v1::Job;
using foak::v1::JobEvent;

constexpr int kMaxSteps = 8;
constexpr int kSaveSteps = 4;
constexpr int kWatchSeconds = 90;  // one job, restart included: a few seconds on 2 cores

// A step's line of metrics.jsonl, its numbers as written (text, so that equal
// means bit for bit).
struct StepText {
  std::string loss;
  std::string grad_norm;
};

// The value text of "key" in one JSON line written by MetricsWriter.
std::string FieldText(absl::string_view line, absl::string_view key) {
  const std::string tag = absl::StrCat("\"", key, "\":");
  const size_t at = line.find(tag);
  if (at == absl::string_view::npos) return "";
  const size_t start = at + tag.size();
  const size_t end = line.find_first_of(",}", start);
  return std::string(line.substr(start, end - start));
}

// The step lines of a metrics.jsonl by step; a step that appears twice is
// reported as a failure (a resumed run must not repeat lines).
std::map<int64_t, StepText> StepLines(const std::string& path) {
  std::map<int64_t, StepText> out;
  const std::string text = ReadFileToString(path).value_or("");
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const Json j = Json::parse(std::string(line));
    if (!j.contains("loss")) continue;  // an evaluation
    const int64_t step = j.at("step").get<int64_t>();
    EXPECT_EQ(out.count(step), 0u) << "step " << step << " twice in " << path << ":\n" << text;
    out[step] = {FieldText(line, "loss"), FieldText(line, "grad_norm")};
  }
  return out;
}

std::vector<Job::State> States(const std::vector<JobEvent>& events) {
  std::vector<Job::State> states;
  for (const JobEvent& e : events) {
    if (e.has_state()) states.push_back(e.state().state());
  }
  return states;
}

class FoakdDataParallelE2E : public ::testing::Test {
 protected:
  // The ranks of a CPU job join over Gloo, which a LibTorch without Gloo's
  // headers (pip's, on the GPU host) cannot build; scripts/dp_gpu_check.sh
  // covers foakd's GPU gangs there.
  void SetUp() override {
    if (!FOAK_WORKER_HAS_GLOO) GTEST_SKIP() << "this build's foak-worker has no Gloo backend";
  }
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("foakd_dp_e2e");
    model_ = JoinPath(dir_->path(), "model");
    testing::WorkerResult r = testing::RunWorkerCapture(
        "init-model --config " + std::string(FOAK_SOURCE_DIR) +
        "/examples/debug_model/config.json --out " + model_ + " --seed 1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  // Stops every foakd the test started, and with it their workers.
  void TearDown() override {
    for (auto& foakd : foakds_) foakd->Stop();
  }

  testing::FoakdProcess& StartFoakd(const std::string& name,
                                    std::vector<std::pair<std::string, std::string>> env = {}) {
    foakds_.push_back(std::make_unique<testing::FoakdProcess>(
        JoinPath(dir_->path(), name), std::vector<std::string>{}, std::move(env)));
    EXPECT_TRUE(foakds_.back()->Start());
    return *foakds_.back();
  }

  // The hook that makes rank 1 of a job's first launch _exit(137) right
  // after checkpoint-kSaveSteps is committed.
  static std::vector<std::pair<std::string, std::string>> KillRank1AfterCheckpoint() {
    return {{"FOAK_TEST_EXIT_AFTER_CHECKPOINT", std::to_string(kSaveSteps)},
            {"FOAK_TEST_EXIT_RANK", "1"},
            {"FOAK_TEST_EXIT_ATTEMPT", "0"}};
  }

  // A 2-rank CPU chat job on the arithmetic data, a metrics line per step,
  // checkpoints every kSaveSteps. ddp_timeout bounds a rank's wait for a
  // lost peer.
  static foak::v1::JobSpec Spec(const std::string& name, int max_restarts) {
    Json j = {{"name", name},
              {"model", model_},
              {"dataset",
               {{"train", std::string(FOAK_SOURCE_DIR) + "/examples/data/arith_train.jsonl"},
                {"format", "chat"}}},
              {"resources", {{"processes", 2}}},
              {"max_restarts", max_restarts},
              {"hyperparameters",
               {{"max_steps", kMaxSteps},
                {"batch_size", 2},
                {"max_seq_len", 64},
                {"logging_steps", 1},
                {"save_steps", kSaveSteps},
                {"learning_rate", 0.005},
                {"precision", "fp32"},
                {"ddp_timeout", 30}}}};
    foak::v1::JobSpec spec;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(j.dump(), &spec).ok());
    return spec;
  }

  static Job Create(testing::FoakdProcess& foakd, const foak::v1::JobSpec& spec) {
    grpc::ClientContext ctx;
    foak::v1::CreateJobRequest req;
    *req.mutable_spec() = spec;
    Job job;
    grpc::Status s = foakd.jobs().CreateJob(&ctx, req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  static Job Get(testing::FoakdProcess& foakd, const std::string& id) {
    grpc::ClientContext ctx;
    foak::v1::GetJobRequest req;
    req.set_id(id);
    Job job;
    grpc::Status s = foakd.jobs().GetJob(&ctx, req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  // Every event of the job until it ends; fails the test if that takes more
  // than kWatchSeconds.
  static std::vector<JobEvent> WatchToEnd(testing::FoakdProcess& foakd, const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(kWatchSeconds));
    foak::v1::WatchJobRequest req;
    req.set_id(id);
    auto reader = foakd.jobs().WatchJob(&ctx, req);
    std::vector<JobEvent> events;
    JobEvent e;
    while (reader->Read(&e)) events.push_back(e);
    grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << "job " << id << " did not end within " << kWatchSeconds
                        << " s: " << s.error_message() << "\n"
                        << foakd.Log();
    return events;
  }

  static std::string JobLog(testing::FoakdProcess& foakd, const std::string& id, int attempt,
                            int rank) {
    return JoinPath(foakd.data_dir(),
                    absl::StrCat("jobs/", id, "/logs/attempt-", attempt, "-rank-", rank, ".log"));
  }

  // The text of every log event of one attempt's rank, a line each.
  static std::string LogText(const std::vector<JobEvent>& events, int attempt, int rank) {
    std::string text;
    for (const JobEvent& e : events) {
      if (e.has_log() && e.log().attempt() == attempt && e.log().rank() == rank) {
        absl::StrAppend(&text, e.log().text(), "\n");
      }
    }
    return text;
  }

  static testing::TempDir* dir_;
  static std::string model_;
  std::vector<std::unique_ptr<testing::FoakdProcess>> foakds_;
};

testing::TempDir* FoakdDataParallelE2E::dir_ = nullptr;
std::string FoakdDataParallelE2E::model_;

TEST_F(FoakdDataParallelE2E, TwoProcessJobSucceedsWithBothRanksReportingAndOneOutput) {
  testing::FoakdProcess& foakd = StartFoakd("plain");
  const Job job = Create(foakd, Spec("dp", 0));
  ASSERT_FALSE(job.id().empty());
  const std::vector<JobEvent> events = WatchToEnd(foakd, job.id());
  const Job done = Get(foakd, job.id());
  ASSERT_EQ(done.state(), Job::SUCCEEDED) << done.reason() << ": " << done.message();
  EXPECT_EQ(States(events), (std::vector<Job::State>{Job::QUEUED, Job::STARTING, Job::RUNNING,
                                                      Job::SUCCEEDED}));
  for (const JobEvent& e : events) {
    if (e.has_state() && e.state().state() == Job::STARTING) {
      EXPECT_NE(e.state().message().find("2 ranks"), std::string::npos) << e.state().message();
    }
  }

  // Both ranks report every step; each its own peak memory.
  std::map<int, std::vector<int64_t>> steps_by_rank;
  for (const JobEvent& e : events) {
    if (!e.has_metrics()) continue;
    steps_by_rank[e.metrics().rank()].push_back(e.metrics().step());
    EXPECT_GT(e.metrics().peak_memory_bytes(), 0) << "rank " << e.metrics().rank();
  }
  const std::vector<int64_t> all_steps = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_EQ(steps_by_rank.size(), 2u) << "metrics from ranks 0 and 1 only";
  EXPECT_EQ(steps_by_rank[0], all_steps);
  EXPECT_EQ(steps_by_rank[1], all_steps);
  ASSERT_EQ(done.progress().rank_peak_memory_bytes_size(), 2);
  EXPECT_GT(done.progress().rank_peak_memory_bytes(0), 0);
  EXPECT_GT(done.progress().rank_peak_memory_bytes(1), 0);
  EXPECT_EQ(done.progress().rank_peak_memory_bytes(0), done.progress().peak_memory_bytes());
  EXPECT_EQ(done.progress().step(), kMaxSteps);

  // A log file per rank; rank 1 joined rank 0.
  EXPECT_TRUE(PathExists(JobLog(foakd, job.id(), 0, 0)));
  EXPECT_TRUE(PathExists(JobLog(foakd, job.id(), 0, 1)));
  const std::string rank1_log = ReadFileToString(JobLog(foakd, job.id(), 0, 1)).value_or("");
  EXPECT_NE(rank1_log.find("joined as rank 1 of 2"), std::string::npos) << rank1_log;
  EXPECT_NE(LogText(events, 0, 1).find("joined as rank 1 of 2"), std::string::npos)
      << "rank 1's output arrives as log events";

  // Rank 0 alone writes the output: final/, checkpoints, one metrics.jsonl
  // with one line per step.
  const std::string out = done.output_dir();
  EXPECT_TRUE(PathExists(JoinPath(out, "final/config.json"))) << out;
  EXPECT_TRUE(PathExists(JoinPath(out, "checkpoint-4/trainer_state.json"))) << out;
  std::vector<std::string> metrics_files;
  for (const std::string& name : ListDir(out).value_or(std::vector<std::string>{})) {
    if (name.find("metrics") != std::string::npos) metrics_files.push_back(name);
  }
  EXPECT_EQ(metrics_files, std::vector<std::string>{"metrics.jsonl"});
  const std::map<int64_t, StepText> lines = StepLines(JoinPath(out, "metrics.jsonl"));
  EXPECT_EQ(lines.size(), static_cast<size_t>(kMaxSteps));
  EXPECT_EQ(testing::ReadMetrics(JoinPath(out, "metrics.jsonl")).size(),
            static_cast<size_t>(kMaxSteps))
      << "one line per step, not one per rank";
}

TEST_F(FoakdDataParallelE2E, KilledRankRestartsTheGangFromItsCheckpointWithTheSameLosses) {
  // Rank 1 of attempt 0 dies right after checkpoint-4. Beside it, on a
  // foakd without the hook, the uninterrupted run: the reference.
  testing::FoakdProcess& foakd = StartFoakd("killed", KillRank1AfterCheckpoint());
  testing::FoakdProcess& plain = StartFoakd("reference");
  const Job job = Create(foakd, Spec("killed", 1));
  const Job reference = Create(plain, Spec("reference", 1));
  const std::vector<JobEvent> events = WatchToEnd(foakd, job.id());
  WatchToEnd(plain, reference.id());
  const Job reference_done = Get(plain, reference.id());
  ASSERT_EQ(reference_done.state(), Job::SUCCEEDED) << reference_done.message();
  const Job done = Get(foakd, job.id());
  ASSERT_EQ(done.state(), Job::SUCCEEDED) << done.reason() << ": " << done.message();
  EXPECT_EQ(done.restarts(), 1);
  EXPECT_EQ(States(events),
            (std::vector<Job::State>{Job::QUEUED, Job::STARTING, Job::RUNNING, Job::QUEUED,
                                     Job::STARTING, Job::RUNNING, Job::SUCCEEDED}));

  // The requeue names the failure; the relaunch is attempt 1 with both ranks.
  // Rank 1 died as checkpoint-4 was committed; rank 0 must not have waited
  // for it until ddp_timeout (30 s).
  std::string restarting, relaunch;
  double checkpoint_s = -1, restarting_s = -1;
  auto seconds = [](const JobEvent& e) { return e.time().seconds() + e.time().nanos() * 1e-9; };
  for (const JobEvent& e : events) {
    if (e.has_checkpoint() && e.checkpoint().step() == kSaveSteps && checkpoint_s < 0) {
      checkpoint_s = seconds(e);
    }
    if (!e.has_state()) continue;
    if (e.state().reason() == "Restarting") {
      restarting = e.state().message();
      restarting_s = seconds(e);
    }
    if (e.state().state() == Job::STARTING) relaunch = e.state().message();
  }
  ASSERT_GE(checkpoint_s, 0) << "no checkpoint-" << kSaveSteps << " event";
  EXPECT_LT(restarting_s - checkpoint_s, 15) << "the gang was stopped, not left waiting";
  EXPECT_NE(restarting.find("restart 1 of 1"), std::string::npos) << restarting;
  EXPECT_NE(restarting.find("rank 1 exited with code 137"), std::string::npos) << restarting;
  EXPECT_NE(restarting.find("the other 1 rank(s) were stopped"), std::string::npos) << restarting;
  EXPECT_NE(relaunch.find("2 ranks, attempt 1"), std::string::npos) << relaunch;
  for (int rank : {0, 1}) {
    EXPECT_TRUE(PathExists(JobLog(foakd, job.id(), 0, rank))) << rank;
    EXPECT_TRUE(PathExists(JobLog(foakd, job.id(), 1, rank))) << rank;
  }
  EXPECT_TRUE(ListDir(JoinPath(foakd.data_dir(), "jobs/" + job.id() + "/run"))
                  .value_or(std::vector<std::string>{})
                  .empty())
      << "no worker pid file is left";

  // Attempt 1 resumed from the checkpoint attempt 0 committed.
  const std::string out = done.output_dir();
  const std::string resumed = LogText(events, 1, 0);
  EXPECT_NE(resumed.find(absl::StrCat("resuming from ", out, "/checkpoint-", kSaveSteps)),
            std::string::npos)
      << resumed;
  EXPECT_EQ(LogText(events, 0, 0).find("resuming from"), std::string::npos);

  // Step by step the same numbers as the uninterrupted run, each step once.
  const std::map<int64_t, StepText> want =
      StepLines(JoinPath(reference_done.output_dir(), "metrics.jsonl"));
  const std::map<int64_t, StepText> got = StepLines(JoinPath(out, "metrics.jsonl"));
  ASSERT_EQ(want.size(), static_cast<size_t>(kMaxSteps));
  ASSERT_EQ(got.size(), static_cast<size_t>(kMaxSteps));
  for (int64_t step = 1; step <= kMaxSteps; ++step) {
    EXPECT_EQ(got.at(step).loss, want.at(step).loss) << "step " << step;
    EXPECT_EQ(got.at(step).grad_norm, want.at(step).grad_norm) << "step " << step;
  }
  EXPECT_NE(want.at(1).loss, want.at(kMaxSteps).loss) << "training moved the loss";
  EXPECT_TRUE(PathExists(JoinPath(out, "final/config.json"))) << out;
}

TEST_F(FoakdDataParallelE2E, KilledRankFailsTheJobWithoutRestartsNamingTheRank) {
  testing::FoakdProcess& foakd = StartFoakd("failed", KillRank1AfterCheckpoint());
  const Job job = Create(foakd, Spec("no-restarts", 0));
  const std::vector<JobEvent> events = WatchToEnd(foakd, job.id());
  const Job done = Get(foakd, job.id());
  ASSERT_EQ(done.state(), Job::FAILED) << done.reason() << ": " << done.message();
  EXPECT_EQ(States(events), (std::vector<Job::State>{Job::QUEUED, Job::STARTING, Job::RUNNING,
                                                      Job::FAILED}));
  EXPECT_EQ(done.reason(), "GangMemberFailed");
  EXPECT_EQ(done.restarts(), 0);
  EXPECT_NE(done.message().find("rank 1 exited with code 137"), std::string::npos)
      << done.message();
  EXPECT_NE(done.message().find("the other 1 rank(s) were stopped"), std::string::npos)
      << done.message();
  EXPECT_NE(done.message().find(JobLog(foakd, job.id(), 0, 1)), std::string::npos)
      << "the message points at the failed rank's log: " << done.message();
  EXPECT_FALSE(PathExists(JoinPath(done.output_dir(), "final")));
}

}  // namespace
}  // namespace foak

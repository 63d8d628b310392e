// The real foak-worker binary reporting a training run to foakd, as foakd
// launches it (FOAK_COORDINATOR, FOAK_JOB_ID, FOAK_JOB_TOKEN, FOAK_JOB_ATTEMPT,
// RANK in its environment), against a fake WorkerService in this process on
// the debug model: WorkerStarted with the run's max_steps, then exactly the
// run's metrics.jsonl lines as StepMetrics / EvalMetrics (same steps, same
// losses, max_steps filled in), then each committed checkpoint and the final
// folder. A refused token leaves training untouched; a half-set environment
// fails the job before any work, naming the missing variable.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "foak/v1/worker_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_worker_service.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using ReportCase = v1::WorkerReport::ReportCase;

using testing::FakeFoakd;

// The worker's environment as foakd sets it, for the runs in one scope.
class ScopedWorkerEnvironment {
 public:
  ScopedWorkerEnvironment(const std::string& coordinator, const std::string& job_id,
                          const std::string& token) {
    Set("FOAK_COORDINATOR", coordinator);
    Set("FOAK_JOB_ID", job_id);
    Set("FOAK_JOB_TOKEN", token);
    Set("FOAK_JOB_ATTEMPT", "1");
    Set("RANK", "0");
  }
  ~ScopedWorkerEnvironment() {
    for (const char* name :
         {"FOAK_COORDINATOR", "FOAK_JOB_ID", "FOAK_JOB_TOKEN", "FOAK_JOB_ATTEMPT", "RANK"}) {
      unsetenv(name);
    }
  }

 private:
  static void Set(const char* name, const std::string& value) {
    if (value.empty()) {
      unsetenv(name);
    } else {
      setenv(name, value.c_str(), 1);
    }
  }
};

std::string Src(const std::string& rel) { return std::string(FOAK_SOURCE_DIR) + "/" + rel; }

class WorkerReport : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_EQ(testing::RunWorker("init-model --config " + Src("examples/debug_model/config.json") +
                                     " --out " + model_ + " --seed 1",
                                 &err),
              0)
        << err;
  }

  // The demo job, short: 7 steps, a line every 2 steps (2, 4, 6, 7), an
  // evaluation at 4 and 7, checkpoints at 4 and 7, then final/.
  std::string WriteJob(const std::string& out) {
    Json job = Json::parse(ReadFileToString(Src("examples/demo_job.json")).value());
    job["model"] = model_;
    job["dataset"]["train"] = Src(job["dataset"]["train"]);
    job["dataset"]["validation"] = Src(job["dataset"]["validation"]);
    job["output_dir"] = out;
    job["device"] = "cpu";
    auto& h = job["hyperparameters"];
    h["max_steps"] = 7;
    h["warmup_steps"] = 2;
    h["logging_steps"] = 2;
    h["eval_steps"] = 4;
    h["save_steps"] = 4;
    h["eval_batch_size"] = 20;
    const std::string path = out + ".json";
    EXPECT_TRUE(WriteFileAtomically(path, job.dump(2)).ok());
    return path;
  }

  testing::TempDir dir_{"worker_report_test"};
  const std::string model_ = dir_.path() + "/model";
};

TEST_F(WorkerReport, FoakdGetsTheStartEveryMetricsLineAndTheCheckpoints) {
  FakeFoakd foakd;
  ASSERT_TRUE(foakd.ok());
  const std::string out = dir_.path() + "/out";
  const std::string job = WriteJob(out);
  std::string err;
  {
    ScopedWorkerEnvironment env(foakd.address(), "job-0123456789abcdef", "tok-abc");
    ASSERT_EQ(testing::RunWorker("train --job " + job, &err), 0) << err;
  }
  EXPECT_EQ(err.find("warning"), std::string::npos) << err;

  const std::vector<v1::WorkerReport> reports = foakd.service().reports();
  ASSERT_FALSE(reports.empty());
  for (const std::string& auth : foakd.service().authorization()) EXPECT_EQ(auth, "Bearer tok-abc");
  for (const v1::WorkerReport& r : reports) {
    EXPECT_EQ(r.job_id(), "job-0123456789abcdef");
    EXPECT_EQ(r.attempt(), 1);
    EXPECT_EQ(r.rank(), 0);
  }
  ASSERT_EQ(reports[0].report_case(), ReportCase::kStarted);
  EXPECT_EQ(reports[0].started().max_steps(), 7);
  EXPECT_EQ(reports[0].started().start_step(), 0);
  EXPECT_EQ(reports[0].started().device(), "cpu");

  // Metrics and evaluations: the lines of metrics.jsonl, in order.
  std::vector<v1::WorkerReport> lines_reported;
  std::vector<v1::Checkpoint> checkpoints;
  for (size_t i = 1; i < reports.size(); ++i) {
    if (reports[i].report_case() == ReportCase::kCheckpoint) {
      checkpoints.push_back(reports[i].checkpoint());
    } else {
      lines_reported.push_back(reports[i]);
    }
  }
  const std::vector<Json> lines = testing::ReadMetrics(out + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 6u) << "steps 2, 4, 6, 7 and evaluations at 4 and 7";
  ASSERT_EQ(lines_reported.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i].dump());
    if (lines[i].contains("loss")) {
      ASSERT_EQ(lines_reported[i].report_case(), ReportCase::kMetrics);
      const v1::StepMetrics& m = lines_reported[i].metrics();
      EXPECT_EQ(m.step(), lines[i].at("step").get<int64_t>());
      EXPECT_DOUBLE_EQ(m.loss(), lines[i].at("loss").get<double>());
      EXPECT_DOUBLE_EQ(m.learning_rate(), lines[i].at("learning_rate").get<double>());
      EXPECT_EQ(m.tokens(), lines[i].at("tokens").get<int64_t>());
      EXPECT_EQ(m.max_steps(), 7);
    } else {
      ASSERT_EQ(lines_reported[i].report_case(), ReportCase::kEval);
      const v1::EvalMetrics& e = lines_reported[i].eval();
      EXPECT_EQ(e.step(), lines[i].at("step").get<int64_t>());
      EXPECT_DOUBLE_EQ(e.eval_loss(), lines[i].at("eval_loss").get<double>());
      EXPECT_EQ(e.eval_tokens(), lines[i].at("eval_tokens").get<int64_t>());
    }
  }

  ASSERT_EQ(checkpoints.size(), 3u);
  EXPECT_EQ(checkpoints[0].step(), 4);
  EXPECT_EQ(checkpoints[0].path(), out + "/checkpoint-4");
  EXPECT_EQ(checkpoints[1].step(), 7);
  EXPECT_EQ(checkpoints[1].path(), out + "/checkpoint-7");
  EXPECT_EQ(checkpoints[2].step(), 7);
  EXPECT_EQ(checkpoints[2].path(), out + "/final");
  EXPECT_GT(checkpoints[2].time().seconds(), 0);
  EXPECT_TRUE(PathExists(out + "/final/config.json"));
  EXPECT_EQ(reports.back().report_case(), ReportCase::kCheckpoint);
}

TEST_F(WorkerReport, ARefusedTokenIsLoggedOnceAndTrainingGoesOn) {
  FakeFoakd foakd(0, /*refuse=*/true);
  ASSERT_TRUE(foakd.ok());
  const std::string out = dir_.path() + "/out";
  const std::string job = WriteJob(out);
  std::string err;
  {
    ScopedWorkerEnvironment env(foakd.address(), "job-0123456789abcdef", "wrong-token");
    ASSERT_EQ(testing::RunWorker("train --job " + job, &err), 0) << err;
  }
  EXPECT_NE(err.find("refused this worker's progress reports"), std::string::npos) << err;
  EXPECT_NE(err.find("PERMISSION_DENIED"), std::string::npos) << err;
  EXPECT_EQ(err.find("wrong-token"), std::string::npos) << err;
  EXPECT_EQ(foakd.service().authorization().size(), 1u) << "no retries after the refusal";
  EXPECT_EQ(testing::ReadMetrics(out + "/metrics.jsonl").size(), 6u);
  EXPECT_TRUE(PathExists(out + "/final/config.json"));
}

TEST_F(WorkerReport, AHalfSetEnvironmentFailsTheJobNamingTheVariable) {
  const std::string out = dir_.path() + "/out";
  const std::string job = WriteJob(out);
  std::string err;
  {
    ScopedWorkerEnvironment env("127.0.0.1:1", "job-0123456789abcdef", /*token=*/"");
    EXPECT_EQ(testing::RunWorker("train --job " + job, &err), 1);
  }
  EXPECT_NE(err.find("FOAK_JOB_TOKEN"), std::string::npos) << err;
  EXPECT_FALSE(PathExists(out)) << "nothing is written before the environment is checked";
}

}  // namespace
}  // namespace foak

// The README's main flow with the real binaries: foakd on its defaults, a job
// submitted with `foakctl submit -f JOB --watch` and watched to the end, then
// list / get / logs / checkpoints; cancel with the exit codes scripts rely
// on; a watch that survives a foakd restart (it reconnects and resumes); and
// readable errors for a bad spec and an unreachable foakd.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/foakd_process.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;

// Runs foakctl with `args` against `server` (FOAK_SERVER) from `cwd`.
testing::WorkerResult Foakctl(const std::string& server, const std::string& args,
                              const std::string& cwd) {
  return testing::RunCapture("cd " + cwd + " && FOAK_SERVER=" + server + " " + FOAKCTL_BIN + " " +
                             args);
}

class FoakctlE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WorkerResult r = testing::RunWorkerCapture(
        "init-model --config " + std::string(FOAK_SOURCE_DIR) +
        "/examples/debug_model/config.json --out " + JoinPath(dir_.path(), "model") + " --seed 1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(MakeDirs(JoinPath(dir_.path(), "data")).ok());
    ASSERT_TRUE(WriteFileAtomically(
                    JoinPath(dir_.path(), "data/train.jsonl"),
                    ReadFileToString(std::string(FOAK_SOURCE_DIR) + "/examples/data/arith_train.jsonl")
                        .value())
                    .ok());
  }
  // A job file with paths relative to the test folder, as a user writes one.
  std::string WriteJob(const std::string& name, int64_t steps, int64_t save_steps = 0) {
    Json job = {{"name", name},
                {"model", "model"},
                {"dataset", {{"train", "data/train.jsonl"}, {"format", "chat"}}},
                {"output_dir", "out-" + name},
                {"hyperparameters",
                 {{"max_steps", steps}, {"batch_size", 2}, {"max_seq_len", 64},
                  {"logging_steps", 2}, {"save_steps", save_steps}, {"precision", "fp32"},
                  {"learning_rate", 0.005}}}};
    const std::string path = JoinPath(dir_.path(), name + ".json");
    EXPECT_TRUE(WriteFileAtomically(path, job.dump(2)).ok());
    return name + ".json";
  }
  std::string Submit(const std::string& server, const std::string& file) {
    testing::WorkerResult r = Foakctl(server, "submit -f " + file + " -o json", dir_.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Json job = Json::parse(r.out, nullptr, false);
    EXPECT_TRUE(job.is_object()) << r.out;
    return job.is_object() ? job.value("id", "") : "";
  }

  testing::TempDir dir_{"foakctl_e2e"};
};

TEST_F(FoakctlE2E, SubmitAndWatchToTheEndThenInspect) {
  testing::FoakdProcess foakd(JoinPath(dir_.path(), "foakd"));
  ASSERT_TRUE(foakd.Start());
  const std::string job_file = WriteJob("readme", 10, 5);
  testing::WorkerResult watched = Foakctl(foakd.address(), "submit -f " + job_file + " --watch", dir_.path());
  EXPECT_EQ(watched.exit_code, 0) << watched.out << watched.err << foakd.Log();
  EXPECT_NE(watched.out.find("SUCCEEDED"), std::string::npos) << watched.out;
  EXPECT_NE(watched.out.find("10/10"), std::string::npos) << "the progress line shows step/total: "
                                                          << watched.out;
  EXPECT_TRUE(PathExists(JoinPath(dir_.path(), "out-readme/final/config.json")))
      << "relative paths in the job file are the user's, not foakd's";

  testing::WorkerResult list = Foakctl(foakd.address(), "list -o json", dir_.path());
  ASSERT_EQ(list.exit_code, 0) << list.err;
  Json jobs = Json::parse(list.out, nullptr, false);
  ASSERT_FALSE(jobs.is_discarded()) << list.out;
  const Json& first = jobs.is_array() ? jobs.at(0) : jobs.at("jobs").at(0);
  const std::string id = first.at("id");
  EXPECT_EQ(first.at("state"), "SUCCEEDED");

  testing::WorkerResult table = Foakctl(foakd.address(), "list", dir_.path());
  EXPECT_NE(table.out.find(id), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("SUCCEEDED"), std::string::npos) << table.out;

  testing::WorkerResult get = Foakctl(foakd.address(), "get " + id + " -o json", dir_.path());
  ASSERT_EQ(get.exit_code, 0) << get.err;
  // Proto JSON writes int64 as a string.
  EXPECT_EQ(Json::parse(get.out).at("progress").at("step"), "10") << get.out;

  testing::WorkerResult logs = Foakctl(foakd.address(), "logs " + id, dir_.path());
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("trained to step 10"), std::string::npos) << logs.out;

  testing::WorkerResult ckpts = Foakctl(foakd.address(), "checkpoints " + id, dir_.path());
  EXPECT_EQ(ckpts.exit_code, 0) << ckpts.err;
  EXPECT_NE(ckpts.out.find("checkpoint-5"), std::string::npos) << ckpts.out;
}

TEST_F(FoakctlE2E, CancelAndExitCodes) {
  testing::FoakdProcess foakd(JoinPath(dir_.path(), "foakd"));
  ASSERT_TRUE(foakd.Start());
  const std::string id = Submit(foakd.address(), WriteJob("long", 100000));
  ASSERT_FALSE(id.empty());
  testing::WorkerResult cancel = Foakctl(foakd.address(), "cancel " + id, dir_.path());
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  testing::WorkerResult watch = Foakctl(foakd.address(), "watch " + id, dir_.path());
  EXPECT_EQ(watch.exit_code, 5) << "a cancelled job: " << watch.out << watch.err;
  EXPECT_NE(watch.out.find("CANCELLED"), std::string::npos) << watch.out;
  testing::WorkerResult again = Foakctl(foakd.address(), "cancel " + id, dir_.path());
  EXPECT_EQ(again.exit_code, 7) << "a refused request: " << again.err;
  testing::WorkerResult missing = Foakctl(foakd.address(), "get job-0000000000000000", dir_.path());
  EXPECT_EQ(missing.exit_code, 3) << missing.err;

  // A spec error names the field; a local mistake in the file is a usage error.
  Json bad = Json::parse(ReadFileToString(JoinPath(dir_.path(), "long.json")).value());
  bad["hyperparameters"]["lr_scheduler"] = "cosin";
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir_.path(), "bad.json"), bad.dump()).ok());
  testing::WorkerResult refused = Foakctl(foakd.address(), "submit -f bad.json", dir_.path());
  EXPECT_EQ(refused.exit_code, 7) << refused.err;
  EXPECT_NE(refused.err.find("hyperparameters.lr_scheduler"), std::string::npos) << refused.err;
  testing::WorkerResult unreachable = Foakctl("127.0.0.1:1", "list --timeout 2", dir_.path());
  EXPECT_EQ(unreachable.exit_code, 6) << unreachable.err;
}

TEST_F(FoakctlE2E, WatchSurvivesAFoakdRestart) {
  const std::string data = JoinPath(dir_.path(), "foakd");
  auto foakd = std::make_unique<testing::FoakdProcess>(data);
  ASSERT_TRUE(foakd->Start());
  const int port = foakd->grpc_port();
  const std::string id = Submit(foakd->address(), WriteJob("survivor", 30, 5));
  ASSERT_FALSE(id.empty());
  // `foakctl watch` in the background while foakd stops and comes back.
  const std::string out = JoinPath(dir_.path(), "watch.out");
  const std::string cmd = "cd " + dir_.path() + " && FOAK_SERVER=" + foakd->address() + " " +
                          FOAKCTL_BIN + " watch " + id + " >" + out + " 2>&1";
  pid_t watcher = fork();
  if (watcher == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  foakd->Kill(SIGTERM);
  foakd = std::make_unique<testing::FoakdProcess>(data);
  ASSERT_TRUE(foakd->Start(port)) << "the same port, so the watcher can come back";
  int status = 0;
  ASSERT_EQ(waitpid(watcher, &status, 0), watcher);
  const std::string text = ReadFileToString(out).value_or("");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text << foakd->Log();
  EXPECT_NE(text.find("SUCCEEDED"), std::string::npos) << text;
  // Nothing printed twice: the final state line appears once.
  EXPECT_EQ(text.find("SUCCEEDED"), text.rfind("SUCCEEDED")) << text;
}

// `foakctl bench` submits a benchmark job to foakd, which launches the real
// worker; the rows come back through foakd's events as JSON Lines (-o json)
// and as the table (-o table), and the job's bench.jsonl holds the same rows.
TEST_F(FoakctlE2E, BenchThroughFoakd) {
  testing::FoakdProcess foakd(JoinPath(dir_.path(), "foakd"));
  ASSERT_TRUE(foakd.Start());
  const std::string model = std::string(FOAK_SOURCE_DIR) + "/examples/debug_model";
  const std::string common = "bench --model " + model +
                             " --kernels none --kernels all --batch 2 --seq 16,24 --steps 2"
                             " --warmup 1 --precision fp32 --gpus 0";
  testing::WorkerResult json = Foakctl(foakd.address(), common + " --name e2e-bench -o json",
                                       dir_.path());
  ASSERT_EQ(json.exit_code, 0) << json.out << json.err << foakd.Log();
  std::vector<Json> rows;
  for (absl::string_view line : absl::StrSplit(json.out, '\n', absl::SkipEmpty())) {
    rows.push_back(Json::parse(line));
  }
  ASSERT_EQ(rows.size(), 4u) << json.out;
  for (size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE(rows[i].dump());
    EXPECT_EQ(rows[i]["index"], static_cast<int>(i));
    EXPECT_EQ(rows[i]["status"], "ok");
    EXPECT_EQ(rows[i]["model"], "debug_model");
    EXPECT_EQ(rows[i]["kernels"], i % 2 == 0 ? "none" : "all");
    EXPECT_EQ(rows[i]["seq"], i < 2 ? 16 : 24);
    EXPECT_EQ(rows[i]["device"], "cpu");
    EXPECT_GT(rows[i]["tokens_per_second"].get<double>(), 0);
    EXPECT_EQ(rows[i]["pct_change"].is_null(), i % 2 == 0);
  }

  testing::WorkerResult table = Foakctl(foakd.address(), common, dir_.path());
  ASSERT_EQ(table.exit_code, 0) << table.out << table.err;
  EXPECT_NE(table.out.find("tokens/s"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("% change"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("peak GiB"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("debug_model"), std::string::npos) << table.out;

  // The benchmark is a job like any other: it is listed.
  testing::WorkerResult list = Foakctl(foakd.address(), "list -o json", dir_.path());
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("e2e-bench"), std::string::npos) << list.out;
}

}  // namespace
}  // namespace foak

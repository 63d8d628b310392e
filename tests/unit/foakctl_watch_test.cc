// foakctl watch and logs against the in-memory foakd: the lines printed for
// each kind of event, the live line on a terminal, JSON lines, exit codes by
// final state, and resuming a broken stream with after_seq without printing
// anything twice.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "client/testing/fake_foakd.h"
#include "client/testing/run_foakctl.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace foak::client {
namespace {

using foak::v1::Job;
using foak::v1::JobEvent;
using testing::FakeFoakd;
using testing::FastTestOptions;
using testing::FoakctlResult;
using testing::RunFoakctl;
using testing::StateEvent;
using ::testing::HasSubstr;

int CountOf(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

JobEvent Metrics(const std::string& id, int64_t seq, int64_t step, double loss, double elapsed_s) {
  JobEvent e;
  e.set_job_id(id);
  e.set_seq(seq);
  foak::v1::StepMetrics* m = e.mutable_metrics();
  m->set_step(step);
  m->set_max_steps(160);
  m->set_loss(loss);
  m->set_tokens_per_second(1234.4);
  m->set_peak_memory_bytes(int64_t{1288490189});  // 1.2 GiB
  m->set_elapsed_s(elapsed_s);
  return e;
}

JobEvent Log(const std::string& id, int64_t seq, int rank, const std::string& text) {
  JobEvent e;
  e.set_job_id(id);
  e.set_seq(seq);
  e.mutable_log()->set_rank(rank);
  e.mutable_log()->set_text(text);
  return e;
}


class WatchTest : public ::testing::Test {
 protected:
  FoakctlResult Run(std::vector<std::string> args) {
    args.push_back("--server");
    args.push_back(server_.address());
    return RunFoakctl(args, options_);
  }

  std::string AddJob(Job::State state) {
    Job job;
    job.set_state(state);
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    return server_.jobs.AddJob(job);
  }

  // A job's history: queued, running, two logged steps, an evaluation, a
  // checkpoint, a log line and the final state.
  void Script(Job::State final_state, int64_t break_after_seq = 0) {
    id_ = AddJob(Job::QUEUED);
    JobEvent eval;
    eval.set_job_id(id_);
    eval.set_seq(5);
    eval.mutable_eval()->set_step(80);
    eval.mutable_eval()->set_eval_loss(1.8734);
    JobEvent checkpoint;
    checkpoint.set_job_id(id_);
    checkpoint.set_seq(6);
    checkpoint.mutable_checkpoint()->set_step(80);
    checkpoint.mutable_checkpoint()->set_path("/out/checkpoint-80");
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.events = {
        StateEvent(id_, 1, Job::QUEUED, "Created", ""),
        StateEvent(id_, 2, Job::RUNNING, "Started", ""),
        Metrics(id_, 3, 40, 2.0134, 10.0),
        Metrics(id_, 4, 80, 1.9, 20.0),  // 4 steps/s: 80 left -> 20 s
        eval,
        checkpoint,
        Log(id_, 7, 0, "not shown by watch"),
        StateEvent(id_, 8, final_state, final_state == Job::SUCCEEDED ? "Completed" : "Stopped", "bye"),
    };
    server_.jobs.break_after_seq = break_after_seq;
  }
  FakeFoakd server_;
  FoakctlOptions options_ = FastTestOptions();
  std::string id_;
};

TEST_F(WatchTest, PrintsProgressAndExits0OnSuccess) {
  Script(Job::SUCCEEDED);
  const FoakctlResult r = Run({"watch", id_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "22:13:21  QUEUED  Created\n"  // 1700000001 UTC
            "22:13:22  RUNNING  Started\n"
            "RUNNING  step 40/160  loss 2.013  1,234 tok/s  mem 1.2 GiB  ETA 30s\n"
            "RUNNING  step 80/160  loss 1.900  1,234 tok/s  mem 1.2 GiB  ETA 20s\n"
            "eval  step 80  eval_loss 1.873\n"
            "checkpoint  step 80  /out/checkpoint-80\n"
            "22:13:28  SUCCEEDED  Completed: bye\n")
      << r.out;
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.watch_requests.size(), 1u);
  EXPECT_EQ(server_.jobs.watch_requests[0].after_seq(), 0);
  EXPECT_FALSE(server_.jobs.watch_requests[0].history_only());
}

TEST_F(WatchTest, ExitCodeFollowsTheFinalState) {
  Script(Job::FAILED);
  EXPECT_EQ(Run({"watch", id_}).code, 4);
}

TEST_F(WatchTest, CancelledExits5) {
  Script(Job::CANCELLED);
  EXPECT_EQ(Run({"watch", id_}).code, 5);
}

TEST_F(WatchTest, ReconnectsAfterABrokenStreamWithoutRepeatingLines) {
  Script(Job::SUCCEEDED, /*break_after_seq=*/3);
  const FoakctlResult r = Run({"watch", id_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(CountOf(r.out, "QUEUED"), 1);
  EXPECT_EQ(CountOf(r.out, "step 40/160"), 1);
  EXPECT_EQ(CountOf(r.out, "step 80/160"), 1);
  EXPECT_EQ(CountOf(r.out, "SUCCEEDED"), 1);
  EXPECT_THAT(r.err, HasSubstr("reconnecting after event 3"));
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.watch_requests.size(), 2u);
  EXPECT_EQ(server_.jobs.watch_requests[0].after_seq(), 0);
  EXPECT_EQ(server_.jobs.watch_requests[1].after_seq(), 3);
}

TEST_F(WatchTest, ReconnectsAfterACallTheStoppingServerCancelled) {
  Script(Job::SUCCEEDED, /*break_after_seq=*/3);
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.break_code = grpc::StatusCode::CANCELLED;
  }
  const FoakctlResult r = Run({"watch", id_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(CountOf(r.out, "SUCCEEDED"), 1);
  EXPECT_THAT(r.err, HasSubstr("reconnecting after event 3"));
}

TEST_F(WatchTest, AfterSeqAndJsonLines) {
  Script(Job::SUCCEEDED);
  const FoakctlResult r = Run({"watch", id_, "--after-seq", "2", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << r.out;  // seq 3..6 and 8 (the log is not asked for)
  for (const std::string& line : lines) {
    const nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["job_id"], id_);
  }
  EXPECT_EQ(nlohmann::json::parse(lines[0])["metrics"]["max_steps"], "160");  // int64 as string
}

TEST_F(WatchTest, RewritesTheLiveLineOnATerminal) {
  Script(Job::SUCCEEDED);
  options_.out_is_tty = true;
  const FoakctlResult r = Run({"watch", id_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\rRUNNING  step 40/160  loss 2.013  1,234 tok/s  mem 1.2 GiB  ETA 30s\033[K"
                               "\rRUNNING  step 80/160"));
  // The eval line goes above the live line, which is then redrawn.
  EXPECT_THAT(r.out, HasSubstr("\r\033[Keval  step 80  eval_loss 1.873\nRUNNING  step 80/160"));
  EXPECT_TRUE(absl::EndsWith(r.out, "\n22:13:28  SUCCEEDED  Completed: bye\n")) << r.out;
}

TEST_F(WatchTest, LogsPrintsTheTextOnly) {
  const std::string id = AddJob(Job::RUNNING);
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.events = {StateEvent(id, 1, Job::RUNNING, "Started", ""), Log(id, 2, 0, "loading model\n"),
                           Metrics(id, 3, 1, 2.5, 1.0), Log(id, 4, 0, "step 1")};
  }
  const FoakctlResult r = Run({"logs", id});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "loading model\nstep 1\n");
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.watch_requests.size(), 1u);
  EXPECT_TRUE(server_.jobs.watch_requests[0].history_only());
  ASSERT_EQ(server_.jobs.watch_requests[0].kinds_size(), 1);
  EXPECT_EQ(server_.jobs.watch_requests[0].kinds(0), "log");
}

TEST_F(WatchTest, LogsPrefixesRanksOnlyForMultiRankJobs) {
  const std::string id = AddJob(Job::SUCCEEDED);
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.events = {Log(id, 1, 0, "a"), Log(id, 2, 1, "b")};
  }
  const FoakctlResult r = Run({"logs", id, "-f"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[rank 0] a\n[rank 1] b\n");
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.watch_requests.size(), 2u);  // the history, then following
  EXPECT_FALSE(server_.jobs.watch_requests[1].history_only());
  EXPECT_EQ(server_.jobs.watch_requests[1].after_seq(), 2);
}

}  // namespace
}  // namespace foak::client

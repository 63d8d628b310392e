// The job state machine and the SQLite JobStore: legal and illegal moves,
// idempotent creates by request_id, paging, event numbering with resume after
// a given seq, checkpoints, restart counting, and that everything survives
// closing and reopening the database file (a foakd restart).
#include <unistd.h>

#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "server/domain/job_state.h"
#include "server/storage/sqlite_job_store.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

std::unique_ptr<JobStore> Open(const std::string& path, int64_t* clock) {
  SqliteJobStoreOptions o;
  o.path = path;
  o.now_ms = [clock] { return ++*clock; };
  auto store = OpenSqliteJobStore(o);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

JobRecord Spec(const std::string& body, const std::string& request_id = "") {
  JobRecord j;
  j.spec_json = body;
  j.request_id = request_id;
  j.gpus = 1;
  j.max_restarts = 2;
  return j;
}

TEST(JobState, TransitionsFollowTheLifecycle) {
  EXPECT_TRUE(CheckTransition("j", JobState::kQueued, JobState::kStarting).ok());
  EXPECT_TRUE(CheckTransition("j", JobState::kQueued, JobState::kCancelled).ok());
  EXPECT_TRUE(CheckTransition("j", JobState::kRunning, JobState::kCancelling).ok());
  EXPECT_TRUE(CheckTransition("j", JobState::kRunning, JobState::kQueued).ok());
  EXPECT_TRUE(CheckTransition("j", JobState::kCancelling, JobState::kSucceeded).ok());
  absl::Status s = CheckTransition("job-1", JobState::kSucceeded, JobState::kCancelling);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("job-1 is SUCCEEDED and cannot become CANCELLING"), std::string::npos)
      << s;
  EXPECT_NE(s.message().find("only QUEUED, STARTING and RUNNING"), std::string::npos) << s;
  EXPECT_FALSE(CheckTransition("j", JobState::kQueued, JobState::kRunning).ok());
  for (JobState f : {JobState::kSucceeded, JobState::kFailed, JobState::kCancelled}) {
    EXPECT_TRUE(IsFinal(f));
    EXPECT_FALSE(CheckTransition("j", f, JobState::kQueued).ok());
  }
  EXPECT_EQ(JobStateFromName("CANCELLING"), JobState::kCancelling);
  EXPECT_FALSE(JobStateFromName("cancelling").has_value());
}

TEST(SqliteJobStore, CreateIsIdempotentByRequestId) {
  int64_t clock = 1000;
  auto store = Open(":memory:", &clock);
  auto a = store->CreateJob(Spec("{\"model\":\"m\"}", "req-1"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->state, JobState::kQueued);
  EXPECT_EQ(a->id.rfind("job-", 0), 0u);
  auto again = store->CreateJob(Spec("{\"model\":\"m\"}", "req-1"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, a->id);
  auto other = store->CreateJob(Spec("{\"model\":\"other\"}", "req-1"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(other.status().message().find(a->id), std::string::npos) << other.status();
  auto b = store->CreateJob(Spec("{\"model\":\"m\"}"));  // no request_id: always new
  auto c = store->CreateJob(Spec("{\"model\":\"m\"}"));
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_NE(b->id, c->id);
  EXPECT_EQ(store->GetJob("job-nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(SqliteJobStore, ListPagesNewestFirstAndFiltersByState) {
  int64_t clock = 0;
  auto store = Open(":memory:", &clock);
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(store->CreateJob(Spec(std::to_string(i))).value().id);
  ASSERT_TRUE(store->UpdateState(ids[2], JobState::kCancelled, "Cancelled", "by user").ok());
  std::vector<std::string> seen;
  ListJobsQuery q;
  q.page_size = 3;
  for (int page = 0; page < 5; ++page) {
    auto p = store->ListJobs(q);
    ASSERT_TRUE(p.ok()) << p.status();
    for (const auto& j : p->jobs) seen.push_back(j.id);
    if (p->next_page_token.empty()) break;
    q.page_token = p->next_page_token;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}));
  ListJobsQuery cancelled;
  cancelled.state = JobState::kCancelled;
  auto p = store->ListJobs(cancelled);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->jobs.size(), 1u);
  EXPECT_EQ(p->jobs[0].id, ids[2]);
  ListJobsQuery bad;
  bad.page_token = "xyz";
  EXPECT_EQ(store->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.page_token.clear();
  bad.page_size = 0;
  EXPECT_EQ(store->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SqliteJobStore, EventsAreNumberedAndResumeAfterASeq) {
  int64_t clock = 0;
  auto store = Open(":memory:", &clock);
  const std::string id = store->CreateJob(Spec("{}")).value().id;  // seq 1: the QUEUED state
  ASSERT_TRUE(store->UpdateState(id, JobState::kStarting, "Scheduled", "").ok());  // seq 2
  ASSERT_TRUE(store->UpdateState(id, JobState::kRunning, "Started", "").ok());     // seq 3
  EXPECT_EQ(store->AppendEvent(id, "metrics", "{\"step\":1}").value(), 4);
  ASSERT_TRUE(store->AddCheckpoint({id, 10, "/out/checkpoint-10", 0}).ok());  // seq 5
  EXPECT_EQ(store->AppendEvent(id, "log", "{\"line\":\"x\"}").value(), 6);
  auto all = store->ListEvents(id, 0, 100).value();
  ASSERT_EQ(all.size(), 6u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].seq, static_cast<int64_t>(i + 1));
  EXPECT_EQ(all[0].kind, "state");
  EXPECT_NE(all[0].payload_json.find("QUEUED"), std::string::npos);
  EXPECT_EQ(all[4].kind, "checkpoint");
  auto rest = store->ListEvents(id, 3, 2).value();
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].seq, 4);
  EXPECT_EQ(rest[1].seq, 5);
  EXPECT_EQ(store->AppendEvent("job-missing", "log", "{}").status().code(),
            absl::StatusCode::kNotFound);
  auto bad = store->UpdateState(id, JobState::kQueued, "", "");  // RUNNING -> QUEUED is a restart
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->restarts, 1);
}

// Every rank of a data-parallel job stores its step metrics; the job's
// progress reads rank 0's newest, the per-rank memory each rank's.
TEST(SqliteJobStore, LastRankEventPicksThatRanksNewest) {
  int64_t clock = 0;
  auto store = Open(":memory:", &clock);
  const std::string id = store->CreateJob(Spec("{}")).value().id;
  ASSERT_TRUE(store->AppendEvent(id, "metrics", "not json").ok());  // fails no query
  ASSERT_TRUE(store->AppendEvent(id, "metrics", R"({"step":1})").ok());  // no rank: rank 0
  ASSERT_TRUE(store->AppendEvent(id, "metrics", R"({"step":1,"rank":1})").ok());
  ASSERT_TRUE(store->AppendEvent(id, "metrics", R"({"step":2,"rank":0})").ok());
  ASSERT_TRUE(store->AppendEvent(id, "metrics", R"({"step":2,"rank":1})").ok());
  ASSERT_TRUE(store->AppendEvent(id, "log", R"({"rank":0,"text":"x"})").ok());  // another kind
  std::optional<JobEvent> e = store->LastRankEvent(id, "metrics", 0).value();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->payload_json, R"({"step":2,"rank":0})");
  EXPECT_EQ(e->kind, "metrics");
  e = store->LastRankEvent(id, "metrics", 1).value();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->payload_json, R"({"step":2,"rank":1})");
  EXPECT_FALSE(store->LastRankEvent(id, "metrics", 2).value().has_value());
  EXPECT_FALSE(store->LastRankEvent(id, "eval", 0).value().has_value());
  // A payload without "rank" is rank 0's (as every event before data parallel).
  const std::string old = store->CreateJob(Spec("{\"a\":1}")).value().id;
  ASSERT_TRUE(store->AppendEvent(old, "metrics", R"({"step":7})").ok());
  e = store->LastRankEvent(old, "metrics", 0).value();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->payload_json, R"({"step":7})");
}

TEST(SqliteJobStore, EverythingSurvivesReopeningTheFile) {
  testing::TempDir dir("job_store_test");
  const std::string path = dir.path() + "/foakd.db";
  int64_t clock = 0;
  std::string id;
  {
    auto store = Open(path, &clock);
    id = store->CreateJob(Spec("{\"model\":\"m\"}", "req-7")).value().id;
    ASSERT_TRUE(store->UpdateState(id, JobState::kStarting, "Scheduled", "").ok());
    ASSERT_TRUE(store->UpdateState(id, JobState::kRunning, "Started", "pid 42").ok());
    ASSERT_TRUE(store->AddCheckpoint({id, 5, "/o/checkpoint-5", 0}).ok());
    ASSERT_TRUE(store->CreateJob(Spec("{\"model\":\"q\"}")).ok());
  }
  auto store = Open(path, &clock);
  auto job = store->GetJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, JobState::kRunning);
  EXPECT_EQ(job->message, "pid 42");
  EXPECT_EQ(store->ListEvents(id, 0, 100).value().size(), 4u);
  EXPECT_EQ(store->AppendEvent(id, "log", "{}").value(), 5);  // numbering continues
  EXPECT_EQ(store->ListCheckpoints(id).value().at(0).path, "/o/checkpoint-5");
  EXPECT_EQ(store->CreateJob(Spec("{\"model\":\"m\"}", "req-7")).value().id, id);
  auto live = store->JobsInStates({JobState::kQueued, JobState::kRunning}).value();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].id, id);  // oldest first
}

TEST(SqliteJobStore, UnopenableFileIsAClearError) {
  SqliteJobStoreOptions o;
  o.path = "/nonexistent-dir/foakd.db";
  auto store = OpenSqliteJobStore(o);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/foakd.db"), std::string::npos)
      << store.status();
}

}  // namespace
}  // namespace foak

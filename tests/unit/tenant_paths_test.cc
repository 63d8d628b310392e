// Per-tenant file-system isolation (job_spec_policy.h, "Several tenants"; and
// JobManager's output-folder index, job_manager_outputs.cc): with tenants each
// root is split into <root>/<tenant>/, shared model roots are readable by all
// and may not overlap an output root, and no two unfinished jobs write one
// output folder or one inside the other -- refused naming the other job to
// its own tenant and only "in use" to another.
#include <limits.h>
#include <stdlib.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/domain/job_manager.h"
#include "server/domain/job_spec.h"
#include "server/domain/job_spec_policy.h"
#include "server/launch/fake_launcher.h"
#include "server/metrics/server_metrics.h"
#include "server/storage/sqlite_job_store.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;

std::string Real(const std::string& path) {
  char* r = realpath(path.c_str(), nullptr);
  std::string out = r == nullptr ? path : r;
  free(r);
  return out;
}

void ExpectIn(const absl::Status& s, absl::StatusCode code, const std::vector<std::string>& needles) {
  EXPECT_EQ(s.code(), code) << s;
  for (const std::string& n : needles) {
    EXPECT_NE(s.message().find(n), std::string::npos) << "missing '" << n << "' in: " << s;
  }
}

// Layout under R (a temp folder's real path):
//   models/{alice,bob}/m/config.json   each tenant's own model
//   shared/base/config.json            a model every tenant may use
//   data/{alice,bob}/train.jsonl
//   out/                               the output root (tenants' folders created by jobs)
class TenantPathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = Real(dir_.path());
    for (const char* d : {"models/alice/m", "models/bob/m", "shared/base", "data/alice", "data/bob",
                          "out", "jobs"}) {
      ASSERT_TRUE(MakeDirs(P(d)).ok());
    }
    for (const char* f : {"models/alice/m/config.json", "models/bob/m/config.json",
                          "shared/base/config.json"}) {
      ASSERT_TRUE(WriteFileAtomically(P(f), "{}").ok());
    }
    for (const char* f : {"data/alice/train.jsonl", "data/bob/train.jsonl"}) {
      ASSERT_TRUE(WriteFileAtomically(P(f), "{\"text\": \"hi\"}\n").ok());
    }
    JobSpecPolicy given;
    given.model_roots = {P("models")};
    given.data_roots = {P("data")};
    given.output_roots = {P("out")};
    given.shared_model_roots = {P("shared")};
    given.tenants = true;
    absl::StatusOr<JobSpecPolicy> policy = ResolveJobSpecPolicy(given);
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = *policy;
  }
  std::string P(const std::string& rel) const { return JoinPath(root_, rel); }
  Json Spec(const std::string& tenant, const std::string& output_dir = "") const {
    Json spec = {{"model", P("models/" + tenant + "/m")},
                 {"dataset", {{"train", P("data/" + tenant + "/train.jsonl")}}}};
    if (!output_dir.empty()) spec["output_dir"] = output_dir;
    return spec;
  }
  absl::Status Prepare(const Json& spec, const std::string& tenant) {
    absl::StatusOr<JobSpecPolicy> p = PolicyForTenant(policy_, tenant);
    if (!p.ok()) return p.status();
    JobSpecContext context;
    context.total_gpus = 0;
    context.policy = *p;
    context.jobs_dir = P("jobs");
    return PrepareJobSpec(spec.dump(), context).status();
  }

  void OpenManager() {
    worker_ = P("foak-worker");
    ASSERT_TRUE(WriteFileAtomically(worker_, "#!/bin/sh\n").ok());
    ASSERT_EQ(chmod(worker_.c_str(), 0755), 0);
    SqliteJobStoreOptions so;
    so.path = P("foakd.db");
    store_ = OpenSqliteJobStore(so).value();
    tokens_ = WorkerTokens::WithKey(std::string(32, 'k'));
    JobManagerOptions o;
    o.data_dir = P("foakd");
    o.worker_path = worker_;
    o.stall_check_interval_ms = 0;
    o.spec_policy = policy_;
    SchedulerOptions s;
    s.cpu_slots = 8;
    manager_ = JobManager::Create(o, store_.get(), nullptr, tokens_.get(), &metrics_, s,
                                  [this](Launcher::Callbacks cb) -> absl::StatusOr<std::unique_ptr<Launcher>> {
                                    auto l = std::make_unique<FakeLauncher>(std::move(cb));
                                    launcher_ = l.get();
                                    return std::unique_ptr<Launcher>(std::move(l));
                                  })
                   .value();
    manager_->SetCoordinatorAddress("127.0.0.1:7070");
    ASSERT_TRUE(manager_->Start().ok());
  }
  absl::StatusOr<JobView> Create(const Json& spec, const std::string& tenant,
                                 const std::string& request_id = "", bool validate_only = false) {
    return manager_->CreateJob(spec.dump(), request_id, validate_only, tenant);
  }

  testing::TempDir dir_{"tenant_paths"};
  std::string root_, worker_;
  JobSpecPolicy policy_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<WorkerTokens> tokens_;
  ServerMetrics metrics_;
  std::unique_ptr<JobManager> manager_;
  FakeLauncher* launcher_ = nullptr;
};

TEST_F(TenantPathsTest, EachRootIsSplitPerTenantAndSharedModelsJoinTheModelRoots) {
  absl::StatusOr<JobSpecPolicy> alice = PolicyForTenant(policy_, "alice");
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->model_roots, (std::vector<std::string>{P("models/alice"), P("shared")}));
  EXPECT_EQ(alice->data_roots, std::vector<std::string>{P("data/alice")});
  EXPECT_EQ(alice->output_roots, std::vector<std::string>{P("out/alice")});  // not created yet
  // Without tenants the roots stay whole; shared models still join.
  JobSpecPolicy one = policy_;
  one.tenants = false;
  absl::StatusOr<JobSpecPolicy> whole = PolicyForTenant(one, "");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->output_roots, std::vector<std::string>{P("out")});
  EXPECT_EQ(whole->model_roots, (std::vector<std::string>{P("models"), P("shared")}));
  // With tenants, a job without one has no folders to use.
  ExpectIn(PolicyForTenant(policy_, "").status(), absl::StatusCode::kInvalidArgument,
           {"no tenant", "--auth_tokens_file"});
}

TEST_F(TenantPathsTest, ATenantsPathsMustLieInItsOwnFolders) {
  EXPECT_TRUE(Prepare(Spec("alice", P("out/alice/run1")), "alice").ok());
  EXPECT_TRUE(Prepare(Spec("bob", P("out/bob/run1")), "bob").ok());
  // Bob may not write into alice's output folder ...
  ExpectIn(Prepare(Spec("bob", P("out/alice/run1")), "bob"), absl::StatusCode::kInvalidArgument,
           {"output_dir", P("out/alice/run1"), P("out/bob"), "--output_roots"});
  // ... nor into the root itself, outside every tenant's folder,
  ExpectIn(Prepare(Spec("bob", P("out/run1")), "bob"), absl::StatusCode::kInvalidArgument,
           {"output_dir", P("out/bob")});
  // ... nor use her model, her data, or her output (final/) as a model,
  Json spec = Spec("bob", P("out/bob/run2"));
  spec["model"] = P("models/alice/m");
  ExpectIn(Prepare(spec, "bob"), absl::StatusCode::kInvalidArgument, {"model", P("models/bob")});
  ASSERT_TRUE(MakeDirs(P("out/alice/run1/final")).ok());
  ASSERT_TRUE(WriteFileAtomically(P("out/alice/run1/final/config.json"), "{}").ok());
  spec["model"] = P("out/alice/run1/final");
  ExpectIn(Prepare(spec, "bob"), absl::StatusCode::kInvalidArgument, {"model", "outside"});
  spec = Spec("bob", P("out/bob/run2"));
  spec["dataset"]["train"] = P("data/alice/train.jsonl");
  ExpectIn(Prepare(spec, "bob"), absl::StatusCode::kInvalidArgument,
           {"dataset.train", P("data/bob")});
  // ... nor resume from her checkpoint.
  ASSERT_TRUE(MakeDirs(P("out/alice/run1/checkpoint-10")).ok());
  spec = Spec("bob", P("out/bob/run2"));
  spec["resume_from_checkpoint"] = P("out/alice/run1/checkpoint-10");
  ExpectIn(Prepare(spec, "bob"), absl::StatusCode::kInvalidArgument,
           {"resume_from_checkpoint", P("out/bob")});
  // A '..' out of one's own folder is followed before the check.
  ASSERT_TRUE(MakeDirs(P("out/bob")).ok());
  ExpectIn(Prepare(Spec("bob", P("out/bob/../alice/run1")), "bob"),
           absl::StatusCode::kInvalidArgument, {"output_dir", P("out/alice/run1")});
  // Both may use a shared model.
  spec = Spec("bob", P("out/bob/run3"));
  spec["model"] = P("shared/base");
  EXPECT_TRUE(Prepare(spec, "bob").ok());
}

TEST_F(TenantPathsTest, ASharedModelRootMayNotOverlapAnOutputRoot) {
  ASSERT_TRUE(MakeDirs(P("out/alice")).ok());
  for (const std::string& shared : {P("out"), P("out/alice"), root_}) {
    JobSpecPolicy given;
    given.output_roots = {P("out")};
    given.shared_model_roots = {shared};
    ExpectIn(ResolveJobSpecPolicy(given).status(), absl::StatusCode::kInvalidArgument,
             {"--shared_model_roots", shared, "--output_roots"});
  }
}

TEST_F(TenantPathsTest, TwoUnfinishedJobsNeverShareAnOutputFolder) {
  OpenManager();
  absl::StatusOr<JobView> first = Create(Spec("alice", P("out/alice/run1")), "alice");
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string id = first->record.id;
  // The same folder, one inside it, one holding it: refused, naming the job
  // to its own tenant (also for validate_only).
  for (const std::string& dir : {P("out/alice/run1"), P("out/alice/run1/sub"), P("out/alice")}) {
    SCOPED_TRACE(dir);
    ExpectIn(Create(Spec("alice", dir), "alice").status(), absl::StatusCode::kFailedPrecondition,
             {"output_dir", dir, "in use", id, "cancel"});
    ExpectIn(Create(Spec("alice", dir), "alice", "", /*validate_only=*/true).status(),
             absl::StatusCode::kFailedPrecondition, {id});
  }
  // A sibling sharing the prefix is another folder.
  EXPECT_TRUE(Create(Spec("alice", P("out/alice/run10")), "alice").ok());
  // A retry of the same request is answered with the job it made.
  absl::StatusOr<JobView> keyed = Create(Spec("alice", P("out/alice/run2")), "alice", "req-1");
  ASSERT_TRUE(keyed.ok()) << keyed.status();
  absl::StatusOr<JobView> again = Create(Spec("alice", P("out/alice/run2")), "alice", "req-1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->record.id, keyed->record.id);

  // Another tenant whose roots overlap alice's (no split without tenants
  // here, so the folder is reachable) learns only "in use".
  manager_.reset();
  policy_.tenants = false;
  OpenManager();  // the index is rebuilt from the store
  absl::Status other = Create(Spec("bob", P("out/alice/run1")), "bob").status();
  ExpectIn(other, absl::StatusCode::kFailedPrecondition, {"in use", "another job"});
  EXPECT_EQ(other.message().find(id), std::string::npos) << other;
  EXPECT_EQ(other.message().find("job-"), std::string::npos) << other;

  // Once the first job ends its folder is free again.
  ASSERT_TRUE(manager_->CancelJob(id).ok());
  ASSERT_EQ(manager_->GetJob(id).value().record.state, JobState::kCancelled);
  EXPECT_TRUE(Create(Spec("alice", P("out/alice/run1")), "alice").ok());
}

TEST_F(TenantPathsTest, AJobsDefaultOutputFolderIsItsOwn) {
  policy_ = JobSpecPolicy();  // no roots: any folder may be named
  OpenManager();
  Json spec = Spec("alice");
  absl::StatusOr<JobView> first = Create(spec, "");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(Create(spec, "").ok());  // each gets jobs/<id>/output
  ExpectIn(Create(Spec("alice", first->output_dir), "").status(),
           absl::StatusCode::kFailedPrecondition, {"in use", first->record.id});
}

}  // namespace
}  // namespace foak

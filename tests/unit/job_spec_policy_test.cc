// The operator's policy over job specs (server/domain/job_spec_policy.h):
// paths confined to roots, on real folders with real symlinks -- '..' and
// symlink escapes, sibling folders sharing a prefix, a model folder whose
// weight file points outside, an output folder still to be created, the
// launch-time re-check after a folder was swapped for a symlink -- and the
// job size limits, each refusal naming the field, the value and the limit.
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/domain/job_spec.h"
#include "server/domain/job_spec_policy.h"
#include "server/domain/path_confinement.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;

std::string Real(const std::string& path) {
  char* r = realpath(path.c_str(), nullptr);
  EXPECT_NE(r, nullptr) << path;
  std::string out = r == nullptr ? path : r;
  free(r);
  return out;
}

void Symlink(const std::string& target, const std::string& link) {
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0) << link << " -> " << target;
}

void Contains(const absl::Status& s, const std::vector<std::string>& needles) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  for (const std::string& n : needles) {
    EXPECT_NE(s.message().find(n), std::string::npos) << "missing '" << n << "' in: " << s;
  }
}

TEST(PathWithin, ComparesWholeComponents) {
  EXPECT_TRUE(PathWithin("/data/models", "/data/models"));
  EXPECT_TRUE(PathWithin("/data/models/llama/config.json", "/data/models"));
  EXPECT_FALSE(PathWithin("/data/models2", "/data/models"));
  EXPECT_FALSE(PathWithin("/data/models2/x", "/data/models"));
  EXPECT_FALSE(PathWithin("/data", "/data/models"));
  EXPECT_TRUE(PathWithin("/anything", "/"));
  EXPECT_FALSE(PathWithin("/data/models", ""));
}

// Layout under a temp folder (R = its real path):
//   models/m/config.json          a model inside the model root
//   models/evil/{config.json, model.safetensors -> R/outside/secret}
//   models/link -> ../outside/m   a symlink escape
//   models2/m/config.json         a sibling sharing the root's prefix
//   outside/{m/config.json, secret, train.jsonl}
//   data/train.jsonl, data/link.jsonl -> ../outside/train.jsonl
//   out/, out/link -> ../outside, out/dangle -> /nonexistent-foak-target
//   out-alias -> out              the output root as the operator spelled it
//   jobs/                         foakd's jobs folder
class JobSpecPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = Real(dir_.path());
    for (const char* d : {"models/m", "models/evil", "models2/m", "outside/m", "data", "out", "jobs"}) {
      ASSERT_TRUE(MakeDirs(P(d)).ok());
    }
    for (const char* f : {"models/m/config.json", "models/evil/config.json", "models2/m/config.json",
                          "outside/m/config.json", "outside/secret"}) {
      ASSERT_TRUE(WriteFileAtomically(P(f), "{}").ok());
    }
    for (const char* f : {"data/train.jsonl", "outside/train.jsonl"}) {
      ASSERT_TRUE(WriteFileAtomically(P(f), "{\"text\": \"hi\"}\n").ok());
    }
    Symlink(P("outside/secret"), P("models/evil/model.safetensors"));
    Symlink("../outside/m", P("models/link"));
    Symlink("../outside/train.jsonl", P("data/link.jsonl"));
    Symlink("../outside", P("out/link"));
    Symlink("/nonexistent-foak-target", P("out/dangle"));
    Symlink(P("out"), P("out-alias"));
    uploaded_ = P("outside/uploaded.jsonl");
    ASSERT_TRUE(WriteFileAtomically(uploaded_, "{\"text\": \"up\"}\n").ok());

    JobSpecPolicy given;
    given.model_roots = {P("models")};
    given.data_roots = {P("data")};
    given.output_roots = {P("out-alias")};  // resolved to R/out
    absl::StatusOr<JobSpecPolicy> policy = ResolveJobSpecPolicy(given);
    ASSERT_TRUE(policy.ok()) << policy.status();
    context_.policy = *policy;
    context_.total_gpus = 8;
    context_.jobs_dir = P("jobs");
    context_.resolve_file = [this](const std::string& id) -> absl::StatusOr<std::string> {
      if (id == "file-00112233aabbccdd") return uploaded_;
      return absl::NotFoundError("no such file");
    };
  }
  std::string P(const std::string& rel) const { return JoinPath(root_, rel); }
  Json Minimal() const { return {{"model", P("models/m")}, {"dataset", {{"train", P("data/train.jsonl")}}}}; }
  absl::Status Prepare(const Json& spec) { return PrepareJobSpec(spec.dump(), context_).status(); }
  absl::StatusOr<Json> Worker(const Json& spec, const std::string& output_dir) {
    WorkerLaunchSettings settings;
    settings.output_dir = output_dir;
    settings.device = "cpu";
    absl::StatusOr<std::string> w = WorkerJobJson(spec.dump(), settings, context_);
    if (!w.ok()) return w.status();
    return Json::parse(*w);
  }

  testing::TempDir dir_{"job_spec_policy"};
  std::string root_, uploaded_;
  JobSpecContext context_;
};

TEST_F(JobSpecPolicyTest, RootsAreResolvedAndMustBeFolders) {
  EXPECT_EQ(context_.policy.output_roots, std::vector<std::string>{P("out")});
  JobSpecPolicy p;
  p.model_roots = {P("no-such")};
  Contains(ResolveJobSpecPolicy(p).status(), {"--model_roots: '" + P("no-such") + "' cannot be resolved",
                                              "must be an existing folder"});
  p.model_roots = {};
  p.data_roots = {P("outside/secret")};
  Contains(ResolveJobSpecPolicy(p).status(), {"--data_roots", "is not a folder"});
  p.data_roots = {};
  p.output_roots = {"relative/out"};
  Contains(ResolveJobSpecPolicy(p).status(), {"--output_roots: 'relative/out' is not an absolute folder"});
  p.output_roots = {};
  p.max_steps = -1;
  Contains(ResolveJobSpecPolicy(p).status(), {"--max_steps = -1; expected 0 (no limit)"});
}

TEST_F(JobSpecPolicyTest, PathsInsideTheRootsReachTheWorkerResolved) {
  Json spec = Minimal();
  spec["dataset"]["validation"] = P("data/train.jsonl");
  spec["output_dir"] = P("out-alias/run-1/a");  // does not exist yet
  spec["resume_from_checkpoint"] = P("jobs/job-1/output/checkpoint-2");
  absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Json::parse(p->spec_json), spec) << "the stored spec keeps the user's values";
  EXPECT_EQ(p->output_dir, P("out-alias/run-1/a"));
  EXPECT_EQ(p->resolved_output_dir, P("out/run-1/a"));

  absl::StatusOr<Json> w = Worker(spec, p->output_dir);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)["model"], P("models/m"));
  EXPECT_EQ((*w)["output_dir"], P("out/run-1/a")) << "the folder that was checked, not the alias";
  EXPECT_EQ((*w)["resume_from_checkpoint"], P("jobs/job-1/output/checkpoint-2"));
  // foakd's own output folder (no output_dir in the spec) is always allowed.
  spec.erase("output_dir");
  spec.erase("resume_from_checkpoint");
  ASSERT_TRUE(Prepare(spec).ok());
  w = Worker(spec, P("jobs/job-2/output"));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)["output_dir"], P("jobs/job-2/output"));
  // An uploaded file lies in foakd's own folder, outside the data roots: allowed.
  spec["dataset"]["train"] = "file-00112233aabbccdd";
  EXPECT_TRUE(Prepare(spec).ok()) << Prepare(spec);
}

TEST_F(JobSpecPolicyTest, EscapesAreRefusedNamingFieldPathResolvedPathAndRoots) {
  const std::string models = P("models") + " (--model_roots)";
  const std::string data = P("data") + " (--data_roots)";
  const std::string out = P("out") + " (--output_roots)";
  struct Case {
    Json patch;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {{{"model", P("models/../outside/m")}},
       {"spec: model = '" + P("models/../outside/m") + "' resolves to '" + P("outside/m") +
            "', which is outside the allowed roots " + models}},
      {{{"model", P("models2/m")}}, {"spec: model = '" + P("models2/m") + "' resolves to '" + P("models2/m") + "'", models}},
      {{{"model", P("models/link")}}, {"spec: model = '" + P("models/link") + "' resolves to '" + P("outside/m") + "'", models}},
      {{{"model", P("models/evil")}},
       {"spec: model = '" + P("models/evil") + "' holds 'model.safetensors', which resolves to '" +
            P("outside/secret") + "', outside the allowed roots " + models}},
      {{{"dataset", {{"train", P("data/link.jsonl")}}}},
       {"spec: dataset.train = '" + P("data/link.jsonl") + "' resolves to '" + P("outside/train.jsonl") + "'", data}},
      {{{"dataset", {{"train", P("data/../outside/train.jsonl")}}}}, {"spec: dataset.train = ", data}},
      {{{"dataset", {{"validation", P("outside/train.jsonl")}}}}, {"spec: dataset.validation = '" + P("outside/train.jsonl") + "'", data}},
      {{{"output_dir", P("outside/run")}}, {"spec: output_dir = '" + P("outside/run") + "' resolves to '" + P("outside/run") + "'", out}},
      {{{"output_dir", P("out/link/run")}}, {"spec: output_dir = '" + P("out/link/run") + "' resolves to '" + P("outside/run") + "'", out}},
      {{{"output_dir", P("out/../outside/run")}}, {"resolves to '" + P("outside/run") + "'", out}},
      {{{"output_dir", P("out/new/../../outside")}},
       {"spec: output_dir = '" + P("out/new/../../outside") + "' has '..' in the part that does not exist yet (after '" + P("out") + "')"}},
      {{{"output_dir", P("out/dangle/run")}}, {"spec: output_dir = '" + P("out/dangle/run") + "' cannot be resolved: '" + P("out/dangle") + "' exists but cannot be followed", out}},
      {{{"resume_from_checkpoint", P("outside/checkpoint-4")}},
       {"spec: resume_from_checkpoint = '" + P("outside/checkpoint-4") + "' resolves to '" + P("outside/checkpoint-4") +
            "', which is outside the allowed roots " + P("out") + ", " + P("jobs") + " (--output_roots, and foakd's jobs folder)"}},
      {{{"resume_from_checkpoint", "checkpoint-4"}}, {"spec: resume_from_checkpoint = 'checkpoint-4' is not an absolute path"}},
  };
  for (const Case& c : cases) {
    Json spec = Minimal();
    spec.merge_patch(c.patch);
    SCOPED_TRACE(c.patch.dump());
    Contains(Prepare(spec), c.needles);
  }
  // "latest" and booleans are not paths.
  for (const Json& resume : {Json("latest"), Json(true), Json(false)}) {
    Json spec = Minimal();
    spec["resume_from_checkpoint"] = resume;
    EXPECT_TRUE(Prepare(spec).ok()) << resume.dump() << ": " << Prepare(spec);
  }
}

// The worker opens the paths at launch, maybe long after the job was queued:
// the launch checks again.
TEST_F(JobSpecPolicyTest, LaunchChecksAgainAfterAFolderBecameASymlink) {
  ASSERT_TRUE(MakeDirs(P("models/swap")).ok());
  ASSERT_TRUE(WriteFileAtomically(P("models/swap/config.json"), "{}").ok());
  Json spec = Minimal();
  spec["model"] = P("models/swap");
  ASSERT_TRUE(Prepare(spec).ok());
  ASSERT_TRUE(RemoveTree(P("models/swap")).ok());
  Symlink(P("outside/m"), P("models/swap"));
  absl::StatusOr<Json> w = Worker(spec, P("jobs/j/output"));
  Contains(w.status(), {"spec: model = '" + P("models/swap") + "' resolves to '" + P("outside/m") + "'"});
}

TEST_F(JobSpecPolicyTest, HostilePathsAreRefusedWithoutCrashing) {
  const std::vector<std::string> paths = {
      std::string("/") + std::string(5000, 'a'), P("data/train.jsonl") + std::string(1, '\0') + "/../../x",
      "/", "/..", "/../../../..", "////", P("data") + "/./././train.jsonl/.."};
  for (const std::string& path : paths) {
    for (const char* field : {"model", "output_dir", "train"}) {
      Json spec = Minimal();
      if (std::string(field) == "train") {
        spec["dataset"]["train"] = path;
      } else {
        spec[field] = path;
      }
      const absl::Status s = Prepare(spec);
      EXPECT_FALSE(s.ok()) << field << " = " << path.substr(0, 80);
    }
  }
  Json spec = Minimal();
  spec["output_dir"] = P("out") + std::string(1, '\0') + "/../outside";
  Contains(Prepare(spec), {"contains a NUL character"});
}

// foakd's own folders (its database, token key, job files, uploads) may lie
// under a root, but a spec may not name them: uploads go by file id, outputs
// to the default folder. Checkpoints in its jobs folder may be resumed.
TEST_F(JobSpecPolicyTest, FoakdsOwnFoldersAreNotNameable) {
  ASSERT_TRUE(MakeDirs(P("data/foakd/files")).ok());
  ASSERT_TRUE(MakeDirs(P("out/foakd/jobs/job-1/output/checkpoint-2")).ok());
  ASSERT_TRUE(WriteFileAtomically(P("data/foakd/worker_token.key"), "secret").ok());
  JobSpecPolicy given = context_.policy;
  given.own_dirs = {P("data/foakd"), P("out/foakd")};
  absl::StatusOr<JobSpecPolicy> policy = ResolveJobSpecPolicy(given);
  ASSERT_TRUE(policy.ok()) << policy.status();
  context_.policy = *policy;
  context_.jobs_dir = P("out/foakd/jobs");

  Json spec = Minimal();
  spec["dataset"]["train"] = P("data/foakd/worker_token.key");
  Contains(Prepare(spec), {"spec: dataset.train = '" + P("data/foakd/worker_token.key") + "' resolves to '" +
                               P("data/foakd/worker_token.key") + "', inside foakd's own folder '" +
                               P("data/foakd") + "'",
                           "give its file id"});
  spec = Minimal();
  spec["output_dir"] = P("out/foakd/jobs/job-1/output");
  Contains(Prepare(spec), {"spec: output_dir = '" + P("out/foakd/jobs/job-1/output") + "'",
                           "inside foakd's own folder '" + P("out/foakd") + "'"});
  spec = Minimal();
  spec["resume_from_checkpoint"] = P("out/foakd/jobs/job-1/output/checkpoint-2");
  EXPECT_TRUE(Prepare(spec).ok()) << Prepare(spec);
  // A checkpoint's files are read like a model's: none may point outside.
  Symlink(P("outside/secret"), P("out/foakd/jobs/job-1/output/checkpoint-2/model.safetensors"));
  spec["resume_from_checkpoint"] = P("out/foakd/jobs/job-1/output/checkpoint-2");
  Contains(Prepare(spec), {"spec: resume_from_checkpoint = '" + P("out/foakd/jobs/job-1/output/checkpoint-2") +
                               "' holds 'model.safetensors', which resolves to '" + P("outside/secret") +
                               "', outside the allowed roots"});
  spec["resume_from_checkpoint"] = P("out/foakd/files");
  Contains(Prepare(spec), {"spec: resume_from_checkpoint = '" + P("out/foakd/files") + "'",
                           "inside foakd's own folder"});
}

TEST_F(JobSpecPolicyTest, SizeLimitsNameFieldValueAndLimit) {
  context_.policy.max_gpus_per_job = 4;
  context_.policy.max_nodes_per_job = 2;
  context_.policy.max_seq_len = 1024;
  context_.policy.max_steps = 1000;
  context_.policy.max_epochs = 3;
  Json ok = Minimal();
  ok["resources"] = {{"gpus", 4}};
  ok["hyperparameters"] = {{"max_seq_len", 1024}, {"max_steps", 1000}};
  ASSERT_TRUE(Prepare(ok).ok()) << Prepare(ok);

  struct Case {
    Json patch;
    bool cluster;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{{"resources", {{"gpus", 5}}}}, false,
       "spec: resources.gpus = 5 is above this foakd's limit of 4 GPUs per job (--max_gpus_per_job); ask for at most 4 GPUs in all"},
      {{{"resources", {{"gpus", 3}, {"nodes", 2}}}}, true,
       "spec: resources.gpus = 3 on each of resources.nodes = 2, 6 GPUs in all, is above this foakd's limit of 4 GPUs per job (--max_gpus_per_job)"},
      {{{"resources", {{"gpus", 1}, {"nodes", 3}}}}, true,
       "spec: resources.nodes = 3 is above this foakd's limit of 2 (--max_nodes_per_job); ask for at most 2 nodes"},
      {{{"hyperparameters", {{"max_seq_len", 4096}}}}, false,
       "spec: hyperparameters.max_seq_len = 4096 is above this foakd's limit of 1024 (--max_seq_len); set it to at most 1024"},
      {{{"hyperparameters", {{"max_steps", 50000}}}}, false,
       "spec: hyperparameters.max_steps = 50000 is above this foakd's limit of 1000 (--max_steps); set it to at most 1000"},
      {{{"hyperparameters", {{"max_steps", 0}, {"epochs", 2}}}}, false,
       "spec: hyperparameters.max_steps is 0 (train for epochs = 2), but this foakd limits a job to 1000 optimizer steps (--max_steps)"},
  };
  for (const Case& c : cases) {
    context_.cluster = c.cluster;
    Json spec = ok;
    spec.merge_patch(c.patch);
    SCOPED_TRACE(c.patch.dump());
    Contains(Prepare(spec), {c.needle});
  }
  context_.cluster = false;
  // Epochs: limited when they decide the length (no max_steps, no step limit).
  context_.policy.max_steps = 0;
  Json spec = Minimal();
  spec["hyperparameters"] = {{"epochs", 5}};
  Contains(Prepare(spec), {"spec: hyperparameters.epochs = 5 is above this foakd's limit of 3 (--max_epochs); "
                           "set it to at most 3 or give hyperparameters.max_steps instead"});
  spec["hyperparameters"] = {{"epochs", 5}, {"max_steps", 10}};
  EXPECT_TRUE(Prepare(spec).ok()) << "max_steps decides the length; epochs is unused";
  spec["hyperparameters"] = {{"epochs", 3}};
  EXPECT_TRUE(Prepare(spec).ok());
}

TEST_F(JobSpecPolicyTest, BenchmarkJobsCountTheirPlannedSteps) {
  context_.policy.max_seq_len = 1024;
  context_.policy.max_steps = 100;
  // 2 seq_lens x 1 batch size x 2 kernel sets = 4 rows x (3 + 10) = 52 steps.
  Json spec = {{"model", P("models/m")},
               {"bench", {{"kernel_sets", {"none", "foak"}}, {"seq_lens", {512, 1024}}, {"batch_sizes", {2}}}}};
  ASSERT_TRUE(Prepare(spec).ok()) << Prepare(spec);
  spec["bench"]["seq_lens"] = {512, 2048};
  Contains(Prepare(spec), {"spec: bench.seq_lens[1] = 2048 is above this foakd's limit of 1024 (--max_seq_len)"});
  spec["bench"]["seq_lens"] = {512, 1024};
  spec["bench"]["steps"] = 30;
  Contains(Prepare(spec), {"spec: bench = 4 rows x (warmup_steps 3 + steps 30) = 132 optimizer steps is above "
                           "this foakd's limit of 100 steps (--max_steps)"});
  spec["bench"]["steps"] = int64_t{1} << 62;
  spec["bench"]["warmup_steps"] = int64_t{1} << 62;
  Contains(Prepare(spec), {"more than 2^63 optimizer steps"});
}

TEST_F(JobSpecPolicyTest, NoPolicyAllowsEverything) {
  context_.policy = JobSpecPolicy();
  Json spec = Minimal();
  spec["model"] = P("outside/m");
  spec["dataset"]["train"] = P("data/link.jsonl");
  spec["output_dir"] = P("out/link/run");
  spec["resume_from_checkpoint"] = "relative/checkpoint-1";
  spec["hyperparameters"] = {{"max_seq_len", 1 << 20}, {"epochs", 100}};
  ASSERT_TRUE(Prepare(spec).ok()) << Prepare(spec);
  absl::StatusOr<Json> w = Worker(spec, P("out/link/run"));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)["model"], P("outside/m")) << "unconfined paths reach the worker as given";
  EXPECT_EQ((*w)["output_dir"], P("out/link/run"));
}

}  // namespace
}  // namespace foak

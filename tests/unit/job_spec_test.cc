// What foakd accepts as a job spec and the worker job file it writes: the
// coordinator's own fields, paths on its host, uploaded file ids, benchmark
// jobs (no dataset), and every other field checked by the worker's parser
// with the field path named.
#include "server/domain/job_spec.h"

#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_job_inputs.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;

class JobSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const testing::FakeJobInputs inputs = testing::WriteFakeJobInputs(dir_.path());
    model_ = inputs.model;
    train_ = inputs.train;
    uploaded_ = JoinPath(dir_.path(), "uploaded.data");
    ASSERT_TRUE(WriteFileAtomically(uploaded_, "{\"text\": \"up\"}\n").ok());
    context_.total_gpus = 2;
    context_.resolve_file = [this](const std::string& id) -> absl::StatusOr<std::string> {
      if (id == "file-00112233aabbccdd") return uploaded_;
      return absl::NotFoundError("no such file");
    };
  }
  Json Minimal() const {
    return {{"model", model_}, {"dataset", {{"train", train_}}}};
  }
  absl::Status Prepare(const Json& spec) { return PrepareJobSpec(spec.dump(), context_).status(); }

  testing::TempDir dir_{"job_spec"};
  std::string model_, train_, uploaded_;
  JobSpecContext context_;
};

TEST_F(JobSpecTest, MinimalSpecGetsDefaultsAndKeepsUserValues) {
  Json spec = Minimal();
  spec["resources"] = {{"gpus", 2}};
  spec["priority"] = 7;
  spec["max_restarts"] = "3";  // protobuf's JSON mapping may send int64 as a string
  spec["labels"] = {{"team", "nlp"}, {"exp/name", "a-1"}};
  spec["kernels"] = {"foak"};
  absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->gpus, 2);
  EXPECT_EQ(p->priority, 7);
  EXPECT_EQ(p->max_restarts, 3);
  EXPECT_EQ(p->labels.at("exp/name"), "a-1");
  EXPECT_TRUE(p->output_dir.empty());
  EXPECT_EQ(p->start_timeout_s, 0) << "unset: foakd's --start_timeout_s";
  EXPECT_EQ(Json::parse(p->spec_json), spec);  // stored as given
}

// start_timeout_s: seconds up to a week, 0 = foakd's default, -1 = never; the
// worker's file leaves it out, and the worker's own parser accepts it.
TEST_F(JobSpecTest, StartTimeoutIsACoordinatorField) {
  for (int64_t seconds : {int64_t{-1}, int64_t{0}, int64_t{1}, int64_t{86400}, kMaxStartTimeoutS}) {
    Json spec = Minimal();
    spec["start_timeout_s"] = seconds;
    absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
    ASSERT_TRUE(p.ok()) << seconds << ": " << p.status();
    EXPECT_EQ(p->start_timeout_s, seconds);
    EXPECT_EQ(CoordinatorFields(p->spec_json, context_).value().start_timeout_s, seconds);
    WorkerLaunchSettings settings;
    settings.output_dir = JoinPath(dir_.path(), "out");
    settings.device = "cpu";
    const Json worker = Json::parse(WorkerJobJson(p->spec_json, settings, context_).value());
    EXPECT_FALSE(worker.contains("start_timeout_s"));
  }
  Json spec = Minimal();
  spec["start_timeout_s"] = "3600";  // protobuf's JSON mapping of an int64
  EXPECT_EQ(PrepareJobSpec(spec.dump(), context_).value().start_timeout_s, 3600);
}

TEST_F(JobSpecTest, ErrorsNameTheFieldAndWhatIsAllowed) {
  struct Case {
    Json patch;
    absl::StatusCode code;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{{"model", "relative/model"}}, absl::StatusCode::kInvalidArgument, "model = 'relative/model' is not an absolute path"},
      {{{"model", dir_.path()}}, absl::StatusCode::kInvalidArgument, "has no readable config.json"},
      {{{"dataset", {{"train", "/nonexistent/t.jsonl"}}}}, absl::StatusCode::kInvalidArgument, "dataset.train = '/nonexistent/t.jsonl' is not a readable file"},
      {{{"dataset", {{"train", "file-ffffffffffffffff"}}}}, absl::StatusCode::kInvalidArgument, "no such uploaded file"},
      {Json::parse(R"({"dataset": {"train": null}})"), absl::StatusCode::kInvalidArgument, "dataset.train is required"},
      {{{"hyperparameters", {{"lr", 0.1}}}}, absl::StatusCode::kInvalidArgument, "unknown key 'hyperparameters.lr'"},
      {{{"hyperparameters", {{"lr_scheduler", "cosin"}}}}, absl::StatusCode::kInvalidArgument, "cosine"},
      {{{"method", "dora"}}, absl::StatusCode::kInvalidArgument, "method = \"dora\"; expected \"full\", \"lora\" or \"qlora\""},
      {{{"method", "lora"}, {"quantization", {{"type", "nf4"}}}}, absl::StatusCode::kInvalidArgument, "quantization is given but method is \"lora\""},
      {{{"method", "qlora"}, {"quantization", {{"type", "fp4"}}}}, absl::StatusCode::kInvalidArgument, "quantization.type = \"fp4\"; expected \"nf4\""},
      {{{"method", "qlora"}, {"quantization", {{"double_quant", 1}}}}, absl::StatusCode::kInvalidArgument, "quantization.double_quant = 1; expected true or false"},
      {{{"method", "qlora"}, {"lora", {{"alpha", 0}}}}, absl::StatusCode::kInvalidArgument, "lora.alpha = 0; expected a number > 0"},
      {{{"kernels", {"rmsnorm"}}}, absl::StatusCode::kInvalidArgument, "rms_norm"},
      {{{"device", "cuda"}}, absl::StatusCode::kInvalidArgument, "foakd picks the device"},
      {{{"resources", {{"gpus", 3}}}}, absl::StatusCode::kResourceExhausted, "has 2 GPU(s) in all"},
      {{{"resources", {{"gpu", 1}}}}, absl::StatusCode::kInvalidArgument, "resources.gpu is unknown; valid keys in resources: gpus, processes, nodes, node_selector, tolerations, queue"},
      {{{"resources", {{"gpus", -1}}}}, absl::StatusCode::kInvalidArgument, "resources.gpus"},
      {{{"resources", {{"processes", -1}}}}, absl::StatusCode::kInvalidArgument, "resources.processes = -1; expected an integer from 1 to 64 (0 or unset = 1)"},
      {{{"resources", {{"processes", 65}}}}, absl::StatusCode::kInvalidArgument, "resources.processes = 65; expected an integer from 1 to 64"},
      {{{"resources", {{"processes", 2.5}}}}, absl::StatusCode::kInvalidArgument, "resources.processes = 2.5; expected"},
      {{{"resources", {{"processes", "two"}}}}, absl::StatusCode::kInvalidArgument, "resources.processes = \"two\"; expected"},
      {{{"resources", {{"gpus", 2}, {"processes", 3}}}}, absl::StatusCode::kInvalidArgument, "resources.processes = 3 but resources.gpus = 2; a GPU job runs one rank per GPU, so leave processes unset or set it to 2"},
      {{{"resources", {{"gpus", 2}, {"processes", 1}}}}, absl::StatusCode::kInvalidArgument, "resources.processes = 1 but resources.gpus = 2"},
      // Placement on other hosts needs the Kubernetes launcher (this context is local).
      {{{"resources", {{"nodes", 2}}}}, absl::StatusCode::kInvalidArgument, "resources.nodes > 1 needs foakd's Kubernetes launcher (foakd --launcher kubernetes)"},
      {{{"resources", {{"node_selector", {{"pool", "a100"}}}}}}, absl::StatusCode::kInvalidArgument, "resources.node_selector needs foakd's Kubernetes launcher"},
      {{{"resources", {{"tolerations", {{{"key", "gpu"}, {"operator", "Exists"}}}}}}}, absl::StatusCode::kInvalidArgument, "resources.tolerations needs foakd's Kubernetes launcher"},
      {{{"resources", {{"queue", "team-a"}}}}, absl::StatusCode::kInvalidArgument, "resources.queue needs foakd's Kubernetes launcher"},
      {{{"priority", 5000}}, absl::StatusCode::kInvalidArgument, "priority = 5000; expected an integer from -1000 to 1000"},
      // 2^64 - 1 used to wrap to -1, inside [-1000, 1000].
      {{{"priority", UINT64_MAX}}, absl::StatusCode::kInvalidArgument, "priority = 18446744073709551615; expected an integer from -1000 to 1000"},
      {{{"max_restarts", 1.5}}, absl::StatusCode::kInvalidArgument, "max_restarts"},
      {{{"start_timeout_s", -2}}, absl::StatusCode::kInvalidArgument, "start_timeout_s = -2; expected seconds from 1 to 604800 (a week), 0 (foakd's --start_timeout_s) or -1 (never)"},
      {{{"start_timeout_s", 604801}}, absl::StatusCode::kInvalidArgument, "start_timeout_s = 604801; expected seconds from 1 to 604800"},
      {{{"start_timeout_s", "a day"}}, absl::StatusCode::kInvalidArgument, "start_timeout_s = \"a day\"; expected seconds"},
      {{{"labels", {{"Bad Key", "v"}}}}, absl::StatusCode::kInvalidArgument, "key 'Bad Key' is invalid"},
      {{{"output_dir", "out"}}, absl::StatusCode::kInvalidArgument, "output_dir = 'out' is not absolute"},
  };
  for (const Case& c : cases) {
    Json spec = Minimal();
    spec.merge_patch(c.patch);
    absl::Status s = Prepare(spec);
    EXPECT_EQ(s.code(), c.code) << c.patch.dump() << ": " << s;
    EXPECT_NE(s.message().find(c.needle), std::string::npos) << c.patch.dump() << ": " << s;
    if (c.code == absl::StatusCode::kInvalidArgument) {
      EXPECT_EQ(s.message().rfind("spec: ", 0), 0u) << s;
    }
  }
}

// resources.processes: the ranks of a CPU job; a GPU job has one per GPU.
TEST_F(JobSpecTest, ProcessesAreTheRanksOfACpuJob) {
  struct Case {
    Json resources;  // null: no resources object
    int64_t gpus, processes;
  };
  const std::vector<Case> cases = {
      {nullptr, 0, 1},
      {Json::object(), 0, 1},
      {{{"processes", 4}}, 0, 4},
      {{{"gpus", 0}, {"processes", 64}}, 0, 64},
      {{{"processes", "8"}}, 0, 8},  // protobuf's JSON mapping may send a string
      {{{"processes", 0}}, 0, 1},    // 0 is proto3's unset
      {{{"processes", nullptr}}, 0, 1},
      {{{"gpus", 2}}, 2, 2},
      {{{"gpus", 2}, {"processes", 2}}, 2, 2},
      {{{"gpus", 1}, {"processes", 0}}, 1, 1},
  };
  for (const Case& c : cases) {
    Json spec = Minimal();
    if (!c.resources.is_null()) spec["resources"] = c.resources;
    absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
    ASSERT_TRUE(p.ok()) << c.resources.dump() << ": " << p.status();
    EXPECT_EQ(p->gpus, c.gpus) << c.resources.dump();
    EXPECT_EQ(p->processes, c.processes) << c.resources.dump();
    EXPECT_EQ(Json::parse(p->spec_json), spec) << "stored as given";
    // A launch reads the same from the stored spec, without the worker's
    // checks or the files (the model folder may be gone by then).
    Json moved = spec;
    moved["model"] = "/nonexistent/model";
    absl::StatusOr<PreparedJobSpec> f = CoordinatorFields(moved.dump(), context_);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->gpus, c.gpus);
    EXPECT_EQ(f->processes, c.processes);
    EXPECT_TRUE(f->spec_json.empty());
  }
  // The worker's file never sees resources: its device says CPU or CUDA, and
  // the rank comes from the environment.
  Json spec = Minimal();
  spec["resources"] = {{"processes", 3}};
  WorkerLaunchSettings settings;
  settings.output_dir = JoinPath(dir_.path(), "out");
  settings.device = "cpu";
  const Json w = Json::parse(WorkerJobJson(spec.dump(), settings, context_).value());
  EXPECT_FALSE(w.contains("resources"));
  EXPECT_EQ(w["device"], "cpu");
  // CoordinatorFields checks what PrepareJobSpec checks of those fields.
  spec["resources"] = {{"gpus", 2}, {"processes", 3}};
  EXPECT_EQ(CoordinatorFields(spec.dump(), context_).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec["resources"] = {{"gpus", 3}};
  EXPECT_EQ(CoordinatorFields(spec.dump(), context_).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// With the Kubernetes launcher the cluster places the job: nodes, node
// selector, tolerations and a Kueue queue are taken (with Kubernetes' own
// syntax rules, so the API server never refuses what foakd accepted), and
// the host's GPU count does not bound resources.gpus.
TEST_F(JobSpecTest, KubernetesPlacementFields) {
  context_.cluster = true;
  Json spec = Minimal();
  spec["resources"] = Json::parse(R"({
      "gpus": 8, "nodes": 2, "queue": "team-a",
      "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "pool": "train"},
      "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "ml", "effect": "NoExecute", "toleration_seconds": "60"},
        {"operator": "Exists"}]})");
  absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->gpus, 8);  // more than the context's 2: the cluster has them
  EXPECT_EQ(p->processes, 8);
  EXPECT_EQ(p->nodes, 2);
  EXPECT_EQ(p->queue, "team-a");
  EXPECT_EQ(p->node_selector.size(), 2u);
  EXPECT_EQ(p->node_selector.at("nvidia.com/gpu.product"), "NVIDIA-H100-80GB-HBM3");
  ASSERT_EQ(p->tolerations.size(), 3u);
  EXPECT_EQ(p->tolerations[0].key, "nvidia.com/gpu");
  EXPECT_EQ(p->tolerations[0].op, "Exists");
  EXPECT_EQ(p->tolerations[0].effect, "NoSchedule");
  EXPECT_EQ(p->tolerations[1].op, "Equal");  // the default, as in Kubernetes
  EXPECT_EQ(p->tolerations[1].value, "ml");
  EXPECT_EQ(p->tolerations[1].toleration_seconds, 60);
  EXPECT_TRUE(p->tolerations[2].key.empty());
  EXPECT_EQ(CoordinatorFields(spec.dump(), context_)->nodes, 2);

  struct Case {
    Json resources;
    std::string needle;
  };
  const std::vector<Case> bad = {
      {{{"nodes", 0}}, ""},  // 0 = unset = 1: accepted
      {{{"nodes", 2000}}, "resources.nodes = 2000; expected an integer from 1 to 1024"},
      {{{"node_selector", {{"Bad Key!", "x"}}}}, "resources.node_selector.Bad Key! is not a Kubernetes label key"},
      {{{"node_selector", {{"pool", "has space"}}}}, "resources.node_selector.pool = \"has space\"; expected a Kubernetes label value"},
      {{{"node_selector", {{"pool", 3}}}}, "resources.node_selector.pool = 3"},
      {{{"node_selector", "pool=a"}}, "resources.node_selector = \"pool=a\"; expected an object"},
      {{{"tolerations", {{{"key", "a"}, {"operator", "Maybe"}}}}}, "resources.tolerations[0].operator = \"Maybe\"; expected \"Equal\" or \"Exists\""},
      {{{"tolerations", {{{"key", "a"}, {"operator", "Exists"}, {"value", "v"}}}}}, "resources.tolerations[0].value = \"v\" but operator is Exists"},
      {{{"tolerations", {{{"value", "v"}}}}}, "resources.tolerations[0].key is empty with operator Equal"},
      {{{"tolerations", {{{"key", "a"}, {"effect", "NoSchedul"}}}}}, "resources.tolerations[0].effect = \"NoSchedul\"; expected \"\" (all), NoSchedule, PreferNoSchedule or NoExecute"},
      {{{"tolerations", {{{"key", "a"}, {"effect", "NoSchedule"}, {"toleration_seconds", 5}}}}}, "resources.tolerations[0].toleration_seconds applies to effect NoExecute only"},
      {{{"tolerations", {{{"key", "a"}, {"tolerate", true}}}}}, "resources.tolerations[0].tolerate is unknown"},
      {{{"tolerations", {{"key", "a"}}}}, "resources.tolerations = {\"key\":\"a\"}; expected a list"},
      {{{"queue", "Team A"}}, "resources.queue = \"Team A\"; expected a Kueue LocalQueue name"},
  };
  for (const Case& c : bad) {
    Json s = Minimal();
    s["resources"] = c.resources;
    absl::Status status = Prepare(s);
    if (c.needle.empty()) {
      EXPECT_TRUE(status.ok()) << c.resources.dump() << ": " << status;
      continue;
    }
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.resources.dump();
    EXPECT_NE(status.message().find(c.needle), std::string::npos) << c.resources.dump() << ": " << status;
  }
}

TEST_F(JobSpecTest, UploadedFileIdsResolveForTheWorkerAndStayIdsInTheSpec) {
  Json spec = Minimal();
  spec["dataset"]["train"] = "file-00112233aabbccdd";
  spec["dataset"]["validation"] = "file-00112233aabbccdd";
  absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->file_ids.size(), 2u);
  EXPECT_EQ(Json::parse(p->spec_json)["dataset"]["train"], "file-00112233aabbccdd");

  WorkerLaunchSettings settings;
  settings.output_dir = JoinPath(dir_.path(), "out");
  settings.device = "cpu";
  absl::StatusOr<std::string> worker = WorkerJobJson(p->spec_json, settings, context_);
  ASSERT_TRUE(worker.ok()) << worker.status();
  Json w = Json::parse(*worker);
  EXPECT_EQ(w["dataset"]["train"], uploaded_);
  EXPECT_EQ(w["output_dir"], settings.output_dir);
  EXPECT_EQ(w["device"], "cpu");
  EXPECT_EQ(w["resume_from_checkpoint"], "latest");
}

TEST_F(JobSpecTest, WorkerJobFileDropsCoordinatorFieldsAndResumesOnRestart) {
  Json spec = Minimal();
  spec["resources"] = {{"gpus", 1}};
  spec["labels"] = {{"a", "b"}};
  spec["max_restarts"] = 2;
  const std::string ckpt = JoinPath(dir_.path(), "given-checkpoint");
  spec["resume_from_checkpoint"] = ckpt;
  WorkerLaunchSettings settings;
  settings.output_dir = JoinPath(dir_.path(), "out");
  settings.device = "cuda";
  Json first = Json::parse(WorkerJobJson(spec.dump(), settings, context_).value());
  for (const char* key : {"resources", "labels", "max_restarts", "priority"}) {
    EXPECT_FALSE(first.contains(key)) << key;
  }
  EXPECT_EQ(first["device"], "cuda");
  EXPECT_EQ(first["resume_from_checkpoint"], ckpt);  // the user's choice on the first launch
  // A relaunch continues from the job's own newest checkpoint once there is one.
  settings.restart = true;
  EXPECT_EQ(Json::parse(WorkerJobJson(spec.dump(), settings, context_).value())["resume_from_checkpoint"],
            ckpt);
  ASSERT_TRUE(MakeDirs(JoinPath(settings.output_dir, "checkpoint-4")).ok());
  EXPECT_EQ(Json::parse(WorkerJobJson(spec.dump(), settings, context_).value())["resume_from_checkpoint"],
            "latest");
}

// Method qlora: the worker's parser accepts it with its lora and quantization
// objects, the stored spec keeps them, and the worker's file carries them.
TEST_F(JobSpecTest, QloraSpecReachesTheWorkerWithItsQuantization) {
  Json spec = Minimal();
  spec["method"] = "qlora";
  spec["lora"] = {{"r", 16}, {"alpha", 32}};
  spec["quantization"] = {{"type", "nf4"}, {"double_quant", false}};
  spec["save_merged"] = true;
  absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Json::parse(p->spec_json), spec);
  WorkerLaunchSettings settings;
  settings.output_dir = JoinPath(dir_.path(), "out");
  settings.device = "cpu";
  const Json worker = Json::parse(WorkerJobJson(spec.dump(), settings, context_).value());
  EXPECT_EQ(worker["method"], "qlora");
  EXPECT_EQ(worker["quantization"], spec["quantization"]);
  EXPECT_EQ(worker["lora"], spec["lora"]);
  // Only method and quantization: the defaults (nf4, double quantisation).
  Json bare = Minimal();
  bare["method"] = "qlora";
  EXPECT_TRUE(Prepare(bare).ok()) << Prepare(bare);
}

// A benchmark job: a model folder (config.json only) and a bench object.
TEST_F(JobSpecTest, BenchmarkJobNeedsNoDataset) {
  const Json spec = {{"model", model_},
                     {"method", "full"},
                     {"hyperparameters", {{"precision", "bf16"}}},
                     {"bench",
                      {{"kernel_sets", {"none", "foak", "rms_norm,rope"}},
                       {"batch_sizes", {1, 2}},
                       {"seq_lens", {32}},
                       {"steps", 2}}},
                     {"resources", {{"gpus", 1}}}};
  absl::StatusOr<PreparedJobSpec> p = PrepareJobSpec(spec.dump(), context_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->gpus, 1);
  EXPECT_TRUE(p->file_ids.empty());
  EXPECT_EQ(Json::parse(p->spec_json), spec);

  WorkerLaunchSettings settings;
  settings.output_dir = JoinPath(dir_.path(), "bench-out");
  settings.device = "cuda";
  absl::StatusOr<std::string> worker = WorkerJobJson(p->spec_json, settings, context_);
  ASSERT_TRUE(worker.ok()) << worker.status();
  const Json w = Json::parse(*worker);
  EXPECT_FALSE(w.contains("dataset"));
  EXPECT_EQ(w["bench"], spec["bench"]);
  EXPECT_EQ(w["output_dir"], settings.output_dir);
  EXPECT_FALSE(w.contains("resources"));
}

TEST_F(JobSpecTest, BenchmarkJobErrorsNameTheField) {
  // A dataset with a bench object: the worker's parser says why it is wrong
  // (even when the dataset names a file foakd does not have).
  for (const std::string& train : {train_, std::string("/nonexistent/t.jsonl")}) {
    const Json spec = {{"model", model_}, {"dataset", {{"train", train}}}, {"bench", Json::object()}};
    const absl::Status s = Prepare(spec);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("spec: dataset is given but this is a benchmark job"),
              std::string::npos)
        << s;
  }
  // A kernel set the registry does not know.
  Json spec = {{"model", model_}, {"bench", {{"kernel_sets", {"none", "rmsnorm"}}}}};
  absl::Status s = Prepare(spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("bench.kernel_sets"), std::string::npos) << s;
  EXPECT_NE(s.message().find("rmsnorm"), std::string::npos) << s;
  EXPECT_NE(s.message().find("rms_norm"), std::string::npos) << s;  // what would be right
  // The model still has to be a folder with config.json on foakd's host.
  spec = {{"model", dir_.path()}, {"bench", Json::object()}};
  s = Prepare(spec);
  EXPECT_NE(s.message().find("has no readable config.json"), std::string::npos) << s;
  // Neither a dataset nor a bench object.
  s = Prepare(Json{{"model", model_}});
  EXPECT_NE(s.message().find("spec: dataset is required"), std::string::npos) << s;
  EXPECT_NE(s.message().find("bench"), std::string::npos) << s;
  // Other bench fields are checked by the worker's parser too.
  s = Prepare(Json{{"model", model_}, {"bench", {{"batch_sizes", {0}}}}});
  EXPECT_NE(s.message().find("bench.batch_sizes"), std::string::npos) << s;
  s = Prepare(Json{{"model", model_}, {"bench", {{"step", 3}}}});
  EXPECT_NE(s.message().find("bench.step"), std::string::npos) << s;
}

TEST(FileId, Form) {
  EXPECT_TRUE(IsFileId("file-0123456789abcdef"));
  EXPECT_FALSE(IsFileId("file-0123456789ABCDEF"));
  EXPECT_FALSE(IsFileId("file-0123"));
  EXPECT_FALSE(IsFileId("/data/file-0123456789abcdef"));
}

}  // namespace
}  // namespace foak

// foakctl end to end in one process: FoakctlMain runs against an in-memory
// foakd (client/testing/fake_foakd.h) served over real gRPC on 127.0.0.1, and
// the tests check what reached the server (specs, request ids, after_seq,
// uploaded bytes), what was printed, and the exit codes scripts rely on.
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/foakctl_main.h"
#include "client/testing/fake_foakd.h"
#include "client/testing/run_foakctl.h"
#include "common/file_util.h"
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

constexpr char kAbcSha256[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

class FoakctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/foakctl_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)RemoveTree(dir_); }

  // Runs foakctl with `args` plus --server of the fake (unless !add_server).
  FoakctlResult Run(std::vector<std::string> args, bool add_server = true) {
    if (add_server) {
      args.push_back("--server");
      args.push_back(server_.address());
    }
    return RunFoakctl(args, options_);
  }

  std::string WriteFile(const std::string& name, const std::string& contents) {
    const std::string path = JoinPath(dir_, name);
    EXPECT_TRUE(WriteFileAtomically(path, contents).ok());
    return path;
  }

  foak::v1::CreateJobRequest OnlyCreateRequest() {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    EXPECT_EQ(server_.jobs.create_requests.size(), 1u);
    return server_.jobs.create_requests.empty() ? foak::v1::CreateJobRequest()
                                                : server_.jobs.create_requests[0];
  }

  std::string AddJob(Job::State state, const std::string& name) {
    Job job;
    job.set_state(state);
    job.mutable_spec()->set_name(name);
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    return server_.jobs.AddJob(job);
  }

  FakeFoakd server_;
  FoakctlOptions options_ = FastTestOptions();
  std::string dir_;
};

// --- submit ------------------------------------------------------------------

TEST_F(FoakctlTest, SubmitFromJsonSendsTheSpecWithAbsolutePathsAndFlagOverrides) {
  const std::string path = WriteFile("job.json", R"({
    "name": "demo", "model": "./models/tiny",
    "dataset": {"train": "data/train.jsonl", "validation": "file-0123456789abcdef"},
    "method": "lora", "lora": {"r": 8},
    "hyperparameters": {"learning_rate": 0.0001, "max_steps": 10},
    "kernels": ["rms_norm"], "labels": {"team": "nlp"}})");
  const FoakctlResult r = Run({"submit", "-f", path, "--max-steps", "20", "--label", "run=3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "job-0000000000000001\n");
  const foak::v1::CreateJobRequest req = OnlyCreateRequest();
  const foak::v1::JobSpec& spec = req.spec();
  EXPECT_EQ(spec.name(), "demo");
  EXPECT_EQ(spec.model(), "/home/user/project/models/tiny");
  EXPECT_EQ(spec.dataset().train(), "/home/user/project/data/train.jsonl");
  EXPECT_EQ(spec.dataset().validation(), "file-0123456789abcdef");  // an uploaded file id stays
  EXPECT_EQ(spec.method(), "lora");
  EXPECT_EQ(spec.lora().r(), 8);
  EXPECT_DOUBLE_EQ(spec.hyperparameters().learning_rate(), 1e-4);
  EXPECT_EQ(spec.hyperparameters().max_steps(), 20);  // the flag wins over the file
  ASSERT_EQ(spec.kernels_size(), 1);
  EXPECT_EQ(spec.labels().at("team"), "nlp");
  EXPECT_EQ(spec.labels().at("run"), "3");
  EXPECT_TRUE(std::regex_match(req.request_id(),
                               std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << req.request_id();
  EXPECT_FALSE(req.validate_only());
}

TEST_F(FoakctlTest, SubmitFromYamlKeepsScalarTypes) {
  const std::string path = WriteFile("job.yaml", R"(# a YAML job
name: "0042"
model: /models/tiny
dataset:
  train: train.jsonl
  format: chat
method: full
hyperparameters:
  learning_rate: 2e-5
  max_steps: 7
  packing: true
  lr_scheduler: cosine
kernels: [rms_norm, rope]
resources: {gpus: 1}
priority: -3
output_dir: out
labels:
  team: "7"
)");
  const FoakctlResult r = Run({"submit", "-f", path, "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json printed = nlohmann::json::parse(r.out);
  EXPECT_EQ(printed["id"], "job-0000000000000001");
  const foak::v1::JobSpec spec = OnlyCreateRequest().spec();
  EXPECT_EQ(spec.name(), "0042");  // quoted: a string with its zeros
  EXPECT_EQ(spec.model(), "/models/tiny");
  EXPECT_EQ(spec.dataset().train(), "/home/user/project/train.jsonl");
  EXPECT_EQ(spec.dataset().format(), "chat");
  EXPECT_DOUBLE_EQ(spec.hyperparameters().learning_rate(), 2e-5);
  EXPECT_EQ(spec.hyperparameters().max_steps(), 7);
  EXPECT_TRUE(spec.hyperparameters().packing());
  EXPECT_EQ(spec.hyperparameters().lr_scheduler(), "cosine");
  ASSERT_EQ(spec.kernels_size(), 2);
  EXPECT_EQ(spec.kernels(1), "rope");
  EXPECT_EQ(spec.resources().gpus(), 1);
  EXPECT_EQ(spec.priority(), -3);
  EXPECT_EQ(spec.output_dir(), "/home/user/project/out");
  EXPECT_EQ(spec.labels().at("team"), "7");
  EXPECT_FALSE(spec.has_start_timeout_s()) << "unset: foakd's --start_timeout_s";
}

TEST_F(FoakctlTest, SubmitFromFlagsOnly) {
  const FoakctlResult r = Run({"submit", "--name", "flags", "--model", "/m", "--train", "t.jsonl",
                        "--validation", "v.jsonl", "--format", "alpaca", "--lora-r", "16",
                        "--lora-alpha", "32", "--learning-rate", "3e-4", "--epochs", "2",
                        "--batch-size", "4", "--max-seq-len", "256", "--kernels", "rms_norm, swiglu",
                        "--gpus", "2", "--priority", "5", "--max-restarts", "1", "--output-dir",
                        "runs/a", "--label", "a=1", "--label", "b=x=y", "--request-id", "req-1",
                        "--stall-timeout", "900", "--start-timeout", "7200", "--on-nonfinite",
                        "skip"});
  ASSERT_EQ(r.code, 0) << r.err;
  const foak::v1::CreateJobRequest req = OnlyCreateRequest();
  const foak::v1::JobSpec& spec = req.spec();
  EXPECT_EQ(req.request_id(), "req-1");
  EXPECT_EQ(spec.name(), "flags");
  EXPECT_EQ(spec.model(), "/m");
  EXPECT_EQ(spec.dataset().train(), "/home/user/project/t.jsonl");
  EXPECT_EQ(spec.dataset().validation(), "/home/user/project/v.jsonl");
  EXPECT_EQ(spec.dataset().format(), "alpaca");
  EXPECT_EQ(spec.method(), "lora");  // implied by --lora-r
  EXPECT_EQ(spec.lora().r(), 16);
  EXPECT_DOUBLE_EQ(spec.lora().alpha(), 32);
  EXPECT_DOUBLE_EQ(spec.hyperparameters().learning_rate(), 3e-4);
  EXPECT_DOUBLE_EQ(spec.hyperparameters().epochs(), 2);
  EXPECT_EQ(spec.hyperparameters().batch_size(), 4);
  EXPECT_EQ(spec.hyperparameters().max_seq_len(), 256);
  EXPECT_FALSE(spec.hyperparameters().has_max_steps());
  ASSERT_EQ(spec.kernels_size(), 2);
  EXPECT_EQ(spec.kernels(0), "rms_norm");
  EXPECT_EQ(spec.kernels(1), "swiglu");
  EXPECT_EQ(spec.resources().gpus(), 2);
  EXPECT_EQ(spec.priority(), 5);
  EXPECT_EQ(spec.max_restarts(), 1);
  EXPECT_EQ(spec.stall_timeout_s(), 900);
  EXPECT_EQ(spec.start_timeout_s(), 7200);
  EXPECT_EQ(spec.hyperparameters().on_nonfinite(), "skip");
  EXPECT_EQ(spec.output_dir(), "/home/user/project/runs/a");
  EXPECT_EQ(spec.labels().at("a"), "1");
  EXPECT_EQ(spec.labels().at("b"), "x=y");
}

TEST_F(FoakctlTest, SubmitRetriesALostResponseWithTheSameRequestId) {
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.create_unavailable = 1;
  }
  const FoakctlResult r = Run({"submit", "--model", "/m", "--train", "/t.jsonl"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.create_requests.size(), 2u);
  EXPECT_FALSE(server_.jobs.create_requests[0].request_id().empty());
  EXPECT_EQ(server_.jobs.create_requests[0].request_id(), server_.jobs.create_requests[1].request_id());
  EXPECT_EQ(server_.jobs.jobs.size(), 1u);  // created once
  EXPECT_EQ(r.out, "job-0000000000000001\n");
}

TEST_F(FoakctlTest, SubmitGivesUpAfterThreeRetries) {
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.create_unavailable = 10;
  }
  const FoakctlResult r = Run({"submit", "--model", "/m", "--train", "/t.jsonl"});
  EXPECT_EQ(r.code, 6);
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  EXPECT_EQ(server_.jobs.create_requests.size(), 4u);  // 1 + 3 retries
}

TEST_F(FoakctlTest, UnknownFieldInAJobFileIsAUsageErrorNamingIt) {
  const FoakctlResult json = Run({"submit", "-f", WriteFile("bad.json", R"({"modle": "/m"})")});
  EXPECT_EQ(json.code, 2);
  EXPECT_THAT(json.err, HasSubstr("modle: unknown field; did you mean 'model'?"));
  const FoakctlResult yaml = Run({"submit", "-f", WriteFile("bad.yaml", "model: /m\nhyperparameters:\n  lerning_rate: 1\n")});
  EXPECT_EQ(yaml.code, 2);
  EXPECT_THAT(yaml.err, HasSubstr("hyperparameters.lerning_rate: unknown field"));
  const FoakctlResult type = Run({"submit", "-f", WriteFile("type.yaml", "hyperparameters:\n  max_steps: many\n")});
  EXPECT_EQ(type.code, 2);
  EXPECT_THAT(type.err, HasSubstr("hyperparameters.max_steps"));
  const FoakctlResult syntax = Run({"submit", "-f", WriteFile("syntax.json", "{\"model\": }")});
  EXPECT_EQ(syntax.code, 2);
  EXPECT_THAT(syntax.err, HasSubstr("syntax.json"));
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  EXPECT_TRUE(server_.jobs.create_requests.empty());  // nothing was sent
}

TEST_F(FoakctlTest, ARefusedSpecExits7WithTheServersMessage) {
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.create_error = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                             "spec.dataset.train: is required: a JSONL file");
  }
  const FoakctlResult r = Run({"submit", "--model", "/m"});
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(r.err, "foakctl: spec.dataset.train: is required: a JSONL file\n");
}

TEST_F(FoakctlTest, SubmitValidateOnly) {
  const FoakctlResult r = Run({"submit", "--model", "/m", "--train", "/t", "--validate-only"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("valid"));
  EXPECT_TRUE(OnlyCreateRequest().validate_only());
}

TEST_F(FoakctlTest, SubmitWatchExitsWithTheJobsFinalState) {
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.events = {StateEvent("job-0000000000000001", 1, Job::QUEUED, "Created", ""),
                           StateEvent("job-0000000000000001", 2, Job::FAILED, "WorkerError", "OOM")};
  }
  const FoakctlResult r = Run({"submit", "--model", "/m", "--train", "/t", "--watch"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_THAT(r.out, HasSubstr("job-0000000000000001\n"));
  EXPECT_THAT(r.out, HasSubstr("FAILED  WorkerError: OOM\n"));
}

// --- list / get / cancel / checkpoints ------------------------------------------

TEST_F(FoakctlTest, ListPagesThroughAllPages) {
  AddJob(Job::SUCCEEDED, "first");
  AddJob(Job::QUEUED, "second");
  {
    Job job;
    job.set_state(Job::RUNNING);
    job.set_reason("Scheduled");
    job.mutable_spec()->set_name("third");
    job.mutable_create_time()->set_seconds(1);  // long ago
    job.mutable_progress()->set_step(40);
    job.mutable_progress()->set_max_steps(160);
    job.mutable_progress()->set_loss(2.0134);
    job.mutable_progress()->set_tokens_per_second(1234.4);
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    server_.jobs.AddJob(job);
  }
  const FoakctlResult r = Run({"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[0], "ID")) << lines[0];
  for (const char* column : {"NAME", "STATE", "STEP", "LOSS", "TOKENS/S", "AGE", "REASON"}) {
    EXPECT_THAT(lines[0], HasSubstr(column));
  }
  // Newest first; the running job's progress is shown.
  EXPECT_THAT(lines[1], HasSubstr("job-0000000000000003"));
  EXPECT_THAT(lines[1], HasSubstr("third"));
  EXPECT_THAT(lines[1], HasSubstr("RUNNING"));
  EXPECT_THAT(lines[1], HasSubstr("40/160"));
  EXPECT_THAT(lines[1], HasSubstr("2.013"));
  EXPECT_THAT(lines[1], HasSubstr("1,234"));
  EXPECT_THAT(lines[1], HasSubstr("Scheduled"));
  EXPECT_THAT(lines[1], HasSubstr("d   "));  // created decades ago: days
  EXPECT_THAT(lines[3], HasSubstr("first"));
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.list_requests.size(), 2u);  // the fake pages by 2
  EXPECT_EQ(server_.jobs.list_requests[0].page_token(), "");
  EXPECT_EQ(server_.jobs.list_requests[1].page_token(), "2");
}

TEST_F(FoakctlTest, ListFiltersByStateAndLimits) {
  for (int i = 0; i < 3; ++i) AddJob(Job::RUNNING, absl::StrCat("r", i));
  const FoakctlResult r = Run({"list", "--state", "running", "--limit", "1", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["jobs"].size(), 1u);
  EXPECT_EQ(j["jobs"][0]["state"], "RUNNING");
  std::lock_guard<std::mutex> lock(server_.jobs.mu);
  ASSERT_EQ(server_.jobs.list_requests.size(), 1u);
  EXPECT_EQ(server_.jobs.list_requests[0].state(), Job::RUNNING);
  EXPECT_EQ(server_.jobs.list_requests[0].page_size(), 1);
}

TEST_F(FoakctlTest, GetPrintsProtoJsonOrAReadableView) {
  std::string id;
  {
    Job job;
    job.set_state(Job::FAILED);
    job.set_reason("WorkerError");
    job.set_message("CUDA out of memory");
    job.set_output_dir("/data/jobs/x");
    job.mutable_spec()->set_name("demo");
    job.mutable_spec()->set_model("/models/tiny");
    job.mutable_spec()->set_method("lora");
    job.mutable_spec()->mutable_lora()->set_r(8);
    job.mutable_spec()->set_max_restarts(2);
    job.set_restarts(1);
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    id = server_.jobs.AddJob(job);
  }
  const FoakctlResult json = Run({"get", id, "-o", "json"});
  ASSERT_EQ(json.code, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["output_dir"], "/data/jobs/x");  // proto field names kept
  EXPECT_EQ(j["spec"]["model"], "/models/tiny");
  EXPECT_EQ(j["state"], "FAILED");

  const FoakctlResult view = Run({"get", id});
  ASSERT_EQ(view.code, 0) << view.err;
  EXPECT_THAT(view.out, HasSubstr("ID:"));
  EXPECT_THAT(view.out, HasSubstr(id));
  EXPECT_THAT(view.out, HasSubstr("State:"));
  EXPECT_THAT(view.out, HasSubstr("FAILED\n"));
  EXPECT_THAT(view.out, HasSubstr("CUDA out of memory"));
  EXPECT_THAT(view.out, HasSubstr("lora (r=8)"));
  EXPECT_THAT(view.out, HasSubstr("1/2"));
}

TEST_F(FoakctlTest, QloraSubmitsItsQuantizationAndShowsIt) {
  const FoakctlResult r = Run({"submit", "--model", "/m", "--train", "/t.jsonl", "--method",
                               "qlora", "--lora-r", "16", "--double-quant", "false"});
  ASSERT_EQ(r.code, 0) << r.err;
  const foak::v1::JobSpec spec = OnlyCreateRequest().spec();
  EXPECT_EQ(spec.method(), "qlora");
  EXPECT_EQ(spec.lora().r(), 16);
  ASSERT_TRUE(spec.quantization().has_double_quant());
  EXPECT_FALSE(spec.quantization().double_quant());

  std::string id;
  {
    Job job;
    job.set_state(Job::RUNNING);
    *job.mutable_spec() = spec;
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    id = server_.jobs.AddJob(job);
  }
  const FoakctlResult view = Run({"get", id});
  ASSERT_EQ(view.code, 0) << view.err;
  EXPECT_THAT(view.out, HasSubstr("qlora (r=16), base nf4\n"));
}

TEST_F(FoakctlTest, NotFoundExits3) {
  const FoakctlResult r = Run({"get", "job-00000000000000ff"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.err, "foakctl: job job-00000000000000ff not found\n");
  EXPECT_EQ(Run({"watch", "job-00000000000000ff"}).code, 3);
  EXPECT_EQ(Run({"cancel", "job-00000000000000ff"}).code, 3);
}

TEST_F(FoakctlTest, CancelPrintsTheNewStateAndRefusesAFinishedJob) {
  const std::string queued = AddJob(Job::QUEUED, "q");
  const std::string done = AddJob(Job::SUCCEEDED, "d");
  const FoakctlResult r = Run({"cancel", queued});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, queued + " CANCELLED\n");
  const FoakctlResult refused = Run({"cancel", done});
  EXPECT_EQ(refused.code, 7);
  EXPECT_THAT(refused.err, HasSubstr("already SUCCEEDED"));
}

TEST_F(FoakctlTest, CheckpointsTable) {
  const std::string id = AddJob(Job::RUNNING, "c");
  {
    std::lock_guard<std::mutex> lock(server_.jobs.mu);
    foak::v1::Checkpoint c;
    c.set_step(40);
    c.set_path("/data/jobs/x/checkpoint-40");
    c.mutable_time()->set_seconds(1700000000);
    server_.jobs.checkpoints = {c};
  }
  const FoakctlResult r = Run({"checkpoints", id});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "STEP   TIME                  PATH\n"
            "40     2023-11-14 22:13:20   /data/jobs/x/checkpoint-40\n");
}

// --- files ------------------------------------------------------------------------

TEST_F(FoakctlTest, UploadSendsTheBytesAndTheirSha256) {
  const FoakctlResult r = Run({"upload", WriteFile("abc.jsonl", "abc")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("file-0000000000000001"));
  EXPECT_THAT(r.out, HasSubstr("abc.jsonl"));
  EXPECT_THAT(r.out, HasSubstr(kAbcSha256));
  std::lock_guard<std::mutex> lock(server_.files.mu);
  EXPECT_EQ(server_.files.bytes, "abc");
  EXPECT_EQ(server_.files.metadata.sha256(), kAbcSha256);
  EXPECT_EQ(server_.files.metadata.size_bytes(), 3);
  EXPECT_EQ(server_.files.metadata.filename(), "abc.jsonl");
  EXPECT_EQ(server_.files.metadata.purpose(), "dataset");
}

TEST_F(FoakctlTest, UploadStreamsLargeFilesInMebibyteChunks) {
  std::string big(2 * 1024 * 1024 + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) % 251);
  const FoakctlResult r = Run({"upload", WriteFile("big.jsonl", big), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["size_bytes"], std::to_string(big.size()));
  std::lock_guard<std::mutex> lock(server_.files.mu);
  EXPECT_TRUE(server_.files.bytes == big);
  EXPECT_EQ(server_.files.chunk_sizes, (std::vector<size_t>{1 << 20, 1 << 20, 12345}));
}

TEST_F(FoakctlTest, FilesAndDeleteFile) {
  ASSERT_EQ(Run({"upload", WriteFile("a.jsonl", "abc")}).code, 0);
  const FoakctlResult list = Run({"files"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("a.jsonl"));
  EXPECT_THAT(list.out, HasSubstr("3 B"));
  EXPECT_EQ(Run({"delete-file", "file-0000000000000001"}).out, "deleted file-0000000000000001\n");
  EXPECT_EQ(Run({"delete-file", "file-0000000000000001"}).code, 3);
}

// --- errors ------------------------------------------------------------------------

TEST_F(FoakctlTest, UnreachableServerExits6WithAHint) {
  // A port that was free a moment ago: nothing listens there.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string server = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  ::close(fd);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list", "--server", server},
        std::vector<std::string>{"watch", "job-0000000000000001", "--server", server}}) {
    const FoakctlResult r = Run(args, /*add_server=*/false);
    EXPECT_EQ(r.code, 6) << r.err;
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat("is foakd running at ", server,
                                              "? set --server or FOAK_SERVER")));
  }
}

TEST_F(FoakctlTest, ServerComesFromTheEnvironment) {
  AddJob(Job::QUEUED, "env");
  ::setenv("FOAK_SERVER", server_.address().c_str(), 1);
  const FoakctlResult r = Run({"list"}, /*add_server=*/false);
  ::unsetenv("FOAK_SERVER");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("env"));
}

TEST_F(FoakctlTest, UsageErrorsExit2) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"bogus"},
           {"get"},
           {"get", "a", "b"},
           {"list", "--limit", "many"},
           {"list", "--state", "sleeping"},
           {"list", "--nope"},
           {"list", "-o", "yaml"},
           {"list", "--timeout", "0"},
           {"submit"},
           {"submit", "--model", "/m", "--method", "dora"},
           {"submit", "--model", "/m", "--method", "lora", "--double-quant", "true"},
           {"submit", "--model", "/m", "--double-quant", "maybe"},
           {"submit", "--model", "/m", "--label", "novalue"},
           {"submit", "-f", "/nonexistent/job.yaml"},
           {"watch", "job-1", "--after-seq"},
       }) {
    const FoakctlResult r = Run(args);
    EXPECT_EQ(r.code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_TRUE(absl::StartsWith(r.err, "foakctl: ")) << r.err;
  }
  EXPECT_EQ(Run({}, /*add_server=*/false).code, 2);
}

TEST_F(FoakctlTest, HelpExits0AndDocumentsExitCodes) {
  const FoakctlResult top = Run({"--help"}, /*add_server=*/false);
  EXPECT_EQ(top.code, 0);
  EXPECT_THAT(top.out, HasSubstr("Exit codes:"));
  EXPECT_THAT(top.out, HasSubstr("submit"));
  const FoakctlResult sub = Run({"submit", "-h"});
  EXPECT_EQ(sub.code, 0);
  EXPECT_THAT(sub.out, HasSubstr("--learning-rate X"));
  EXPECT_THAT(sub.out, HasSubstr("--server HOST:PORT"));
  EXPECT_EQ(Run({"help", "logs"}, false).code, 0);
}

}  // namespace
}  // namespace foak::client

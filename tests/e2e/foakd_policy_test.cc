// foakd with an operator's policy, through its gRPC API as a client meets it:
// the real foakd binary started with --model_roots, --data_roots,
// --output_roots and size limits refuses a spec whose model escapes through a
// symlink, whose output_dir climbs out with '..', or that asks for too many
// steps, with INVALID_ARGUMENT naming the field, the path, where it resolves
// and the allowed roots; a spec inside the roots validates. A root that does
// not exist stops foakd at start, naming the flag. No job is launched, so no
// worker runs.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_job_inputs.h"
#include "tests/testing/foakd_process.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;

class FoakdPolicyE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    char* real = realpath(dir_.path().c_str(), nullptr);
    ASSERT_NE(real, nullptr);
    root_ = real;
    free(real);
    inside_ = testing::WriteFakeJobInputs(JoinPath(root_, "models"));  // models/model, models/train.jsonl
    outside_ = testing::WriteFakeJobInputs(JoinPath(root_, "outside"));
    ASSERT_TRUE(MakeDirs(JoinPath(root_, "data")).ok());
    ASSERT_TRUE(MakeDirs(JoinPath(root_, "out")).ok());
    train_ = JoinPath(root_, "data/train.jsonl");
    ASSERT_TRUE(WriteFileAtomically(train_, "{\"text\": \"hi\"}\n").ok());
    link_ = JoinPath(root_, "models/escape");
    ASSERT_EQ(symlink(outside_.model.c_str(), link_.c_str()), 0);
    // foakd wants an executable worker at start; no job here ever runs one.
    worker_ = JoinPath(root_, "no-worker.sh");
    ASSERT_TRUE(WriteFileAtomically(worker_, "#!/bin/sh\necho 'no job should launch' >&2\nexit 1\n").ok());
    ASSERT_EQ(chmod(worker_.c_str(), 0755), 0);
  }

  grpc::Status Create(testing::FoakdProcess& foakd, const Json& j, bool validate_only = false) {
    foak::v1::CreateJobRequest req;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(j.dump(), req.mutable_spec()).ok()) << j.dump();
    req.set_validate_only(validate_only);
    grpc::ClientContext ctx;
    foak::v1::Job job;
    return foakd.jobs().CreateJob(&ctx, req, &job);
  }

  Json Spec() const {
    return {{"model", inside_.model},
            {"dataset", {{"train", train_}}},
            {"output_dir", JoinPath(root_, "out/run-1")},
            {"hyperparameters", {{"max_steps", 10}, {"max_seq_len", 64}}}};
  }

  testing::TempDir dir_{"foakd_policy"};
  std::string root_, train_, link_, worker_;
  testing::FakeJobInputs inside_, outside_;
};

TEST_F(FoakdPolicyE2E, ConfinedFoakdRefusesEscapesAndOversizedJobs) {
  const std::string models = JoinPath(root_, "models");
  testing::FoakdProcess foakd(JoinPath(root_, "foakd"),
                              {"--model_roots=" + models, "--data_roots=" + JoinPath(root_, "data"),
                               "--output_roots=" + JoinPath(root_, "out"), "--max_steps=100",
                               "--max_seq_len=256", "--worker=" + worker_});
  ASSERT_TRUE(foakd.Start());

  grpc::Status s = Create(foakd, Spec(), /*validate_only=*/true);
  EXPECT_TRUE(s.ok()) << s.error_message();

  Json spec = Spec();
  spec["model"] = link_;
  s = Create(foakd, spec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("spec: model = '" + link_ + "' resolves to '" + outside_.model +
                                   "', which is outside the allowed roots " + models +
                                   " (--model_roots)"),
            std::string::npos)
      << s.error_message();

  spec = Spec();
  spec["dataset"]["train"] = outside_.train;
  s = Create(foakd, spec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("spec: dataset.train = '" + outside_.train + "'"), std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("(--data_roots)"), std::string::npos) << s.error_message();

  spec = Spec();
  spec["output_dir"] = JoinPath(root_, "out/new/../../outside/run");
  s = Create(foakd, spec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("spec: output_dir = '" + JoinPath(root_, "out/new/../../outside/run") +
                                   "' has '..' in the part that does not exist yet"),
            std::string::npos)
      << s.error_message();

  spec = Spec();
  spec["hyperparameters"]["max_steps"] = 1000;
  s = Create(foakd, spec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("spec: hyperparameters.max_steps = 1000 is above this foakd's "
                                   "limit of 100 (--max_steps)"),
            std::string::npos)
      << s.error_message();

  spec = Spec();
  spec["hyperparameters"]["max_seq_len"] = 4096;
  s = Create(foakd, spec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("hyperparameters.max_seq_len = 4096 is above this foakd's limit of "
                                   "256 (--max_seq_len)"),
            std::string::npos)
      << s.error_message();

  // Nothing was created.
  grpc::ClientContext ctx;
  foak::v1::ListJobsRequest list;
  foak::v1::ListJobsResponse jobs;
  ASSERT_TRUE(foakd.jobs().ListJobs(&ctx, list, &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 0);
  EXPECT_EQ(foakd.Stop(), 0);
}

TEST_F(FoakdPolicyE2E, ARootThatDoesNotExistStopsFoakdNamingTheFlag) {
  const std::string missing = JoinPath(root_, "no-such-models");
  const testing::WorkerResult r = testing::RunCapture(
      std::string(FOAKD_BIN) + " --listen=127.0.0.1:0 --metrics_listen= --gpus=none --data_dir=" +
      JoinPath(root_, "foakd-bad") + " --worker=" + worker_ + " --model_roots=" + missing);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("--model_roots: '" + missing + "' cannot be resolved"), std::string::npos) << r.err;
  const testing::WorkerResult neg = testing::RunCapture(
      std::string(FOAKD_BIN) + " --listen=127.0.0.1:0 --metrics_listen= --gpus=none --data_dir=" +
      JoinPath(root_, "foakd-bad") + " --worker=" + worker_ + " --max_gpus_per_job=-2");
  EXPECT_EQ(neg.exit_code, 1) << neg.err;
  EXPECT_NE(neg.err.find("--max_gpus_per_job = -2; expected 0 (no limit) or a positive limit"),
            std::string::npos)
      << neg.err;
  // Tenants without roots: a spec could name another tenant's files.
  ASSERT_TRUE(WriteFileAtomically(JoinPath(root_, "tokens"), "team-a aaaaaaaaaaaaaaaaaaaaaaaa\n").ok());
  const testing::WorkerResult open = testing::RunCapture(
      std::string(FOAKD_BIN) + " --listen=127.0.0.1:0 --metrics_listen= --gpus=none --data_dir=" +
      JoinPath(root_, "foakd-bad") + " --worker=" + worker_ + " --auth_tokens_file=" +
      JoinPath(root_, "tokens") + " --model_roots=" + root_);
  EXPECT_EQ(open.exit_code, 2) << open.err;
  EXPECT_NE(open.err.find("--auth_tokens_file makes foakd serve several tenants"), std::string::npos)
      << open.err;
  EXPECT_NE(open.err.find("set --model_roots (or --shared_model_roots), --data_roots and "
                          "--output_roots too"),
            std::string::npos)
      << open.err;
  // And a bad --stall_timeout_s.
  const testing::WorkerResult stall = testing::RunCapture(
      std::string(FOAKD_BIN) + " --listen=127.0.0.1:0 --metrics_listen= --gpus=none --data_dir=" +
      JoinPath(root_, "foakd-bad") + " --worker=" + worker_ + " --stall_timeout_s=-5");
  EXPECT_EQ(stall.exit_code, 2) << stall.err;
  EXPECT_NE(stall.err.find("--stall_timeout_s = -5; expected seconds from 0 (never)"),
            std::string::npos)
      << stall.err;
}

}  // namespace
}  // namespace foak

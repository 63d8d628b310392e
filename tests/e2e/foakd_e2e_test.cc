// foakd end to end on the CPU, as a user meets it: the real foakd binary
// launching real foak-worker processes that train the debug model, driven
// over gRPC. Covers the job lifecycle and its event stream (contiguous seq,
// resume with after_seq), idempotent creates, the error codes, cancel,
// uploads, a graceful shutdown ending open watches, and a foakd crash in the
// middle of a queue with nothing lost.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

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
using Clock = std::chrono::steady_clock;

class FoakdE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("foakd_e2e");
    model_ = JoinPath(dir_->path(), "model");
    testing::WorkerResult r = testing::RunWorkerCapture(
        "init-model --config " + std::string(FOAK_SOURCE_DIR) +
        "/examples/debug_model/config.json --out " + model_ + " --seed 1");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  // A chat job on the arithmetic data; `steps` optimizer steps.
  static foak::v1::JobSpec Spec(const std::string& name, int64_t steps, int64_t save_steps = 0) {
    Json j = {{"name", name},
              {"model", model_},
              {"dataset",
               {{"train", std::string(FOAK_SOURCE_DIR) + "/examples/data/arith_train.jsonl"},
                {"format", "chat"}}},
              {"hyperparameters",
               {{"max_steps", steps},
                {"batch_size", 2},
                {"max_seq_len", 64},
                {"logging_steps", 2},
                {"save_steps", save_steps},
                {"learning_rate", 0.005},
                {"precision", "fp32"}}}};
    foak::v1::JobSpec spec;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(j.dump(), &spec).ok());
    return spec;
  }

  static grpc::Status Create(testing::FoakdProcess& foakd, const foak::v1::JobSpec& spec,
                             const std::string& request_id, Job* job) {
    grpc::ClientContext ctx;
    foak::v1::CreateJobRequest req;
    *req.mutable_spec() = spec;
    req.set_request_id(request_id);
    return foakd.jobs().CreateJob(&ctx, req, job);
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

  // Reads the stream to its end; `on_event` may stop early by returning false.
  static grpc::Status Watch(testing::FoakdProcess& foakd, const std::string& id, int64_t after_seq,
                            std::vector<JobEvent>* events,
                            const std::function<bool(const JobEvent&)>& on_event = nullptr,
                            std::vector<std::string> kinds = {}, bool history_only = false) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(240));
    foak::v1::WatchJobRequest req;
    req.set_id(id);
    req.set_after_seq(after_seq);
    for (const std::string& k : kinds) req.add_kinds(k);
    req.set_history_only(history_only);
    auto reader = foakd.jobs().WatchJob(&ctx, req);
    JobEvent e;
    while (reader->Read(&e)) {
      events->push_back(e);
      if (on_event && !on_event(e)) {
        ctx.TryCancel();
        break;
      }
    }
    return reader->Finish();
  }

  static bool WaitFor(const std::function<bool()>& done, int seconds = 120) {
    const auto end = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < end) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  static testing::TempDir* dir_;
  static std::string model_;
};

testing::TempDir* FoakdE2E::dir_ = nullptr;
std::string FoakdE2E::model_;

std::vector<Job::State> States(const std::vector<JobEvent>& events) {
  std::vector<Job::State> states;
  for (const JobEvent& e : events) {
    if (e.has_state()) states.push_back(e.state().state());
  }
  return states;
}

TEST_F(FoakdE2E, JobRunsToTheEndAndItsEventsResumeWithoutLossOrRepeat) {
  testing::FoakdProcess foakd(JoinPath(dir_->path(), "d1"));
  ASSERT_TRUE(foakd.Start());
  Job job;
  ASSERT_TRUE(Create(foakd, Spec("lifecycle", 12, 4), "req-lifecycle", &job).ok());
  EXPECT_EQ(job.id().rfind("job-", 0), 0u);
  // A retried create returns the same job; another body under the id is refused.
  Job again;
  ASSERT_TRUE(Create(foakd, Spec("lifecycle", 12, 4), "req-lifecycle", &again).ok());
  EXPECT_EQ(again.id(), job.id());
  Job other;
  EXPECT_EQ(Create(foakd, Spec("different", 3), "req-lifecycle", &other).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  std::vector<JobEvent> events;
  grpc::Status s = Watch(foakd, job.id(), 0, &events);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << foakd.Log();
  ASSERT_FALSE(events.empty());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq(), static_cast<int64_t>(i + 1));
  EXPECT_EQ(States(events), (std::vector<Job::State>{Job::QUEUED, Job::STARTING, Job::RUNNING,
                                                      Job::SUCCEEDED}))
      << Get(foakd, job.id()).message();
  std::vector<int64_t> steps, checkpoints;
  bool trained_line = false;
  for (const JobEvent& e : events) {
    if (e.has_metrics()) {
      steps.push_back(e.metrics().step());
      EXPECT_EQ(e.metrics().max_steps(), 12);
      EXPECT_GT(e.metrics().tokens_per_second(), 0);
      EXPECT_GT(e.metrics().peak_memory_bytes(), 0);
    }
    if (e.has_checkpoint()) checkpoints.push_back(e.checkpoint().step());
    if (e.has_log() && e.log().text().find("trained to step 12") != std::string::npos) trained_line = true;
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{2, 4, 6, 8, 10, 12}));
  EXPECT_TRUE(trained_line) << "the worker's output arrives as log events";
  EXPECT_GE(checkpoints.size(), 3u);

  // Resuming after seq 3 gives exactly the rest; a filtered history only logs.
  std::vector<JobEvent> tail;
  ASSERT_TRUE(Watch(foakd, job.id(), 3, &tail).ok());
  ASSERT_EQ(tail.size(), events.size() - 3);
  for (size_t i = 0; i < tail.size(); ++i) EXPECT_EQ(tail[i].DebugString(), events[i + 3].DebugString());
  std::vector<JobEvent> logs;
  ASSERT_TRUE(Watch(foakd, job.id(), 0, &logs, nullptr, {"log"}, true).ok());
  ASSERT_FALSE(logs.empty());
  for (const JobEvent& e : logs) EXPECT_TRUE(e.has_log());

  Job done = Get(foakd, job.id());
  EXPECT_EQ(done.state(), Job::SUCCEEDED);
  EXPECT_EQ(done.reason(), "Completed");
  EXPECT_EQ(done.progress().step(), 12);
  EXPECT_TRUE(PathExists(JoinPath(done.output_dir(), "final/config.json"))) << done.output_dir();
  grpc::ClientContext ctx;
  foak::v1::ListCheckpointsRequest lreq;
  lreq.set_id(job.id());
  foak::v1::ListCheckpointsResponse list;
  ASSERT_TRUE(foakd.jobs().ListCheckpoints(&ctx, lreq, &list).ok());
  ASSERT_GE(list.checkpoints_size(), 3);
  EXPECT_EQ(list.checkpoints(0).step(), 4);
}

TEST_F(FoakdE2E, ErrorsHaveTheirCodesAndNameTheField) {
  testing::FoakdProcess foakd(JoinPath(dir_->path(), "d2"));
  ASSERT_TRUE(foakd.Start());
  Job job;
  foak::v1::JobSpec bad = Spec("bad", 4);
  bad.mutable_hyperparameters()->set_lr_scheduler("cosin");
  grpc::Status s = Create(foakd, bad, "", &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("hyperparameters.lr_scheduler"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("cosine"), std::string::npos) << s.error_message();

  foak::v1::JobSpec gpu = Spec("gpu", 4);
  gpu.mutable_resources()->set_gpus(1);
  s = Create(foakd, gpu, "", &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  grpc::ClientContext ctx;
  foak::v1::GetJobRequest get;
  get.set_id("job-0000000000000000");
  EXPECT_EQ(foakd.jobs().GetJob(&ctx, get, &job).error_code(), grpc::StatusCode::NOT_FOUND);

  // Cancelling a finished job is an illegal transition.
  ASSERT_TRUE(Create(foakd, Spec("short", 2), "", &job).ok());
  std::vector<JobEvent> events;
  ASSERT_TRUE(Watch(foakd, job.id(), 0, &events).ok());
  grpc::ClientContext cctx;
  foak::v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  Job after;
  s = foakd.jobs().CancelJob(&cctx, cancel, &after);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("SUCCEEDED"), std::string::npos) << s.error_message();
}

TEST_F(FoakdE2E, CancelStopsTheWorkerAndTheQueueMovesOn) {
  testing::FoakdProcess foakd(JoinPath(dir_->path(), "d3"));
  ASSERT_TRUE(foakd.Start());
  Job running, queued;
  ASSERT_TRUE(Create(foakd, Spec("long", 100000), "", &running).ok());
  ASSERT_TRUE(Create(foakd, Spec("next", 2), "", &queued).ok());
  std::vector<JobEvent> events;
  // Watch until the long job reports its first metrics, then cancel it.
  Watch(foakd, running.id(), 0, &events, [](const JobEvent& e) { return !e.has_metrics(); });
  EXPECT_EQ(Get(foakd, queued.id()).state(), Job::QUEUED) << "one CPU slot: the second job waits";
  grpc::ClientContext ctx;
  foak::v1::CancelJobRequest cancel;
  cancel.set_id(running.id());
  Job after;
  ASSERT_TRUE(foakd.jobs().CancelJob(&ctx, cancel, &after).ok());
  EXPECT_TRUE(after.state() == Job::CANCELLING || after.state() == Job::CANCELLED) << after.state();
  events.clear();
  ASSERT_TRUE(Watch(foakd, running.id(), 0, &events).ok());
  EXPECT_EQ(States(events).back(), Job::CANCELLED);
  EXPECT_TRUE(ListDir(JoinPath(foakd.data_dir(), "jobs/" + running.id() + "/run"))
                  .value_or(std::vector<std::string>{})
                  .empty())
      << "no worker pid file is left";
  // The queued job runs once the slot is free.
  events.clear();
  ASSERT_TRUE(Watch(foakd, queued.id(), 0, &events).ok());
  EXPECT_EQ(States(events).back(), Job::SUCCEEDED);
}

TEST_F(FoakdE2E, UploadedDatasetTrainsAndCannotBeDeletedWhileUsed) {
  testing::FoakdProcess foakd(JoinPath(dir_->path(), "d4"));
  ASSERT_TRUE(foakd.Start());
  const std::string data =
      ReadFileToString(std::string(FOAK_SOURCE_DIR) + "/examples/data/arith_valid.jsonl").value();
  grpc::ClientContext ctx;
  foak::v1::File file;
  auto writer = foakd.files().UploadFile(&ctx, &file);
  foak::v1::UploadFileRequest req;
  req.mutable_metadata()->set_filename("arith_valid.jsonl");
  req.mutable_metadata()->set_size_bytes(static_cast<int64_t>(data.size()));
  ASSERT_TRUE(writer->Write(req));
  for (size_t off = 0; off < data.size(); off += 1000) {
    foak::v1::UploadFileRequest chunk;
    chunk.set_chunk(data.substr(off, 1000));
    ASSERT_TRUE(writer->Write(chunk));
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(file.size_bytes(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(file.sha256().size(), 64u);

  foak::v1::JobSpec spec = Spec("uploaded", 100000);
  spec.mutable_dataset()->set_train(file.id());
  Job job;
  ASSERT_TRUE(Create(foakd, spec, "", &job).ok());
  EXPECT_EQ(job.spec().dataset().train(), file.id());
  grpc::ClientContext dctx;
  foak::v1::DeleteFileRequest del;
  del.set_id(file.id());
  foak::v1::DeleteFileResponse dresp;
  s = foakd.files().DeleteFile(&dctx, del, &dresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  std::vector<JobEvent> events;
  Watch(foakd, job.id(), 0, &events, [](const JobEvent& e) { return !e.has_metrics(); });
  EXPECT_EQ(Get(foakd, job.id()).state(), Job::RUNNING) << Get(foakd, job.id()).message();
  grpc::ClientContext cctx;
  foak::v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  Job after;
  ASSERT_TRUE(foakd.jobs().CancelJob(&cctx, cancel, &after).ok());
}

TEST_F(FoakdE2E, GracefulShutdownEndsWatchesAndACrashMidQueueLosesNothing) {
  const std::string data_dir = JoinPath(dir_->path(), "d5");
  auto foakd = std::make_unique<testing::FoakdProcess>(data_dir);
  ASSERT_TRUE(foakd->Start());
  Job first, second, third;
  ASSERT_TRUE(Create(*foakd, Spec("first", 40, 4), "", &first).ok());
  ASSERT_TRUE(Create(*foakd, Spec("second", 4), "", &second).ok());
  ASSERT_TRUE(Create(*foakd, Spec("third", 4), "", &third).ok());

  // An open watch ends with UNAVAILABLE, naming where to resume, when foakd stops.
  std::vector<JobEvent> before;
  grpc::Status watch_status;
  std::thread watcher([&] { watch_status = Watch(*foakd, first.id(), 0, &before); });
  ASSERT_TRUE(WaitFor([&] {
    for (const JobEvent& e : before) {
      if (e.has_checkpoint()) return true;
    }
    return false;
  })) << foakd->Log();
  foakd->Kill(SIGTERM);
  watcher.join();
  EXPECT_EQ(watch_status.error_code(), grpc::StatusCode::UNAVAILABLE) << watch_status.error_message();
  EXPECT_NE(watch_status.error_message().find("after_seq"), std::string::npos);

  // Up again on the same data; then crash it (SIGKILL) while the first job runs.
  foakd = std::make_unique<testing::FoakdProcess>(data_dir);
  ASSERT_TRUE(foakd->Start());
  std::vector<JobEvent> replay;
  Watch(*foakd, first.id(), 0, &replay, [&](const JobEvent& e) {
    return static_cast<size_t>(e.seq()) <= before.size();
  });
  ASSERT_GE(replay.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(replay[i].DebugString(), before[i].DebugString()) << "events survive a restart";
  }
  ASSERT_TRUE(WaitFor([&] { return Get(*foakd, first.id()).state() == Job::RUNNING; })) << foakd->Log();
  foakd->Kill(SIGKILL);
  foakd = std::make_unique<testing::FoakdProcess>(data_dir);
  ASSERT_TRUE(foakd->Start());

  // Every job runs to the end; the first one resumed from a checkpoint.
  for (const Job* job : {&first, &second, &third}) {
    std::vector<JobEvent> events;
    grpc::Status s = Watch(*foakd, job->id(), 0, &events);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(States(events).back(), Job::SUCCEEDED) << job->id() << "\n" << foakd->Log();
  }
  std::vector<JobEvent> events;
  ASSERT_TRUE(Watch(*foakd, first.id(), 0, &events).ok());
  int restarts_seen = 0;
  std::vector<int64_t> steps;
  for (const JobEvent& e : events) {
    if (e.has_state() && e.state().reason() == "CoordinatorRestarted") ++restarts_seen;
    if (e.has_metrics()) steps.push_back(e.metrics().step());
  }
  EXPECT_EQ(restarts_seen, 2);
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.back(), 40);
  // After a restart the steps continue from a checkpoint (a multiple of 4),
  // not from 1: the worker resumed.
  for (size_t i = 1; i < steps.size(); ++i) {
    if (steps[i] <= steps[i - 1]) {
      EXPECT_GT(steps[i], 2) << "restarted from scratch";
    }
  }
  EXPECT_EQ(Get(*foakd, first.id()).restarts(), 0) << "a foakd restart is not the job's restart";
}

// The pid of rank 0 of the job's current attempt `attempt` (its launcher's
// pid file), or -1 while there is none.
pid_t WorkerPid(const std::string& data_dir, const std::string& id, int64_t attempt) {
  const std::string text =
      ReadFileToString(JoinPath(data_dir, "jobs/" + id + "/run/rank-0.pid")).value_or("");
  if (text.find("attempt=" + std::to_string(attempt) + "\n") == std::string::npos) return -1;
  const size_t at = text.find("pid=");
  return at == std::string::npos ? -1 : static_cast<pid_t>(std::atol(text.c_str() + at + 4));
}

// (step, loss) of every line of a job's metrics.jsonl.
std::vector<std::pair<int64_t, double>> Losses(const std::string& path) {
  std::vector<std::pair<int64_t, double>> out;
  for (const Json& line : testing::ReadMetrics(path)) {
    if (line.contains("loss")) out.emplace_back(line.at("step").get<int64_t>(), line.at("loss").get<double>());
  }
  return out;
}

// A worker SIGKILLed in the middle of training is relaunched from its newest
// checkpoint and ends with the per-step losses of a run that was never
// interrupted; killed once more than max_restarts allows, the job fails
// saying why.
TEST_F(FoakdE2E, AWorkerKilledMidRunResumesWithTheSameLossesUntilMaxRestarts) {
  const std::string data_dir = JoinPath(dir_->path(), "d-kill");
  testing::FoakdProcess foakd(data_dir);
  ASSERT_TRUE(foakd.Start());
  constexpr int64_t kSteps = 300, kSave = 25;
  Job plain, killed;
  ASSERT_TRUE(Create(foakd, Spec("plain", kSteps, kSave), "", &plain).ok());
  foak::v1::JobSpec spec = Spec("killed", kSteps, kSave);
  spec.set_max_restarts(1);
  ASSERT_TRUE(Create(foakd, spec, "", &killed).ok());

  // Kill the second job's worker once it has written a checkpoint and runs on.
  std::vector<JobEvent> events;
  pid_t pid = -1;
  ASSERT_TRUE(Watch(foakd, killed.id(), 0, &events, [&](const JobEvent& e) {
                return !(e.has_metrics() && e.metrics().step() > kSave + 3);
              }).ok() || !events.empty());
  pid = WorkerPid(data_dir, killed.id(), 0);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  std::vector<JobEvent> all;
  ASSERT_TRUE(Watch(foakd, killed.id(), 0, &all).ok());
  ASSERT_EQ(States(all).back(), Job::SUCCEEDED) << foakd.Log();
  bool restarted = false;
  for (const JobEvent& e : all) {
    if (e.has_state() && e.state().reason() == "Restarting") {
      restarted = true;
      EXPECT_NE(e.state().message().find("Killed"), std::string::npos) << e.state().message();
      EXPECT_NE(e.state().message().find("SIGKILL"), std::string::npos) << e.state().message();
    }
  }
  EXPECT_TRUE(restarted);
  EXPECT_EQ(Get(foakd, killed.id()).restarts(), 1);
  const std::string attempt1 =
      ReadFileToString(JoinPath(data_dir, "jobs/" + killed.id() + "/logs/attempt-1-rank-0.log"))
          .value_or("");
  EXPECT_NE(attempt1.find("resuming from "), std::string::npos) << attempt1;

  std::vector<JobEvent> plain_events;
  ASSERT_TRUE(Watch(foakd, plain.id(), 0, &plain_events).ok());
  ASSERT_EQ(States(plain_events).back(), Job::SUCCEEDED);
  const auto expected = Losses(JoinPath(data_dir, "jobs/" + plain.id() + "/output/metrics.jsonl"));
  const auto got = Losses(JoinPath(data_dir, "jobs/" + killed.id() + "/output/metrics.jsonl"));
  ASSERT_EQ(expected.size(), static_cast<size_t>(kSteps / 2));  // logging_steps = 2
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first, expected[i].first);
    EXPECT_EQ(got[i].second, expected[i].second) << "step " << got[i].first;
  }

  // max_restarts = 0: the first kill fails the job, naming the signal.
  foak::v1::JobSpec once = Spec("once", kSteps, kSave);
  Job fails;
  ASSERT_TRUE(Create(foakd, once, "", &fails).ok());
  ASSERT_TRUE(WaitFor([&] { return Get(foakd, fails.id()).state() == Job::RUNNING; }));
  ASSERT_TRUE(WaitFor([&] { return WorkerPid(data_dir, fails.id(), 0) > 0; }));
  ASSERT_EQ(::kill(WorkerPid(data_dir, fails.id(), 0), SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return Get(foakd, fails.id()).state() == Job::FAILED; })) << foakd.Log();
  const Job failed = Get(foakd, fails.id());
  EXPECT_EQ(failed.reason(), "Killed");
  EXPECT_NE(failed.message().find("SIGKILL"), std::string::npos) << failed.message();
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

grpc::ByteBuffer Buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Waits for the completion-queue event of `tag`.
bool Await(grpc::CompletionQueue& cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  return cq.Next(&got, &ok) && got == tag && ok;
}

// The standard health service and server reflection answer, as grpcurl and
// grpc_health_probe call them: raw protobuf bytes through a generic stub, so
// the test needs neither tool nor a copy of their protos.
TEST_F(FoakdE2E, HealthServiceAndReflectionAnswer) {
  testing::FoakdProcess foakd(JoinPath(dir_->path(), "d6"));
  ASSERT_TRUE(foakd.Start());
  auto channel = grpc::CreateChannel(foakd.address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;

  // grpc.health.v1.Health/Check {service: "foak.v1.JobService"} -> {status: SERVING (1)}.
  const std::string service = "foak.v1.JobService";
  grpc::ClientContext hctx;
  auto health = stub.PrepareUnaryCall(&hctx, "/grpc.health.v1.Health/Check",
                                      Buffer(std::string("\x0a") + static_cast<char>(service.size()) + service),
                                      &cq);
  health->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  health->Finish(&response, &status, reinterpret_cast<void*>(1));
  ASSERT_TRUE(Await(cq, reinterpret_cast<void*>(1)));
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Bytes(response), std::string("\x08\x01"));

  // grpc.reflection.v1alpha.ServerReflection: list_services (field 7) names our services.
  grpc::ClientContext rctx;
  auto stream = stub.PrepareCall(
      &rctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  stream->StartCall(reinterpret_cast<void*>(2));
  ASSERT_TRUE(Await(cq, reinterpret_cast<void*>(2)));
  stream->Write(Buffer(std::string("\x3a\x00", 2)), reinterpret_cast<void*>(3));
  ASSERT_TRUE(Await(cq, reinterpret_cast<void*>(3)));
  grpc::ByteBuffer listed;
  stream->Read(&listed, reinterpret_cast<void*>(4));
  ASSERT_TRUE(Await(cq, reinterpret_cast<void*>(4)));
  const std::string names = Bytes(listed);
  for (const char* name : {"foak.v1.JobService", "foak.v1.FileService", "foak.v1.WorkerService",
                           "grpc.health.v1.Health"}) {
    EXPECT_NE(names.find(name), std::string::npos) << name;
  }
  stream->WritesDone(reinterpret_cast<void*>(5));
  ASSERT_TRUE(Await(cq, reinterpret_cast<void*>(5)));
  stream->Finish(&status, reinterpret_cast<void*>(6));
  ASSERT_TRUE(Await(cq, reinterpret_cast<void*>(6)));
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
}

}  // namespace
}  // namespace foak

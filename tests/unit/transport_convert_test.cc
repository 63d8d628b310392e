// The transport's conversions: a JobSpec becomes JSON the worker's parser
// accepts (int64 as numbers, maps as objects, google.protobuf.Value as its
// JSON, unset fields absent), absl codes map to gRPC codes one to one, stored
// events become JobEvents (a "bench" row too), a worker's BenchResult becomes
// the engine's field for field, and foakd's --gpus values parse.
#include <google/protobuf/util/json_util.h>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/transport/foakd.h"
#include "server/transport/grpc_status.h"
#include "server/transport/job_convert.h"
#include "server/transport/request_metrics.h"
#include "worker/train/bench_result.h"

namespace foak {
namespace {

using Json = nlohmann::json;

TEST(JobSpecToJson, KeepsNumbersMapsValuesAndOnlySetFields) {
  foak::v1::JobSpec spec;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(R"({
      "model": "/m", "dataset": {"train": "/t", "chat_template": {"user": {"prefix": "U: "}}},
      "hyperparameters": {"max_steps": "160", "learning_rate": 0.005, "packing": false},
      "lora": {"target_modules": ["q_proj", "v_proj"]}, "method": "lora",
      "kernels": ["foak"], "resources": {"gpus": 2}, "priority": -3,
      "labels": {"team": "nlp"}, "resume_from_checkpoint": true})",
                                                          &spec)
                  .ok());
  Json j = Json::parse(JobSpecToJson(spec));
  EXPECT_EQ(j["hyperparameters"]["max_steps"], 160);  // a number, not "160"
  EXPECT_TRUE(j["hyperparameters"]["max_steps"].is_number_integer());
  EXPECT_EQ(j["hyperparameters"]["packing"], false);  // set explicitly: kept
  EXPECT_FALSE(j["hyperparameters"].contains("batch_size"));  // unset: absent
  EXPECT_EQ(j["dataset"]["chat_template"]["user"]["prefix"], "U: ");
  EXPECT_EQ(j["lora"]["target_modules"], Json::array({"q_proj", "v_proj"}));
  EXPECT_EQ(j["labels"], Json({{"team", "nlp"}}));
  EXPECT_EQ(j["resources"]["gpus"], 2);
  EXPECT_EQ(j["priority"], -3);
  EXPECT_EQ(j["resume_from_checkpoint"], true);
  EXPECT_FALSE(j.contains("output_dir"));
  EXPECT_FALSE(j.contains("device"));
}

// resources.processes (a CPU job's ranks) goes to foakd as a number, both
// ways; a GPU job's progress carries each rank's peak memory.
TEST(JobSpecToJson, ResourcesProcessesRoundTrip) {
  foak::v1::JobSpec spec;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"model": "/m", "resources": {"processes": 4}})", &spec)
                  .ok());
  EXPECT_EQ(spec.resources().processes(), 4);
  Json j = Json::parse(JobSpecToJson(spec));
  EXPECT_EQ(j["resources"], Json({{"processes", 4}}));  // gpus unset: absent, a CPU job
  EXPECT_TRUE(j["resources"]["processes"].is_number_integer());

  JobView view;
  view.record.id = "job-1";
  view.record.spec_json = j.dump();
  view.progress = JobProgressInfo();
  view.progress->peak_memory_bytes = 1000;
  view.progress->rank_peak_memory_bytes = {1000, 0, 3000, 4000};
  foak::v1::Job job = ToProtoJob(view).value();
  EXPECT_EQ(job.spec().resources().processes(), 4);
  EXPECT_EQ(job.spec().resources().gpus(), 0);
  EXPECT_EQ(job.progress().peak_memory_bytes(), 1000);
  EXPECT_EQ(std::vector<int64_t>(job.progress().rank_peak_memory_bytes().begin(),
                                 job.progress().rank_peak_memory_bytes().end()),
            (std::vector<int64_t>{1000, 0, 3000, 4000}));
  view.progress->rank_peak_memory_bytes.clear();  // one rank: no list
  EXPECT_EQ(ToProtoJob(view).value().progress().rank_peak_memory_bytes_size(), 0);
}

TEST(JobSpecToJson, BenchObjectKeepsItsListsAsNumbers) {
  foak::v1::JobSpec spec;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(R"({
      "model": "/m", "bench": {"kernel_sets": ["none", "rms_norm,rope"],
      "batch_sizes": ["4", 16], "seq_lens": [2048], "steps": "5", "find_max_batch": false}})",
                                                          &spec)
                  .ok());
  Json j = Json::parse(JobSpecToJson(spec));
  EXPECT_EQ(j["bench"]["kernel_sets"], Json::array({"none", "rms_norm,rope"}));
  EXPECT_EQ(j["bench"]["batch_sizes"], Json::array({4, 16}));
  EXPECT_TRUE(j["bench"]["batch_sizes"][0].is_number_integer());
  EXPECT_EQ(j["bench"]["seq_lens"], Json::array({2048}));
  EXPECT_EQ(j["bench"]["steps"], 5);
  EXPECT_EQ(j["bench"]["find_max_batch"], false);  // set explicitly: kept
  EXPECT_FALSE(j["bench"].contains("warmup_steps"));
  EXPECT_FALSE(j.contains("dataset"));
}

TEST(ToGrpcStatus, OneToOneCodesAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const std::vector<std::pair<absl::Status, grpc::StatusCode>> cases = {
      {absl::InvalidArgumentError("spec: x"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::NotFoundError("no job"), grpc::StatusCode::NOT_FOUND},
      {absl::AlreadyExistsError("dup"), grpc::StatusCode::ALREADY_EXISTS},
      {absl::FailedPreconditionError("final"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::ResourceExhaustedError("gpus"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::UnavailableError("bye"), grpc::StatusCode::UNAVAILABLE},
      {absl::PermissionDeniedError("token"), grpc::StatusCode::PERMISSION_DENIED},
      {absl::UnauthenticatedError("none"), grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [in, code] : cases) {
    grpc::Status out = ToGrpcStatus(in);
    EXPECT_EQ(out.error_code(), code) << in;
    EXPECT_EQ(out.error_message(), std::string(in.message()));
  }
  EXPECT_STREQ(GrpcCodeName(5), "NOT_FOUND");
  EXPECT_STREQ(GrpcCodeName(99), "UNKNOWN");
}

TEST(ToProtoEvent, EachKind) {
  JobEvent state{"job-1", 1, 1500, "state",
                 R"({"state":"RUNNING","reason":"Running","message":"m","restarts":0})"};
  foak::v1::JobEvent e = ToProtoEvent(state).value();
  EXPECT_EQ(e.seq(), 1);
  EXPECT_EQ(e.state().state(), foak::v1::Job::RUNNING);
  EXPECT_EQ(e.time().seconds(), 1);
  EXPECT_EQ(e.time().nanos(), 500000000);
  e = ToProtoEvent({"job-1", 2, 0, "metrics", R"({"step":5,"loss":null,"tokens":10})"}).value();
  EXPECT_EQ(e.metrics().step(), 5);
  EXPECT_EQ(e.metrics().tokens(), 10);
  e = ToProtoEvent({"job-1", 3, 0, "checkpoint", R"({"step":5,"path":"/o/checkpoint-5"})"}).value();
  EXPECT_EQ(e.checkpoint().path(), "/o/checkpoint-5");
  e = ToProtoEvent({"job-1", 4, 0, "log", R"({"rank":1,"attempt":0,"text":"hi"})"}).value();
  EXPECT_EQ(e.log().rank(), 1);
  EXPECT_EQ(ToProtoEvent({"job-1", 5, 0, "bogus", "{}"}).status().code(),
            absl::StatusCode::kInternal);
}

// A worker's row on its way: WorkerReport.bench -> the engine's BenchResult ->
// a stored "bench" event (bench.jsonl's names) -> JobEvent.bench.
TEST(ToProtoEvent, BenchRowsRoundTrip) {
  foak::v1::BenchResult in;
  in.set_index(4);
  in.set_total(9);
  in.set_framework("foak");
  in.set_model("llama-3.2-1b");
  in.set_method("lora");
  in.set_kernels("rms_norm+rope");
  in.set_gpus(2);
  in.set_batch(24);
  in.set_seq(2048);
  in.set_precision("bf16");
  in.set_activation_checkpointing(true);
  in.set_status("ok");
  in.set_error("");
  in.set_tokens_per_second(67890.5);
  in.set_pct_change(-3.5);
  in.set_ms_per_step(724.25);
  in.set_peak_allocated_bytes(int64_t{40} << 30);
  in.set_peak_reserved_bytes(int64_t{41} << 30);
  in.set_loss_first(11.75);
  in.set_loss_last(11.5);
  in.set_warmup_steps(3);
  in.set_steps(10);
  in.set_max_batch(true);
  in.set_device("cuda:0");
  const BenchResult row = FromProtoBench(in);
  EXPECT_EQ(row.index, 4);
  EXPECT_EQ(row.kernels, "rms_norm+rope");
  EXPECT_EQ(row.batch, 24);
  ASSERT_TRUE(row.pct_change.has_value());
  EXPECT_EQ(*row.pct_change, -3.5);
  EXPECT_TRUE(row.max_batch);
  EXPECT_EQ(row.device, "cuda:0");

  // bench.jsonl's line for the row is a payload ToProtoEvent reads back whole.
  foak::v1::JobEvent e = ToProtoEvent({"job-1", 7, 0, "bench", BenchResultToJson(row)}).value();
  ASSERT_EQ(e.event_case(), foak::v1::JobEvent::kBench);
  EXPECT_EQ(e.bench().SerializeAsString(), in.SerializeAsString());

  // The baseline row: pct_change null means absent.
  BenchResult baseline = row;
  baseline.pct_change.reset();
  baseline.status = "out_of_memory";
  baseline.error = "CUDA out of memory";
  e = ToProtoEvent({"job-1", 8, 0, "bench", BenchResultToJson(baseline)}).value();
  EXPECT_FALSE(e.bench().has_pct_change());
  EXPECT_EQ(e.bench().status(), "out_of_memory");
  EXPECT_EQ(e.bench().error(), "CUDA out of memory");
  EXPECT_FALSE(FromProtoBench(e.bench()).pct_change.has_value());
}

TEST(ParseGpuList, Values) {
  EXPECT_TRUE(ParseGpuList("none").value().empty());
  EXPECT_TRUE(ParseGpuList("").value().empty());
  EXPECT_EQ(ParseGpuList("0,2").value(), (std::vector<int>{0, 2}));
  EXPECT_TRUE(ParseGpuList("auto").ok());  // whatever this host has
  EXPECT_NE(ParseGpuList("0,1,0").status().message().find("names GPU 0 twice"), std::string::npos);
  absl::Status bad = ParseGpuList("gpu0").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("auto, none or a list"), std::string::npos) << bad;
}

}  // namespace
}  // namespace foak

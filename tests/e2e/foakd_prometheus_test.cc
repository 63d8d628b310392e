// foakd's /metrics as an operator sees it: the real Prometheus from Debian
// scrapes the real foakd every second while a CPU job trains, and the test
// asserts through Prometheus's query API that the job's series are there and
// move (step, tokens, loss), that jobs by state and gRPC requests by method
// and code are counted, and that `promtool check metrics` accepts foakd's
// exposition. Skips without /usr/bin/prometheus (apt-get install prometheus).
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/foakd_process.h"
#include "tests/testing/http_get.h"
#include "tests/testing/prometheus_harness.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using ::foak::testing::PrometheusHarness;

TEST(FoakdPrometheus, RealPrometheusSeesAJobTrain) {
  if (!PrometheusHarness::Available()) GTEST_SKIP() << "no prometheus; apt-get install prometheus";
  testing::TempDir dir("foakd_prom");
  const std::string model = JoinPath(dir.path(), "model");
  testing::WorkerResult init = testing::RunWorkerCapture(
      "init-model --config " + std::string(FOAK_SOURCE_DIR) +
      "/examples/debug_model/config.json --out " + model + " --seed 1");
  ASSERT_EQ(init.exit_code, 0) << init.err;
  testing::FoakdProcess foakd(JoinPath(dir.path(), "data"));
  ASSERT_TRUE(foakd.Start());

  testing::PrometheusHarnessOptions options;
  options.targets = {"127.0.0.1:" + std::to_string(foakd.metrics_port())};
  absl::StatusOr<std::unique_ptr<PrometheusHarness>> prom = PrometheusHarness::Start(options);
  ASSERT_TRUE(prom.ok()) << prom.status();
  ASSERT_TRUE((*prom)->WaitForTargetUp(30000).ok()) << (*prom)->Log();

  // A job long enough to be scraped several times while it runs.
  Json spec = {{"name", "scraped"},
               {"model", model},
               {"dataset",
                {{"train", std::string(FOAK_SOURCE_DIR) + "/examples/data/arith_train.jsonl"},
                 {"format", "chat"}}},
               {"hyperparameters",
                {{"max_steps", 100000}, {"batch_size", 2}, {"max_seq_len", 64},
                 {"logging_steps", 5}, {"precision", "fp32"}}}};
  grpc::ClientContext ctx;
  foak::v1::CreateJobRequest req;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(spec.dump(), req.mutable_spec()).ok());
  foak::v1::Job job;
  ASSERT_TRUE(foakd.jobs().CreateJob(&ctx, req, &job).ok());
  const std::string sel = "{job_id=\"" + job.id() + "\"}";

  absl::StatusOr<double> step = (*prom)->WaitForValue("foak_job_step" + sel,
                                                      [](double v) { return v > 0; }, 60000);
  ASSERT_TRUE(step.ok()) << step.status() << "\n" << foakd.Log();
  absl::StatusOr<double> later = (*prom)->WaitForValue(
      "foak_job_step" + sel, [&](double v) { return v > *step; }, 30000);
  ASSERT_TRUE(later.ok()) << "foak_job_step does not move: " << later.status();
  absl::StatusOr<double> tokens = (*prom)->QueryValue("foak_job_tokens_total" + sel);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_GT(*tokens, 0);
  EXPECT_TRUE((*prom)->WaitForValue("foak_job_tokens_total" + sel,
                                    [&](double v) { return v > *tokens; }, 30000).ok());
  absl::StatusOr<double> loss = (*prom)->QueryValue("foak_job_loss" + sel);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_GT(*loss, 0);
  EXPECT_TRUE((*prom)->QueryValue("foak_job_tokens_per_second" + sel).value_or(0) > 0);
  // The peak memory has a series per rank; this job has rank 0 only.
  EXPECT_TRUE((*prom)->QueryValue("foak_job_peak_memory_bytes{job_id=\"" + job.id() +
                                  "\",rank=\"0\"}")
                  .value_or(0) > 0);
  EXPECT_EQ((*prom)->QueryValue("foak_jobs{state=\"RUNNING\"}").value_or(-1), 1);
  EXPECT_GE((*prom)->QueryValue(
                "foak_grpc_server_handled_total{grpc_method=\"CreateJob\",grpc_code=\"OK\"}")
                .value_or(0),
            1);
  EXPECT_GE((*prom)->QueryValue("foak_job_queue_wait_seconds_count").value_or(0), 1);
  EXPECT_EQ((*prom)->QueryValue("foak_build_info").value_or(0), 1);

  // The exposition itself passes promtool's checks and lint.
  absl::StatusOr<testing::HttpResponse> scrape = testing::HttpGet("127.0.0.1", foakd.metrics_port(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  const std::string input = JoinPath(dir.path(), "scrape.txt");
  ASSERT_TRUE(WriteFileAtomically(input, scrape->body).ok());
  FILE* pipe = popen(("promtool check metrics < " + input + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_EQ(output, "") << scrape->body;

  grpc::ClientContext cctx;
  foak::v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  foak::v1::Job after;
  ASSERT_TRUE(foakd.jobs().CancelJob(&cctx, cancel, &after).ok());
  EXPECT_TRUE((*prom)->WaitForValue("foak_jobs{state=\"CANCELLED\"}", [](double v) { return v == 1; },
                                    30000).ok());
}

}  // namespace
}  // namespace foak

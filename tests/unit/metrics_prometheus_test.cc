// The whole metrics path against a real Prometheus: ServerMetrics behind a
// MetricsHttpServer, scraped every second by /usr/bin/prometheus (Debian
// package `prometheus`; the test skips without it), and asserted through
// Prometheus's query API -- the way an operator's dashboard would see foakd.
// Takes ~5-10 s: Prometheus start-up plus a few scrape intervals.
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/server_metrics.h"
#include "common/file_util.h"
#include "tests/testing/prometheus_harness.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using ::foak::testing::PrometheusHarness;
using ::foak::testing::PrometheusHarnessOptions;
using ::foak::testing::PrometheusSample;

constexpr int kTimeoutMs = 15000;

JobProgressSample Step(int64_t step) {
  JobProgressSample s;
  s.step = step;
  s.max_steps = 100;
  s.loss = 3.0 - 0.1 * static_cast<double>(step);
  s.learning_rate = 1e-4;
  s.tokens_per_second = 2048;
  s.peak_memory_bytes = 123456789;
  s.tokens = 4096;
  return s;
}

TEST(MetricsPrometheus, RealPrometheusScrapesFoakMetrics) {
  if (!PrometheusHarness::Available()) {
    GTEST_SKIP() << "no " << ::foak::testing::kDefaultPrometheusBinary
                 << "; on Debian: apt-get install prometheus";
  }
  ServerMetrics metrics;
  metrics.SetJobsByState({{"RUNNING", 1}});
  metrics.OnJobProgress("job-a", Step(1));
  MetricsHttpServerOptions http_options;
  http_options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
      MetricsHttpServer::Create(http_options, [&metrics] { return metrics.Render(); });
  ASSERT_TRUE(http.ok()) << http.status();

  PrometheusHarnessOptions options;
  options.targets = {"127.0.0.1:" + std::to_string((*http)->port())};
  absl::StatusOr<std::unique_ptr<PrometheusHarness>> started = PrometheusHarness::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  PrometheusHarness& prometheus = **started;
  ASSERT_TRUE(prometheus.WaitForTargetUp(kTimeoutMs).ok()) << prometheus.Log();

  absl::StatusOr<double> up = prometheus.WaitForValue("up{job=\"foak\"}", [](double v) { return v == 1; },
                                                      kTimeoutMs);
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(*up, 1);

  const std::string step_query = "foak_job_step{job_id=\"job-a\"}";
  absl::StatusOr<double> step1 = prometheus.WaitForValue(step_query, [](double v) { return v == 1; }, kTimeoutMs);
  ASSERT_TRUE(step1.ok()) << step1.status();
  const std::string tokens_query = "foak_job_tokens_total{job_id=\"job-a\"}";
  absl::StatusOr<double> tokens1 =
      prometheus.WaitForValue(tokens_query, [](double v) { return v >= 4096; }, kTimeoutMs);
  ASSERT_TRUE(tokens1.ok()) << tokens1.status();

  // Training moves on: the next scrapes carry the new step and more tokens.
  metrics.OnJobProgress("job-a", Step(2));
  metrics.OnJobProgress("job-a", Step(3));
  absl::StatusOr<double> step3 =
      prometheus.WaitForValue(step_query, [&](double v) { return v != *step1; }, kTimeoutMs);
  ASSERT_TRUE(step3.ok()) << step3.status();
  EXPECT_EQ(*step3, 3);
  absl::StatusOr<double> tokens3 =
      prometheus.WaitForValue(tokens_query, [&](double v) { return v > *tokens1; }, kTimeoutMs);
  ASSERT_TRUE(tokens3.ok()) << tokens3.status();
  EXPECT_EQ(*tokens3, 3 * 4096);

  absl::StatusOr<double> running = prometheus.QueryValue("foak_jobs{state=\"RUNNING\"}");
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(*running, 1);
  // All seven states are series of their own.
  absl::StatusOr<std::vector<PrometheusSample>> states = prometheus.QueryVector("foak_jobs");
  ASSERT_TRUE(states.ok()) << states.status();
  EXPECT_EQ(states->size(), 7u);

  // The loss gauge and the peak memory arrive as written (floats, big ints).
  absl::StatusOr<double> memory =
      prometheus.QueryValue("foak_job_peak_memory_bytes{job_id=\"job-a\",rank=\"0\"}");
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ(*memory, 123456789);
  // The raw JSON answer is there for richer checks.
  absl::StatusOr<nlohmann::json> raw = prometheus.Query("rate(foak_job_tokens_total[1m])");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ((*raw)["status"], "success");
}

}  // namespace
}  // namespace foak

namespace foak {
namespace {

// --metrics_bearer_token_file as Prometheus meets it: with the token in its
// scrape config's authorization.credentials_file the target is up and the
// series arrive; with another token the scrape fails with 401.
TEST(MetricsPrometheus, RealPrometheusScrapesWithTheBearerTokenOnly) {
  if (!PrometheusHarness::Available()) {
    GTEST_SKIP() << "no " << ::foak::testing::kDefaultPrometheusBinary
                 << "; on Debian: apt-get install prometheus";
  }
  ::foak::testing::TempDir dir("metrics_token_prometheus");
  const std::string good = JoinPath(dir.path(), "good"), bad = JoinPath(dir.path(), "bad");
  ASSERT_TRUE(WriteFileAtomically(good, "s3cret-metrics-token-0123\n").ok());
  ASSERT_TRUE(WriteFileAtomically(bad, "another-token-0123456789\n").ok());
  ServerMetrics metrics;
  metrics.OnJobProgress("job-t", Step(7));
  MetricsHttpServerOptions http_options;
  http_options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::string> token = ReadBearerTokenFile(good);
  ASSERT_TRUE(token.ok()) << token.status();
  http_options.bearer_token = *token;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
      MetricsHttpServer::Create(http_options, [&metrics] { return metrics.Render(); });
  ASSERT_TRUE(http.ok()) << http.status();

  PrometheusHarnessOptions options;
  options.targets = {"127.0.0.1:" + std::to_string((*http)->port())};
  options.credentials_file = good;
  absl::StatusOr<std::unique_ptr<PrometheusHarness>> started = PrometheusHarness::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_TRUE((*started)->WaitForTargetUp(kTimeoutMs).ok()) << (*started)->Log();
  absl::StatusOr<double> step = (*started)->WaitForValue(
      "foak_job_step{job_id=\"job-t\"}", [](double v) { return v == 7; }, kTimeoutMs);
  ASSERT_TRUE(step.ok()) << step.status();
  started->reset();

  options.credentials_file = bad;
  absl::StatusOr<std::unique_ptr<PrometheusHarness>> refused = PrometheusHarness::Start(options);
  ASSERT_TRUE(refused.ok()) << refused.status();
  // A failed scrape records up = 0, and the target's lastError says why.
  absl::StatusOr<double> down = (*refused)->WaitForValue(
      "up{job=\"foak\"}", [](double v) { return v == 0; }, kTimeoutMs);
  ASSERT_TRUE(down.ok()) << down.status() << (*refused)->Log();
  absl::StatusOr<nlohmann::json> targets = (*refused)->Get("/api/v1/targets");
  ASSERT_TRUE(targets.ok()) << targets.status();
  const std::string text = targets->dump();
  EXPECT_NE(text.find("401"), std::string::npos) << text;
  absl::StatusOr<std::vector<PrometheusSample>> series =
      (*refused)->QueryVector("foak_job_step{job_id=\"job-t\"}");
  ASSERT_TRUE(series.ok()) << series.status();
  EXPECT_TRUE(series->empty());
}

}  // namespace
}  // namespace foak

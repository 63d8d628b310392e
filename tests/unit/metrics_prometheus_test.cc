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
#include "tests/testing/prometheus_harness.h"

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

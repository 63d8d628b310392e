// The Prometheus text format 0.0.4 as foakd writes it: exact text for
// counters, gauges and histograms (escaping, number spelling, cumulative
// buckets), the registry's refusals, ServerMetrics's families and the expiry
// of finished jobs, and finally the real `promtool check metrics` on a fully
// populated scrape (skipped when promtool is not installed; Debian package
// `prometheus`).
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "server/metrics/exposition_text.h"
#include "server/metrics/metric_family.h"
#include "server/metrics/metric_registry.h"
#include "server/metrics/server_metrics.h"

namespace foak {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool HasLine(const std::string& text, const std::string& line) {
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (l == line) return true;
  }
  return false;
}

bool Mentions(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST(ExpositionText, FormatsNumbers) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(-0.0), "0");
  EXPECT_EQ(FormatMetricValue(1), "1");
  EXPECT_EQ(FormatMetricValue(-3), "-3");
  EXPECT_EQ(FormatMetricValue(1234567), "1234567");
  EXPECT_EQ(FormatMetricValue(1e15), "1000000000000000");
  EXPECT_EQ(FormatMetricValue(9007199254740992.0), "9007199254740992");
  EXPECT_EQ(FormatMetricValue(1e20), "1e+20");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(2.5), "2.5");
  EXPECT_EQ(FormatMetricValue(0.005), "0.005");
  EXPECT_EQ(FormatMetricValue(1e-7), "1e-07");
  EXPECT_EQ(FormatMetricValue(1700000000.123), "1700000000.123");
  EXPECT_EQ(FormatMetricValue(kInf), "+Inf");
  EXPECT_EQ(FormatMetricValue(-kInf), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
  // Whatever the spelling, it reads back to the same double.
  for (double v : {0.1, 1.0 / 3, 2.0 / 3 * 1e-300, 6.02214076e23, -123.456}) {
    EXPECT_EQ(std::strtod(FormatMetricValue(v).c_str(), nullptr), v) << FormatMetricValue(v);
  }
}

TEST(ExpositionText, Escapes) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeHelp("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
}

TEST(ExpositionText, ValidatesNames) {
  EXPECT_TRUE(IsValidMetricName("foak_job_step"));
  EXPECT_TRUE(IsValidMetricName("ns:rule_name"));
  EXPECT_TRUE(IsValidMetricName("_x9"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("9lives"));
  EXPECT_FALSE(IsValidMetricName("has-dash"));
  EXPECT_TRUE(IsValidLabelName("job_id"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("0a"));
}

TEST(MetricRegistry, RendersCountersAndGaugesExactly) {
  MetricRegistry registry;
  MetricFamily* requests = registry
                               .AddCounter("test_requests_total",
                                           "Requests handled.\nSecond line, with \\ backslash.",
                                           {"path", "code"})
                               .value();
  MetricFamily* temperature = registry.AddGauge("test_temperature_celsius", "Temperature \"now\".").value();
  ASSERT_TRUE(requests->Inc({"/a\"b", "200"}, 2).ok());
  ASSERT_TRUE(requests->Inc({"/a\"b", "200"}).ok());
  ASSERT_TRUE(requests->Inc({"c:\\dir\nx", "500"}, 0.5).ok());
  ASSERT_TRUE(temperature->Set({}, -1.5).ok());
  EXPECT_EQ(registry.Render(),
            "# HELP test_requests_total Requests handled.\\nSecond line, with \\\\ backslash.\n"
            "# TYPE test_requests_total counter\n"
            "test_requests_total{path=\"/a\\\"b\",code=\"200\"} 3\n"
            "test_requests_total{path=\"c:\\\\dir\\nx\",code=\"500\"} 0.5\n"
            "# HELP test_temperature_celsius Temperature \"now\".\n"
            "# TYPE test_temperature_celsius gauge\n"
            "test_temperature_celsius -1.5\n");
}

TEST(MetricRegistry, SortsFamiliesByNameAndLabelFreeFamiliesStartAtZero) {
  MetricRegistry registry;
  ASSERT_TRUE(registry.AddGauge("zz_gauge", "Last.").ok());
  ASSERT_TRUE(registry.AddCounter("aa_events_total", "First.").ok());
  ASSERT_TRUE(registry.AddGauge("mm_with_labels", "No children yet.", {"k"}).ok());
  EXPECT_EQ(registry.Render(),
            "# HELP aa_events_total First.\n"
            "# TYPE aa_events_total counter\n"
            "aa_events_total 0\n"
            "# HELP zz_gauge Last.\n"
            "# TYPE zz_gauge gauge\n"
            "zz_gauge 0\n");
}

TEST(MetricRegistry, RendersHistogramsCumulatively) {
  MetricRegistry registry;
  MetricFamily* latency =
      registry.AddHistogram("test_latency_seconds", "Latency.", {"method"}, {0.125, 0.5, 1}).value();
  for (double v : {0.0625, 0.125, 0.25, 2.0}) ASSERT_TRUE(latency->Observe({"GET"}, v).ok());
  EXPECT_EQ(registry.Render(),
            "# HELP test_latency_seconds Latency.\n"
            "# TYPE test_latency_seconds histogram\n"
            "test_latency_seconds_bucket{method=\"GET\",le=\"0.125\"} 2\n"
            "test_latency_seconds_bucket{method=\"GET\",le=\"0.5\"} 3\n"
            "test_latency_seconds_bucket{method=\"GET\",le=\"1\"} 3\n"
            "test_latency_seconds_bucket{method=\"GET\",le=\"+Inf\"} 4\n"
            "test_latency_seconds_sum{method=\"GET\"} 2.4375\n"
            "test_latency_seconds_count{method=\"GET\"} 4\n");
}

TEST(MetricRegistry, HistogramWithoutLabelsAndNaN) {
  MetricRegistry registry;
  // A trailing +Inf bound is accepted and not doubled.
  MetricFamily* h = registry.AddHistogram("test_size_bytes", "Sizes.", {}, {10, kInf}).value();
  EXPECT_EQ(registry.Render(),
            "# HELP test_size_bytes Sizes.\n"
            "# TYPE test_size_bytes histogram\n"
            "test_size_bytes_bucket{le=\"10\"} 0\n"
            "test_size_bytes_bucket{le=\"+Inf\"} 0\n"
            "test_size_bytes_sum 0\n"
            "test_size_bytes_count 0\n");
  ASSERT_TRUE(h->Observe({}, std::nan("")).ok());
  EXPECT_EQ(registry.Render(),
            "# HELP test_size_bytes Sizes.\n"
            "# TYPE test_size_bytes histogram\n"
            "test_size_bytes_bucket{le=\"10\"} 0\n"
            "test_size_bytes_bucket{le=\"+Inf\"} 1\n"
            "test_size_bytes_sum NaN\n"
            "test_size_bytes_count 1\n");
}

TEST(MetricFamily, RemoveDropsOneChild) {
  MetricRegistry registry;
  MetricFamily* g = registry.AddGauge("test_value", "Values.", {"id"}).value();
  ASSERT_TRUE(g->Set({"a"}, 1).ok());
  ASSERT_TRUE(g->Set({"b"}, 2).ok());
  EXPECT_TRUE(g->Remove({"a"}));
  EXPECT_FALSE(g->Remove({"a"}));
  EXPECT_FALSE(g->Remove({"a", "extra"}));
  EXPECT_EQ(g->num_children(), 1u);
  EXPECT_EQ(registry.Render(),
            "# HELP test_value Values.\n"
            "# TYPE test_value gauge\n"
            "test_value{id=\"b\"} 2\n");
  g->Clear();
  EXPECT_EQ(registry.Render(), "");  // no children: no HELP/TYPE either

  MetricFamily* plain = registry.AddCounter("test_plain_total", "Plain.").value();
  ASSERT_TRUE(plain->Inc({}, 5).ok());
  EXPECT_TRUE(plain->Remove({}));  // resets the one child
  EXPECT_TRUE(HasLine(registry.Render(), "test_plain_total 0"));
}

TEST(MetricFamily, RemoveWithPrefixDropsEveryChildStartingSo) {
  MetricRegistry registry;
  MetricFamily* g = registry.AddGauge("test_value", "Values.", {"id", "rank"}).value();
  for (const char* id : {"a", "ab", "b"}) {
    for (const char* rank : {"0", "1", "10"}) ASSERT_TRUE(g->Set({id, rank}, 1).ok());
  }
  EXPECT_EQ(g->RemoveWithPrefix({"a"}), 3u);  // not "ab", whose first value only starts with "a"
  EXPECT_EQ(g->RemoveWithPrefix({"a"}), 0u);
  EXPECT_EQ(g->RemoveWithPrefix({"b", "1"}), 1u);
  EXPECT_EQ(g->RemoveWithPrefix({"b", "1", "extra"}), 0u) << "more values than labels";
  EXPECT_EQ(registry.Render(),
            "# HELP test_value Values.\n"
            "# TYPE test_value gauge\n"
            "test_value{id=\"ab\",rank=\"0\"} 1\n"
            "test_value{id=\"ab\",rank=\"1\"} 1\n"
            "test_value{id=\"ab\",rank=\"10\"} 1\n"
            "test_value{id=\"b\",rank=\"0\"} 1\n"
            "test_value{id=\"b\",rank=\"10\"} 1\n");
  EXPECT_EQ(g->RemoveWithPrefix({}), 5u);  // every child
  EXPECT_EQ(g->num_children(), 0u);

  MetricFamily* plain = registry.AddCounter("test_plain_total", "Plain.").value();
  ASSERT_TRUE(plain->Inc({}, 5).ok());
  EXPECT_EQ(plain->RemoveWithPrefix({}), 1u);  // resets the one child
  EXPECT_TRUE(HasLine(registry.Render(), "test_plain_total 0"));
}

TEST(MetricFamily, RefusesMisuse) {
  MetricRegistry registry;
  MetricFamily* c = registry.AddCounter("test_c_total", "C.", {"k"}).value();
  MetricFamily* g = registry.AddGauge("test_g", "G.", {"k"}).value();
  MetricFamily* h = registry.AddHistogram("test_h", "H.", {}, {1}).value();
  EXPECT_EQ(c->Set({"x"}, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->Inc({"x"}, -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Inc({"x"}, std::nan("")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Inc({}, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(std::string(c->Inc({"x", "y"}).message()), "takes 1 label values (k), got 2"));
  EXPECT_TRUE(g->Inc({"x"}, -2).ok());  // gauges go both ways
  EXPECT_EQ(g->Observe({"x"}, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(h->Inc({}, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(h->Set({}, 1).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(MetricRegistry, RefusesBadOrClashingFamilies) {
  MetricRegistry registry;
  ASSERT_TRUE(registry.AddHistogram("test_h", "H.", {}, {1, 2}).ok());
  EXPECT_EQ(registry.AddGauge("test_h", "Again.").status().code(), absl::StatusCode::kAlreadyExists);
  // test_h writes test_h_count: a counter of that name would corrupt it.
  absl::Status clash = registry.AddCounter("test_h_count", "Clash.").status();
  EXPECT_EQ(clash.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Mentions(std::string(clash.message()), "test_h")) << clash;
  EXPECT_EQ(registry.AddGauge("bad-name", "X.").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddGauge("test_nohelp", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddGauge("test_l", "X.", {"__x"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddGauge("test_l", "X.", {"a", "a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddHistogram("test_le", "X.", {"le"}, {1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddHistogram("test_down", "X.", {}, {2, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddHistogram("test_nan", "X.", {}, {std::nan("")}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricFamily, ConcurrentIncrementsAreExact) {
  MetricRegistry registry;
  MetricFamily* c = registry.AddCounter("test_hits_total", "Hits.", {"t"}).value();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([c, t] {
      for (int i = 0; i < 5000; ++i) {
        EXPECT_TRUE(c->Inc({"shared"}).ok());
        EXPECT_TRUE(c->Inc({"own" + std::to_string(t)}).ok());
      }
    });
  }
  std::thread reader([&registry] {
    for (int i = 0; i < 200; ++i) registry.Render();
  });
  for (std::thread& t : threads) t.join();
  reader.join();
  const std::string text = registry.Render();
  EXPECT_TRUE(HasLine(text, "test_hits_total{t=\"shared\"} 20000")) << text;
  EXPECT_TRUE(HasLine(text, "test_hits_total{t=\"own3\"} 5000")) << text;
}

// A clock the test moves by hand.
struct FakeClock {
  int64_t now_ms = 1700000000123;
};

ServerMetricsOptions OptionsWithClock(FakeClock* clock, int64_t retention_ms = 60000) {
  ServerMetricsOptions options;
  options.finished_job_retention_ms = retention_ms;
  options.now_ms = [clock] { return clock->now_ms; };
  return options;
}

JobProgressSample Sample(int64_t step, int64_t tokens) {
  JobProgressSample s;
  s.step = step;
  s.max_steps = 100;
  s.loss = 2.5;
  s.learning_rate = 0.001;
  s.grad_norm = 1.25;
  s.tokens_per_second = 1000.5;
  s.peak_memory_bytes = int64_t{1} << 30;
  s.tokens = tokens;
  return s;
}

TEST(ServerMetrics, ProgressUpdatesJobSeries) {
  FakeClock clock;
  ServerMetrics metrics(OptionsWithClock(&clock));
  metrics.OnJobProgress("job-1", Sample(5, 512));
  std::string text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "foak_job_step{job_id=\"job-1\"} 5")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_max_steps{job_id=\"job-1\"} 100")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_loss{job_id=\"job-1\"} 2.5")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_learning_rate{job_id=\"job-1\"} 0.001")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_grad_norm{job_id=\"job-1\"} 1.25")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_tokens_per_second{job_id=\"job-1\"} 1000.5")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_peak_memory_bytes{job_id=\"job-1\",rank=\"0\"} 1073741824"))
      << text;
  EXPECT_TRUE(HasLine(text, "foak_job_tokens_total{job_id=\"job-1\"} 512")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_last_progress_timestamp_seconds{job_id=\"job-1\"} 1700000000.123"))
      << text;

  clock.now_ms += 2000;
  JobProgressSample next = Sample(6, 256);
  next.max_steps = 0;  // unknown: keeps 100
  next.loss = 2.25;
  metrics.OnJobProgress("job-1", next);
  text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "foak_job_step{job_id=\"job-1\"} 6")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_max_steps{job_id=\"job-1\"} 100")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_loss{job_id=\"job-1\"} 2.25")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_tokens_total{job_id=\"job-1\"} 768")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_last_progress_timestamp_seconds{job_id=\"job-1\"} 1700000002.123"))
      << text;
  metrics.OnJobProgress("job-1", Sample(7, -5));  // a negative delta never lowers the counter
  EXPECT_TRUE(HasLine(metrics.Render(), "foak_job_tokens_total{job_id=\"job-1\"} 768"));
}

// foak_job_step_seconds is set only by a sample that knows it, and expires
// with the job's other series.
TEST(ServerMetrics, StepSecondsKeepsTheLastKnownValue) {
  FakeClock clock;
  ServerMetrics metrics(OptionsWithClock(&clock, /*retention_ms=*/1000));
  metrics.OnJobProgress("job-1", Sample(5, 512));  // step_seconds 0: unknown
  std::string text = metrics.Render();
  EXPECT_FALSE(Mentions(text, "foak_job_step_seconds")) << text;
  JobProgressSample timed = Sample(10, 512);
  timed.step_seconds = 0.25;
  metrics.OnJobProgress("job-1", timed);
  EXPECT_TRUE(HasLine(metrics.Render(), "foak_job_step_seconds{job_id=\"job-1\"} 0.25"));
  for (double unknown : {0.0, -1.0, std::nan("")}) {
    JobProgressSample s = Sample(11, 512);
    s.step_seconds = unknown;
    metrics.OnJobProgress("job-1", s);
    text = metrics.Render();
    EXPECT_TRUE(HasLine(text, "foak_job_step_seconds{job_id=\"job-1\"} 0.25")) << unknown << "\n" << text;
  }
  metrics.OnJobFinished("job-1", "SUCCEEDED");
  clock.now_ms += 1000;
  EXPECT_FALSE(Mentions(metrics.Render(), "foak_job_step_seconds{"));
}

// foak_jobs_finished_total{state}: the three final states from the start (at
// 0, so that increase() sees the first job of each), one count per job.
TEST(ServerMetrics, FinishedJobsAreCountedByFinalState) {
  FakeClock clock;
  ServerMetrics metrics(OptionsWithClock(&clock, /*retention_ms=*/1000));
  std::string text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "# TYPE foak_jobs_finished_total counter")) << text;
  for (const char* state : {"SUCCEEDED", "FAILED", "CANCELLED"}) {
    EXPECT_TRUE(HasLine(text, std::string("foak_jobs_finished_total{state=\"") + state + "\"} 0"))
        << state << "\n" << text;
  }
  metrics.OnJobFinished("a", "FAILED");
  metrics.OnJobFinished("b", "FAILED");
  metrics.OnJobFinished("b", "FAILED");  // the same job again: not a second failure
  metrics.OnJobFinished("c", "SUCCEEDED");
  metrics.OnJobFinished("d", "RUNNING");  // not a final state: counted nowhere
  text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "foak_jobs_finished_total{state=\"FAILED\"} 2")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs_finished_total{state=\"SUCCEEDED\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs_finished_total{state=\"CANCELLED\"} 0")) << text;
  EXPECT_FALSE(Mentions(text, "foak_jobs_finished_total{state=\"RUNNING\"}")) << text;
  // The counter outlives the jobs' series.
  clock.now_ms += 1000;
  text = metrics.Render();
  EXPECT_FALSE(Mentions(text, "job_id=\"a\"")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs_finished_total{state=\"FAILED\"} 2")) << text;
}

TEST(ServerMetrics, FinishedJobSeriesExpireAfterRetention) {
  FakeClock clock;
  ServerMetrics metrics(OptionsWithClock(&clock, /*retention_ms=*/60000));
  metrics.OnJobProgress("done", Sample(10, 100));
  metrics.OnJobProgress("still-running", Sample(3, 100));
  metrics.OnJobFinished("done", "SUCCEEDED");
  // The last-progress timestamp goes at once (it marks active jobs), and a
  // late report does not bring it back.
  metrics.OnJobProgress("done", Sample(10, 0));
  std::string text = metrics.Render();
  EXPECT_FALSE(Mentions(text, "foak_job_last_progress_timestamp_seconds{job_id=\"done\"}")) << text;
  EXPECT_TRUE(Mentions(text, "foak_job_last_progress_timestamp_seconds{job_id=\"still-running\"}")) << text;
  clock.now_ms += 59999;
  metrics.OnJobFinished("done", "SUCCEEDED");  // a second call does not restart the retention
  text = metrics.Render();
  EXPECT_TRUE(Mentions(text, "job_id=\"done\"")) << text;
  clock.now_ms += 1;
  text = metrics.Render();
  EXPECT_FALSE(Mentions(text, "job_id=\"done\"")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_step{job_id=\"still-running\"} 3")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_tokens_total{job_id=\"still-running\"} 100")) << text;
}

// A data-parallel job: one peak-memory series per rank; the job's other
// series stay rank 0's, and all of them expire together.
TEST(ServerMetrics, PeakMemoryHasASeriesPerRank) {
  FakeClock clock;
  ServerMetrics metrics(OptionsWithClock(&clock, /*retention_ms=*/1000));
  metrics.OnJobProgress("job-1", Sample(5, 512));
  metrics.OnRankPeakMemory("job-1", 1, 2048);
  metrics.OnRankPeakMemory("job-1", 2, 4096);
  metrics.OnJobProgress("job-10", Sample(3, 64));  // an id that job-1 is a prefix of
  std::string text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "foak_job_peak_memory_bytes{job_id=\"job-1\",rank=\"0\"} 1073741824"))
      << text;
  EXPECT_TRUE(HasLine(text, "foak_job_peak_memory_bytes{job_id=\"job-1\",rank=\"1\"} 2048")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_peak_memory_bytes{job_id=\"job-1\",rank=\"2\"} 4096")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_step{job_id=\"job-1\"} 5")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_tokens_total{job_id=\"job-1\"} 512")) << text;
  // A newer value of a rank replaces its own series only.
  metrics.OnRankPeakMemory("job-1", 1, 3072);
  text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "foak_job_peak_memory_bytes{job_id=\"job-1\",rank=\"1\"} 3072")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_peak_memory_bytes{job_id=\"job-1\",rank=\"2\"} 4096")) << text;

  metrics.OnJobFinished("job-1", "CANCELLED");
  clock.now_ms += 1000;
  text = metrics.Render();
  EXPECT_FALSE(Mentions(text, "job_id=\"job-1\"")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_peak_memory_bytes{job_id=\"job-10\",rank=\"0\"} 1073741824"))
      << text;
  EXPECT_TRUE(HasLine(text, "foak_job_step{job_id=\"job-10\"} 3")) << text;
}

TEST(ServerMetrics, JobsByStateAlwaysHasAllSevenStates) {
  ServerMetrics metrics;
  const std::vector<std::string> states = {"QUEUED",    "STARTING",   "RUNNING",  "SUCCEEDED",
                                           "FAILED",    "CANCELLING", "CANCELLED"};
  EXPECT_EQ(ServerMetrics::JobStateNames(), states);
  std::string text = metrics.Render();
  for (const std::string& s : states) {
    EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"" + s + "\"} 0")) << s << "\n" << text;
  }
  metrics.SetJobsByState({{"RUNNING", 2}, {"QUEUED", 1}});
  metrics.SetJobsByState({{"RUNNING", 3}});  // QUEUED absent now: back to 0
  text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"RUNNING\"} 3")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"QUEUED\"} 0")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"CANCELLED\"} 0")) << text;
}

// The counts come from the source at each scrape (issue 9: counting on every
// state change scanned the job table per new job); nullopt keeps the last.
TEST(ServerMetrics, JobsByStateSourceIsReadAtEachRender) {
  ServerMetrics metrics;
  int calls = 0;
  std::optional<std::vector<std::pair<std::string, int64_t>>> next =
      std::vector<std::pair<std::string, int64_t>>{{"QUEUED", 12000}, {"STARTING", 1}};
  metrics.SetJobsByStateSource([&] {
    ++calls;
    return next;
  });
  EXPECT_EQ(calls, 0);
  std::string text = metrics.Render();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"QUEUED\"} 12000")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"STARTING\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"RUNNING\"} 0")) << text;
  next = std::nullopt;  // the store failed: the last counts stay
  text = metrics.Render();
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"QUEUED\"} 12000")) << text;
  metrics.SetJobsByStateSource(nullptr);
  metrics.SetJobsByState({{"RUNNING", 1}});
  text = metrics.Render();
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"RUNNING\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "foak_jobs{state=\"QUEUED\"} 0")) << text;
}

TEST(ServerMetrics, GrpcCounterSplitsTheMethod) {
  ServerMetrics metrics;
  metrics.OnGrpcRequest("/foak.v1.JobService/CreateJob", "OK");
  metrics.OnGrpcRequest("/foak.v1.JobService/CreateJob", "OK");
  metrics.OnGrpcRequest("/foak.v1.JobService/GetJob", "NOT_FOUND");
  metrics.OnGrpcRequest("not-a-method", "UNIMPLEMENTED");
  const std::string text = metrics.Render();
  EXPECT_TRUE(HasLine(text,
                      "foak_grpc_server_handled_total{grpc_service=\"foak.v1.JobService\","
                      "grpc_method=\"CreateJob\",grpc_code=\"OK\"} 2"))
      << text;
  EXPECT_TRUE(HasLine(text,
                      "foak_grpc_server_handled_total{grpc_service=\"foak.v1.JobService\","
                      "grpc_method=\"GetJob\",grpc_code=\"NOT_FOUND\"} 1"))
      << text;
  EXPECT_TRUE(HasLine(text,
                      "foak_grpc_server_handled_total{grpc_service=\"unknown\","
                      "grpc_method=\"unknown\",grpc_code=\"UNIMPLEMENTED\"} 1"))
      << text;
}

TEST(ServerMetrics, QueueWaitHistogramAndBuildInfo) {
  ServerMetrics metrics;
  metrics.ObserveQueueWait(3);
  metrics.ObserveQueueWait(0.25);
  metrics.SetBuildInfo("0.0.9");
  metrics.SetBuildInfo("0.1.0");
  const std::string text = metrics.Render();
  EXPECT_TRUE(HasLine(text, "foak_job_queue_wait_seconds_bucket{le=\"1\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_queue_wait_seconds_bucket{le=\"2\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_queue_wait_seconds_bucket{le=\"4\"} 2")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_queue_wait_seconds_bucket{le=\"4096\"} 2")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_queue_wait_seconds_bucket{le=\"+Inf\"} 2")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_queue_wait_seconds_sum 3.25")) << text;
  EXPECT_TRUE(HasLine(text, "foak_job_queue_wait_seconds_count 2")) << text;
  EXPECT_TRUE(HasLine(text, "foak_build_info{version=\"0.1.0\"} 1")) << text;
  EXPECT_FALSE(Mentions(text, "0.0.9")) << text;
}

TEST(ServerMetrics, CustomQueueBucketsAreCleanedUp) {
  ServerMetricsOptions options;
  options.queue_wait_buckets_s = {30, 10, 10, kInf};
  ServerMetrics metrics(options);
  const std::string text = metrics.Render();
  EXPECT_TRUE(Mentions(text,
                       "foak_job_queue_wait_seconds_bucket{le=\"10\"} 0\n"
                       "foak_job_queue_wait_seconds_bucket{le=\"30\"} 0\n"
                       "foak_job_queue_wait_seconds_bucket{le=\"+Inf\"} 0\n"))
      << text;
}

// A scrape with every family populated, including a label that needs escaping.
std::string PopulatedScrape() {
  ServerMetrics metrics;
  metrics.SetBuildInfo("0.1.0");
  metrics.OnJobProgress("job-\"quoted\"\\1\n", Sample(5, 512));
  JobProgressSample timed = Sample(7, 64);
  timed.step_seconds = 0.5;
  metrics.OnJobProgress("job-2", timed);
  metrics.OnRankPeakMemory("job-2", 1, 4096);
  metrics.SetJobsByState({{"RUNNING", 2}});
  metrics.ObserveQueueWait(12.5);
  metrics.OnGrpcRequest("/foak.v1.JobService/CreateJob", "OK");
  metrics.OnGrpcRequest("/foak.v1.FileService/Upload", "INVALID_ARGUMENT");
  return metrics.Render();
}

TEST(ServerMetrics, EachFamilyHasOneHelpAndOneType) {
  const std::string text = PopulatedScrape();
  std::set<std::string> help, type;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> words = absl::StrSplit(line, ' ');
    if (line.substr(0, 7) == "# HELP ") {
      EXPECT_TRUE(help.insert(words[2]).second) << line;
    }
    if (line.substr(0, 7) == "# TYPE ") {
      EXPECT_TRUE(type.insert(words[2]).second) << line;
    }
  }
  EXPECT_EQ(help, type);
  EXPECT_EQ(help.size(), 15u) << text;
  EXPECT_EQ(text.back(), '\n');
}

// The real linter from the Prometheus project, if installed.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (const std::string& dir : std::vector<std::string>(absl::StrSplit(path, ':', absl::SkipEmpty()))) {
    const std::string candidate = JoinPath(dir, name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

TEST(ServerMetrics, PromtoolAcceptsTheScrape) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) {
    GTEST_SKIP() << "promtool is not on PATH; on Debian: apt-get install prometheus";
  }
  char dir_template[] = "/tmp/foak-promtool-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string scrape = PopulatedScrape();
  const std::string input = JoinPath(dir, "metrics.txt");
  ASSERT_TRUE(WriteFileAtomically(input, scrape).ok());
  // promtool 2.42 prints lint problems on stderr, newer ones on stdout: take both.
  const std::string command = promtool + " check metrics < " + input + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  RemoveTree(dir).IgnoreError();
  ASSERT_TRUE(WIFEXITED(status)) << command;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool says:\n" << output << "\non:\n" << scrape;
  EXPECT_EQ(output, "") << "on:\n" << scrape;
}

}  // namespace
}  // namespace foak

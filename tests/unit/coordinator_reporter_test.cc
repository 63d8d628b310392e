// CoordinatorReporter (worker/report/) against an in-process fake
// WorkerService on 127.0.0.1: what a report carries (token metadata, job id,
// attempt, rank, max_steps filled in from OnStart), their order, that a foakd
// restart loses nothing that was queued while it was away, that a full queue
// drops step metrics and never WorkerStarted, checkpoints or benchmark rows,
// that a benchmark row arrives field for field, that a refused
// token stops the retries at once, and that Close is bounded by its timeout
// when nothing listens and says why (logged once).
#include "worker/report/coordinator_reporter.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "common/file_util.h"
#include "foak/v1/worker_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_worker_service.h"

namespace foak {
namespace {

using ReportCase = v1::WorkerReport::ReportCase;

using testing::FakeFoakd;
using testing::FakeWorkerService;

CoordinatorReporter::Options TestOptions(const std::string& address) {
  CoordinatorReporter::Options options;
  options.address = address;
  options.job_id = "job-00112233aabbccdd";
  options.token = "s3cret";
  options.attempt = 2;
  options.rank = 1;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.log = nullptr;
  return options;
}

StepMetrics Step(int64_t step, double loss) {
  StepMetrics m;
  m.step = step;
  m.loss = loss;
  m.learning_rate = 1e-3;
  m.grad_norm = 0.5;
  m.tokens = 100 * step;
  m.tokens_per_second = 1000;
  m.peak_memory_bytes = 1 << 20;
  m.peak_reserved_bytes = 3 << 20;
  m.elapsed_s = 0.1 * static_cast<double>(step);
  return m;
}

// A benchmark row with every field set to a value of its own.
BenchResult Row(int32_t index, std::optional<double> pct_change) {
  BenchResult r;
  r.index = index;
  r.total = 6;
  r.framework = "foak";
  r.model = "llama-3.2-1b";
  r.method = "lora";
  r.kernels = "rms_norm+rope";
  r.gpus = 2;
  r.batch = 16;
  r.seq = 2048;
  r.precision = "bf16";
  r.activation_checkpointing = true;
  r.status = "out_of_memory";
  r.error = "CUDA out of memory (tried 2.0 GiB)";
  r.tokens_per_second = 67890.5;
  r.pct_change = pct_change;
  r.ms_per_step = 482.75;
  r.peak_allocated_bytes = int64_t{13} << 30;
  r.peak_reserved_bytes = int64_t{14} << 30;
  r.loss_first = 11.75;
  r.loss_last = 11.5;
  r.warmup_steps = 3;
  r.steps = 10;
  r.max_batch = true;
  r.device = "cuda:0";
  return r;
}

// Waits until `done()` holds, up to `timeout`.
template <typename F>
bool WaitUntil(F done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// A port nothing listens on (a server's, released again).
int FreePort() {
  FakeFoakd probe;
  return probe.port();
}

TEST(CoordinatorReporter, SendsReportsInOrderWithTheTokenAndTheJobIdentity) {
  FakeFoakd foakd;
  ASSERT_TRUE(foakd.ok());
  auto reporter = CoordinatorReporter::Create(TestOptions(foakd.address()));
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  const absl::Time before = absl::Now();
  (*reporter)->OnStart(30, 4, "cpu");
  (*reporter)->OnStep(Step(10, 2.5));
  EvalMetrics eval;
  eval.step = 10;
  eval.eval_loss = 2.25;
  eval.eval_tokens = 420;
  eval.eval_examples = 20;
  eval.eval_s = 0.3;
  (*reporter)->OnEval(eval);
  (*reporter)->OnCheckpoint(10, "/out/checkpoint-10");
  ASSERT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());

  const std::vector<v1::WorkerReport> reports = foakd.service().reports();
  ASSERT_EQ(reports.size(), 4u);
  for (const v1::WorkerReport& r : reports) {
    EXPECT_EQ(r.job_id(), "job-00112233aabbccdd");
    EXPECT_EQ(r.attempt(), 2);
    EXPECT_EQ(r.rank(), 1);
  }
  ASSERT_EQ(reports[0].report_case(), ReportCase::kStarted);
  EXPECT_EQ(reports[0].started().max_steps(), 30);
  EXPECT_EQ(reports[0].started().start_step(), 4);
  EXPECT_EQ(reports[0].started().device(), "cpu");
  ASSERT_EQ(reports[1].report_case(), ReportCase::kMetrics);
  const v1::StepMetrics& m = reports[1].metrics();
  EXPECT_EQ(m.step(), 10);
  EXPECT_EQ(m.max_steps(), 30) << "filled in from OnStart";
  EXPECT_EQ(m.loss(), 2.5);
  EXPECT_EQ(m.learning_rate(), 1e-3);
  EXPECT_EQ(m.grad_norm(), 0.5);
  EXPECT_EQ(m.tokens(), 1000);
  EXPECT_EQ(m.tokens_per_second(), 1000);
  EXPECT_EQ(m.peak_memory_bytes(), 1 << 20);
  EXPECT_EQ(m.peak_reserved_bytes(), 3 << 20);
  EXPECT_DOUBLE_EQ(m.elapsed_s(), 1.0);
  EXPECT_EQ(m.rank(), 1);
  ASSERT_EQ(reports[2].report_case(), ReportCase::kEval);
  EXPECT_EQ(reports[2].eval().step(), 10);
  EXPECT_EQ(reports[2].eval().eval_loss(), 2.25);
  EXPECT_EQ(reports[2].eval().eval_tokens(), 420);
  EXPECT_EQ(reports[2].eval().eval_examples(), 20);
  EXPECT_EQ(reports[2].eval().eval_s(), 0.3);
  ASSERT_EQ(reports[3].report_case(), ReportCase::kCheckpoint);
  EXPECT_EQ(reports[3].checkpoint().step(), 10);
  EXPECT_EQ(reports[3].checkpoint().path(), "/out/checkpoint-10");
  const int64_t seconds = reports[3].checkpoint().time().seconds();
  EXPECT_GE(seconds, absl::ToUnixSeconds(before));
  EXPECT_LE(seconds, absl::ToUnixSeconds(absl::Now()));

  EXPECT_EQ(foakd.service().authorization(), std::vector<std::string>{"Bearer s3cret"});
  const CoordinatorReporter::Stats stats = (*reporter)->stats();
  EXPECT_EQ(stats.enqueued, 4);
  EXPECT_EQ(stats.sent, 4);
  EXPECT_EQ(stats.dropped, 0);
  EXPECT_EQ(stats.streams, 1);
  EXPECT_FALSE(stats.refused);

  // Closed: later reports are ignored, a second Close answers the same.
  (*reporter)->OnStep(Step(11, 2.0));
  EXPECT_TRUE((*reporter)->Close(absl::Seconds(1)).ok());
  EXPECT_EQ((*reporter)->stats().enqueued, 4);
}

TEST(CoordinatorReporter, SendsBenchmarkRowsFieldForField) {
  FakeFoakd foakd;
  ASSERT_TRUE(foakd.ok());
  auto reporter = CoordinatorReporter::Create(TestOptions(foakd.address()));
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(6, 0, "cuda:0");  // a bench job: max_steps = the rows planned
  (*reporter)->OnBenchResult(Row(0, std::nullopt));
  (*reporter)->OnBenchResult(Row(1, 34.25));
  ASSERT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());

  const std::vector<v1::WorkerReport> reports = foakd.service().reports();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].started().max_steps(), 6);
  for (int i = 1; i <= 2; ++i) {
    ASSERT_EQ(reports[i].report_case(), ReportCase::kBench) << i;
    EXPECT_EQ(reports[i].job_id(), "job-00112233aabbccdd");
    EXPECT_EQ(reports[i].attempt(), 2);
    EXPECT_EQ(reports[i].rank(), 1);
    const v1::BenchResult& b = reports[i].bench();
    EXPECT_EQ(b.index(), i - 1);
    EXPECT_EQ(b.total(), 6);
    EXPECT_EQ(b.framework(), "foak");
    EXPECT_EQ(b.model(), "llama-3.2-1b");
    EXPECT_EQ(b.method(), "lora");
    EXPECT_EQ(b.kernels(), "rms_norm+rope");
    EXPECT_EQ(b.gpus(), 2);
    EXPECT_EQ(b.batch(), 16);
    EXPECT_EQ(b.seq(), 2048);
    EXPECT_EQ(b.precision(), "bf16");
    EXPECT_TRUE(b.activation_checkpointing());
    EXPECT_EQ(b.status(), "out_of_memory");
    EXPECT_EQ(b.error(), "CUDA out of memory (tried 2.0 GiB)");
    EXPECT_EQ(b.tokens_per_second(), 67890.5);
    EXPECT_EQ(b.ms_per_step(), 482.75);
    EXPECT_EQ(b.peak_allocated_bytes(), int64_t{13} << 30);
    EXPECT_EQ(b.peak_reserved_bytes(), int64_t{14} << 30);
    EXPECT_EQ(b.loss_first(), 11.75);
    EXPECT_EQ(b.loss_last(), 11.5);
    EXPECT_EQ(b.warmup_steps(), 3);
    EXPECT_EQ(b.steps(), 10);
    EXPECT_TRUE(b.max_batch());
    EXPECT_EQ(b.device(), "cuda:0");
  }
  // pct_change travels only when the row has one (absent for the baseline).
  EXPECT_FALSE(reports[1].bench().has_pct_change());
  ASSERT_TRUE(reports[2].bench().has_pct_change());
  EXPECT_EQ(reports[2].bench().pct_change(), 34.25);
}

TEST(CoordinatorReporter, ReconnectsAfterAFoakdRestartAndSendsWhatQueuedMeanwhile) {
  auto first = std::make_unique<FakeFoakd>();
  ASSERT_TRUE(first->ok());
  const int port = first->port();
  auto reporter = CoordinatorReporter::Create(TestOptions(first->address()));
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(100, 0, "cpu");
  (*reporter)->OnStep(Step(1, 3.0));
  ASSERT_TRUE(first->service().WaitForReports(2, absl::Seconds(10)));

  // foakd goes away while the stream is idle; the reporter notices before it
  // has anything to write, so the reports made meanwhile wait in its queue.
  first->Shutdown();
  ASSERT_TRUE(WaitUntil([&] { return (*reporter)->stats().broken >= 1; }, absl::Seconds(10)));
  (*reporter)->OnStep(Step(2, 2.9));
  (*reporter)->OnCheckpoint(2, "/out/checkpoint-2");
  absl::SleepFor(absl::Milliseconds(300));  // a few refused connection attempts
  EXPECT_GE((*reporter)->stats().streams, 2);

  FakeFoakd second(port);
  ASSERT_TRUE(second.ok()) << "port " << port << " could not be bound again";
  (*reporter)->OnStep(Step(3, 2.8));
  ASSERT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());

  const std::vector<v1::WorkerReport> reports = second.service().reports();
  ASSERT_EQ(reports.size(), 3u);
  ASSERT_EQ(reports[0].report_case(), ReportCase::kMetrics);
  EXPECT_EQ(reports[0].metrics().step(), 2);
  EXPECT_EQ(reports[0].metrics().max_steps(), 100);
  ASSERT_EQ(reports[1].report_case(), ReportCase::kCheckpoint);
  EXPECT_EQ(reports[1].checkpoint().path(), "/out/checkpoint-2");
  ASSERT_EQ(reports[2].report_case(), ReportCase::kMetrics);
  EXPECT_EQ(reports[2].metrics().step(), 3);
  for (const std::string& auth : second.service().authorization()) {
    EXPECT_EQ(auth, "Bearer s3cret");
  }
  EXPECT_EQ((*reporter)->stats().sent, 5);
  EXPECT_EQ((*reporter)->stats().dropped, 0);
}

TEST(CoordinatorReporter, FullQueueNeverDropsBenchmarkRows) {
  const int port = FreePort();
  CoordinatorReporter::Options options = TestOptions("127.0.0.1:" + std::to_string(port));
  options.max_queue = 2;
  auto reporter = CoordinatorReporter::Create(options);
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(4, 0, "cpu");
  (*reporter)->OnStep(Step(1, 3.0));  // a stray step: dropped first
  for (int i = 0; i < 4; ++i) (*reporter)->OnBenchResult(Row(i, 1.0 * i));
  EXPECT_EQ((*reporter)->stats().dropped, 1);
  EXPECT_EQ((*reporter)->stats().enqueued, 6);

  FakeFoakd foakd(port);
  ASSERT_TRUE(foakd.ok());
  ASSERT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());
  const std::vector<v1::WorkerReport> reports = foakd.service().reports();
  ASSERT_EQ(reports.size(), 5u);
  EXPECT_EQ(reports[0].report_case(), ReportCase::kStarted);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(reports[i + 1].report_case(), ReportCase::kBench);
    EXPECT_EQ(reports[i + 1].bench().index(), i);
  }
}

TEST(CoordinatorReporter, FullQueueDropsTheOldestStepMetricsNeverStartedOrCheckpoints) {
  const int port = FreePort();
  CoordinatorReporter::Options options = TestOptions("127.0.0.1:" + std::to_string(port));
  options.max_queue = 3;
  auto reporter = CoordinatorReporter::Create(options);
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(5, 0, "cpu");
  for (int step = 1; step <= 5; ++step) (*reporter)->OnStep(Step(step, 3.0 - 0.1 * step));
  (*reporter)->OnCheckpoint(5, "/out/final");
  // Queue (3): started, step 5, checkpoint; steps 1-4 dropped oldest first.
  EXPECT_EQ((*reporter)->stats().dropped, 4);
  EXPECT_EQ((*reporter)->stats().sent, 0);

  FakeFoakd foakd(port);
  ASSERT_TRUE(foakd.ok());
  ASSERT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());
  const std::vector<v1::WorkerReport> reports = foakd.service().reports();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].report_case(), ReportCase::kStarted);
  ASSERT_EQ(reports[1].report_case(), ReportCase::kMetrics);
  EXPECT_EQ(reports[1].metrics().step(), 5);
  ASSERT_EQ(reports[2].report_case(), ReportCase::kCheckpoint);
  EXPECT_EQ(reports[2].checkpoint().path(), "/out/final");
}

TEST(CoordinatorReporter, PermissionDeniedStopsTheRetriesAndLogsOneLine) {
  FakeFoakd foakd(0, /*refuse=*/true);
  ASSERT_TRUE(foakd.ok());
  CoordinatorReporter::Options options = TestOptions(foakd.address());
  std::FILE* log = std::tmpfile();
  ASSERT_NE(log, nullptr);
  options.log = log;
  auto reporter = CoordinatorReporter::Create(options);
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(10, 0, "cpu");
  ASSERT_TRUE(WaitUntil([&] { return (*reporter)->stats().refused; }, absl::Seconds(5)));
  for (int step = 1; step <= 5; ++step) (*reporter)->OnStep(Step(step, 1.0));
  absl::SleepFor(absl::Milliseconds(500));  // 20 ms backoff: retries would show
  EXPECT_EQ(foakd.service().calls(), 1);
  const absl::Time start = absl::Now();
  EXPECT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(foakd.service().calls(), 1);

  std::rewind(log);
  std::string text;
  char buffer[512];
  while (std::fgets(buffer, sizeof(buffer), log) != nullptr) text += buffer;
  std::fclose(log);
  EXPECT_NE(text.find("PERMISSION_DENIED"), std::string::npos) << text;
  EXPECT_NE(text.find("job-00112233aabbccdd"), std::string::npos) << text;
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << "never log the token: " << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
}

TEST(CoordinatorReporter, CloseReturnsWithinItsTimeoutWhenNothingListens) {
  auto reporter = CoordinatorReporter::Create(
      TestOptions("127.0.0.1:" + std::to_string(FreePort())));
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(10, 0, "cpu");
  (*reporter)->OnStep(Step(1, 1.0));
  const absl::Time start = absl::Now();
  const absl::Status closed = (*reporter)->Close(absl::Milliseconds(500));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(closed.code(), absl::StatusCode::kDeadlineExceeded) << closed;
  EXPECT_NE(closed.message().find("2 progress report(s) not delivered"), std::string::npos)
      << closed;
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Milliseconds(1500));
  EXPECT_EQ((*reporter)->stats().sent, 0);
  // Why: gRPC's own words for the refused connection.
  EXPECT_NE(closed.message().find("; last error: UNAVAILABLE: "), std::string::npos) << closed;
  EXPECT_EQ((*reporter)->stats().last_error.rfind("UNAVAILABLE: ", 0), 0u)
      << (*reporter)->stats().last_error;
}

// One line says why foakd cannot be reached, once, not at every retry.
TEST(CoordinatorReporter, AnUnreachableFoakdIsLoggedOnce) {
  std::FILE* log = std::tmpfile();
  ASSERT_NE(log, nullptr);
  CoordinatorReporter::Options options = TestOptions("127.0.0.1:" + std::to_string(FreePort()));
  options.log = log;
  auto reporter = CoordinatorReporter::Create(options);
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  (*reporter)->OnStart(10, 0, "cpu");
  EXPECT_FALSE((*reporter)->Close(absl::Milliseconds(500)).ok());
  EXPECT_GE((*reporter)->stats().broken, 2) << "retried meanwhile";
  std::rewind(log);
  std::string text;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, log) != nullptr) text += buf;
  std::fclose(log);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_NE(text.find("foak-worker: cannot report to foakd at " + options.address +
                      " for job job-00112233aabbccdd (UNAVAILABLE: "),
            std::string::npos)
      << text;
}

TEST(CoordinatorReporter, DestructorDoesNotHangOnAnUnreachableFoakd) {
  const absl::Time start = absl::Now();
  {
    auto reporter = CoordinatorReporter::Create(
        TestOptions("127.0.0.1:" + std::to_string(FreePort())));
    ASSERT_TRUE(reporter.ok()) << reporter.status();
    (*reporter)->OnStart(10, 0, "cpu");
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(CoordinatorReporter, CreateRejectsMissingOptions) {
  CoordinatorReporter::Options options = TestOptions("127.0.0.1:1");
  options.token = "";
  auto reporter = CoordinatorReporter::Create(options);
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("token"), std::string::npos);
  options = TestOptions("127.0.0.1:1");
  options.max_queue = 0;
  EXPECT_EQ(CoordinatorReporter::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Sets the reporter's environment variables for one test and clears them after.
class ReporterEnvironment : public ::testing::Test {
 protected:
  void SetUp() override { Clear(); }
  void TearDown() override { Clear(); }
  static void Clear() {
    for (const char* name :
         {"FOAK_COORDINATOR", "FOAK_JOB_ID", "FOAK_JOB_TOKEN", "FOAK_JOB_ATTEMPT", "RANK",
          "FOAK_COORDINATOR_TLS_CA", "FOAK_COORDINATOR_TLS_CERT", "FOAK_COORDINATOR_TLS_KEY",
          "FOAK_COORDINATOR_TLS_SERVER_NAME"}) {
      unsetenv(name);
    }
  }
};

TEST_F(ReporterEnvironment, NoCoordinatorMeansNoReporter) {
  auto reporter = CoordinatorReporter::FromEnvironment();
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  EXPECT_EQ(*reporter, nullptr);
  setenv("FOAK_COORDINATOR", "", 1);
  reporter = CoordinatorReporter::FromEnvironment();
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  EXPECT_EQ(*reporter, nullptr);
}

TEST_F(ReporterEnvironment, ErrorsNameTheMissingOrBadVariable) {
  setenv("FOAK_COORDINATOR", "127.0.0.1:1", 1);
  auto reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("FOAK_JOB_ID"), std::string::npos)
      << reporter.status();

  setenv("FOAK_JOB_ID", "job-1", 1);
  reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("FOAK_JOB_TOKEN"), std::string::npos)
      << reporter.status();

  setenv("FOAK_JOB_TOKEN", "s3cret", 1);
  setenv("FOAK_JOB_ATTEMPT", "two", 1);
  reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("FOAK_JOB_ATTEMPT"), std::string::npos)
      << reporter.status();

  setenv("FOAK_JOB_ATTEMPT", "1", 1);
  setenv("RANK", "-1", 1);
  reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("RANK"), std::string::npos) << reporter.status();
  EXPECT_EQ(reporter.status().message().find("s3cret"), std::string::npos);
}

// TLS to foakd (foakd --tls_cert, --worker_tls_*): the variables name PEM
// files; each problem names the variable (the handshake itself is tested
// against a real foakd in foakd_security_test).
TEST_F(ReporterEnvironment, TlsFilesMustBeReadablePemAndComeInPairs) {
  char dir_template[] = "/tmp/foak_reporter_tls_XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string pem = dir + "/ca.pem";
  const std::string text = dir + "/notes.txt";
  ASSERT_TRUE(WriteFileAtomically(pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").ok());
  ASSERT_TRUE(WriteFileAtomically(text, "not a certificate\n").ok());
  setenv("FOAK_COORDINATOR", "127.0.0.1:1", 1);
  setenv("FOAK_JOB_ID", "job-1", 1);
  setenv("FOAK_JOB_TOKEN", "s3cret", 1);

  setenv("FOAK_COORDINATOR_TLS_CA", (dir + "/absent.pem").c_str(), 1);
  auto reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("FOAK_COORDINATOR_TLS_CA = '" + dir + "/absent.pem'"),
            std::string::npos)
      << reporter.status();

  setenv("FOAK_COORDINATOR_TLS_CA", text.c_str(), 1);
  reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("holds no PEM block"), std::string::npos)
      << reporter.status();

  setenv("FOAK_COORDINATOR_TLS_CA", pem.c_str(), 1);
  setenv("FOAK_COORDINATOR_TLS_CERT", pem.c_str(), 1);  // and no key
  reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find("FOAK_COORDINATOR_TLS_CERT, _KEY, _CA"),
            std::string::npos)
      << reporter.status();

  unsetenv("FOAK_COORDINATOR_TLS_CERT");
  reporter = CoordinatorReporter::FromEnvironment();  // TLS, no client certificate
  EXPECT_TRUE(reporter.ok()) << reporter.status();

  // A server-name override (foakd --worker_tls_server_name) means TLS.
  setenv("FOAK_COORDINATOR_TLS_SERVER_NAME", "foakd.foak.svc", 1);
  reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_TRUE(reporter.ok()) << reporter.status();
  unsetenv("FOAK_COORDINATOR_TLS_CA");
  reporter = CoordinatorReporter::FromEnvironment();
  EXPECT_EQ(reporter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reporter.status().message().find(
                "FOAK_COORDINATOR_TLS_SERVER_NAME applies only with FOAK_COORDINATOR_TLS_CA"),
            std::string::npos)
      << reporter.status();
  RemoveTree(dir).IgnoreError();
}

TEST_F(ReporterEnvironment, ReportsToTheCoordinatorItNames) {
  FakeFoakd foakd;
  ASSERT_TRUE(foakd.ok());
  setenv("FOAK_COORDINATOR", foakd.address().c_str(), 1);
  setenv("FOAK_JOB_ID", "job-7", 1);
  setenv("FOAK_JOB_TOKEN", "tok-7", 1);
  setenv("FOAK_JOB_ATTEMPT", "3", 1);
  setenv("RANK", "0", 1);
  auto reporter = CoordinatorReporter::FromEnvironment();
  ASSERT_TRUE(reporter.ok()) << reporter.status();
  ASSERT_NE(*reporter, nullptr);
  (*reporter)->OnStart(8, 0, "cpu");
  ASSERT_TRUE((*reporter)->Close(absl::Seconds(10)).ok());
  const std::vector<v1::WorkerReport> reports = foakd.service().reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].job_id(), "job-7");
  EXPECT_EQ(reports[0].attempt(), 3);
  EXPECT_EQ(reports[0].rank(), 0);
  EXPECT_EQ(foakd.service().authorization(), std::vector<std::string>{"Bearer tok-7"});
}

}  // namespace
}  // namespace foak

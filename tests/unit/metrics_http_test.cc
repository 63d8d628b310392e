// MetricsHttpServer on a real socket: what a scraper sees on /metrics and
// /healthz, the 404 and 405 answers, the bound port when port 0 is asked
// for, and a clear error when the port is already taken.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/server_metrics.h"
#include "common/file_util.h"
#include "tests/testing/http_get.h"
#include "tests/testing/worker_run.h"

namespace foak {
namespace {

using ::foak::testing::HttpGet;
using ::foak::testing::HttpRequest;
using ::foak::testing::HttpResponse;

std::unique_ptr<MetricsHttpServer> StartOrDie(std::function<std::string()> render,
                                              const std::string& address = "127.0.0.1:0") {
  MetricsHttpServerOptions options;
  options.listen_address = address;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Create(options, std::move(render));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(MetricsHttpServer, ServesMetrics) {
  ServerMetrics metrics;
  JobProgressSample sample;
  sample.step = 42;
  sample.tokens = 1000;
  metrics.OnJobProgress("job-1", sample);
  std::unique_ptr<MetricsHttpServer> server = StartOrDie([&metrics] { return metrics.Render(); });
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);

  absl::StatusOr<HttpResponse> response = HttpGet("127.0.0.1", server->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status_code, 200);
  EXPECT_EQ(response->Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response->Header("content-length"), std::to_string(response->body.size()));
  EXPECT_NE(response->body.find("foak_job_step{job_id=\"job-1\"} 42\n"), std::string::npos)
      << response->body;
  EXPECT_NE(response->body.find("# TYPE foak_jobs gauge\n"), std::string::npos) << response->body;

  // Each scrape renders afresh.
  sample.step = 43;
  metrics.OnJobProgress("job-1", sample);
  response = HttpGet("127.0.0.1", server->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_NE(response->body.find("foak_job_step{job_id=\"job-1\"} 43\n"), std::string::npos);
  EXPECT_NE(response->body.find("foak_job_tokens_total{job_id=\"job-1\"} 2000\n"), std::string::npos);
}

TEST(MetricsHttpServer, HealthzNotFoundAndMethodNotAllowed) {
  std::unique_ptr<MetricsHttpServer> server = StartOrDie([] { return std::string("x 1\n"); });
  ASSERT_NE(server, nullptr);
  const int port = server->port();

  absl::StatusOr<HttpResponse> health = HttpGet("127.0.0.1", port, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status_code, 200);
  EXPECT_EQ(health->body, "ok");

  for (const std::string path : {"/", "/nope", "/metrics/extra", "/metricsx", "/healthz/"}) {
    absl::StatusOr<HttpResponse> missing = HttpGet("127.0.0.1", port, path);
    ASSERT_TRUE(missing.ok()) << path << ": " << missing.status();
    EXPECT_EQ(missing->status_code, 404) << path << ": " << missing->body;
  }

  absl::StatusOr<HttpResponse> post = HttpRequest("POST", "127.0.0.1", port, "/metrics", "a=b",
                                                  "application/x-www-form-urlencoded");
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->status_code, 405);
  EXPECT_EQ(post->Header("Allow"), "GET, HEAD");

  absl::StatusOr<HttpResponse> head = HttpRequest("HEAD", "127.0.0.1", port, "/metrics");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->status_code, 200);
  EXPECT_EQ(head->Header("Content-Length"), "4");
  EXPECT_EQ(head->body, "");
}

TEST(MetricsHttpServer, ConcurrentScrapes) {
  std::atomic<int> renders{0};
  std::unique_ptr<MetricsHttpServer> server = StartOrDie([&renders] {
    ++renders;
    return std::string(20000, '#') + "\n";
  });
  ASSERT_NE(server, nullptr);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        absl::StatusOr<HttpResponse> r = HttpGet("127.0.0.1", server->port(), "/metrics");
        if (r.ok() && r->status_code == 200 && r->body.size() == 20001) ++ok;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(renders.load(), 40);
}

TEST(MetricsHttpServer, TakenPortIsAClearError) {
  std::unique_ptr<MetricsHttpServer> first = StartOrDie([] { return std::string(); });
  ASSERT_NE(first, nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(first->port());
  MetricsHttpServerOptions options;
  options.listen_address = address;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Create(options, [] { return std::string(); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(address), absl::string_view::npos) << second.status();
  EXPECT_NE(second.status().message().find("in use"), absl::string_view::npos) << second.status();
  // The first server still answers.
  absl::StatusOr<HttpResponse> r = HttpGet("127.0.0.1", first->port(), "/healthz");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status_code, 200);
}

TEST(MetricsHttpServer, RefusesBadOptions) {
  MetricsHttpServerOptions options;
  for (const std::string address : {"127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x", ""}) {
    options.listen_address = address;
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> s =
        MetricsHttpServer::Create(options, [] { return std::string(); });
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << address << ": " << s.status();
  }
  options.listen_address = "127.0.0.1:0";
  EXPECT_EQ(MetricsHttpServer::Create(options, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  options.num_threads = 0;
  EXPECT_EQ(MetricsHttpServer::Create(options, [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsHttpServer, StopsCleanlyAndFreesThePort) {
  int port = 0;
  {
    std::unique_ptr<MetricsHttpServer> server = StartOrDie([] { return std::string("a 1\n"); });
    ASSERT_NE(server, nullptr);
    port = server->port();
    ASSERT_TRUE(HttpGet("127.0.0.1", port, "/metrics").ok());
  }
  // Gone: nothing answers, and the port can be bound again.
  EXPECT_FALSE(HttpGet("127.0.0.1", port, "/metrics", 2000).ok());
  std::unique_ptr<MetricsHttpServer> again =
      StartOrDie([] { return std::string("a 2\n"); }, "127.0.0.1:" + std::to_string(port));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->port(), port);
}

}  // namespace
}  // namespace foak

namespace foak {
namespace {

TEST(MetricsHttpServer, ABearerTokenGuardsMetricsButNotHealthz) {
  const std::string token = "0123456789abcdef-metrics";
  MetricsHttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.bearer_token = token;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Create(options, [] { return std::string("foak_up 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  auto get = [port](const std::string& headers) {
    return HttpRequest("GET", "127.0.0.1", port, "/metrics", "", "", 10000, headers);
  };
  absl::StatusOr<HttpResponse> ok = get("Authorization: Bearer " + token + "\r\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status_code, 200);
  EXPECT_EQ(ok->body, "foak_up 1\n");
  // Missing, wrong, a prefix of it, longer, another scheme: 401, no metrics.
  for (const std::string& headers :
       std::vector<std::string>{std::string(), "Authorization: Bearer wrong-token-0123456\r\n",
        "Authorization: Bearer " + token.substr(0, token.size() - 1) + "\r\n",
        "Authorization: Bearer " + token + "x\r\n", "Authorization: Basic " + token + "\r\n",
        std::string("Authorization: Bearer \r\n")}) {
    SCOPED_TRACE(headers);
    absl::StatusOr<HttpResponse> refused = get(headers);
    ASSERT_TRUE(refused.ok()) << refused.status();
    EXPECT_EQ(refused->status_code, 401);
    EXPECT_EQ(refused->Header("WWW-Authenticate"), "Bearer realm=\"foakd metrics\"");
    EXPECT_EQ(refused->body.find("foak_up"), std::string::npos);
    EXPECT_NE(refused->body.find("--metrics_bearer_token_file"), std::string::npos);
  }
  absl::StatusOr<HttpResponse> health = HttpGet("127.0.0.1", port, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status_code, 200);
}

TEST(MetricsHttpServer, BearerTokenMatchesComparesTheWholeToken) {
  EXPECT_TRUE(BearerTokenMatches("Bearer abc", "abc"));
  EXPECT_TRUE(BearerTokenMatches("bearer abc", "abc"));  // the scheme is case-insensitive
  EXPECT_FALSE(BearerTokenMatches(nullptr, "abc"));
  EXPECT_FALSE(BearerTokenMatches("Bearer ab", "abc"));
  EXPECT_FALSE(BearerTokenMatches("Bearer abcd", "abc"));
  EXPECT_FALSE(BearerTokenMatches("Bearer abd", "abc"));
  EXPECT_FALSE(BearerTokenMatches("abc", "abc"));
  EXPECT_FALSE(BearerTokenMatches("Bearer ", ""));
}

TEST(MetricsHttpServer, TheTokenFileHoldsOneTokenAndErrorsNeverRepeatIt) {
  testing::TempDir dir("metrics_token");
  const std::string path = JoinPath(dir.path(), "token");
  ASSERT_TRUE(WriteFileAtomically(path, "  0123456789abcdef0123\n").ok());
  absl::StatusOr<std::string> token = ReadBearerTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "0123456789abcdef0123");
  for (const std::string& text : {std::string("\n"), std::string("short-secret"),
                                  std::string("0123456789abcdef 0123456789abcdef")}) {
    ASSERT_TRUE(WriteFileAtomically(path, text).ok());
    absl::StatusOr<std::string> bad = ReadBearerTokenFile(path);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(bad.status().message().find("--metrics_bearer_token_file"), std::string::npos);
    if (text.size() > 2) EXPECT_EQ(bad.status().message().find(text), std::string::npos);
  }
  EXPECT_FALSE(ReadBearerTokenFile(JoinPath(dir.path(), "absent")).ok());
}

}  // namespace
}  // namespace foak

namespace foak {
namespace {

TEST(ServerMetrics, WithoutPerJobSeriesNoJobIdReachesMetrics) {
  ServerMetricsOptions options;
  options.per_job_series = false;
  ServerMetrics metrics(options);
  JobProgressSample sample;
  sample.step = 5;
  metrics.OnJobProgress("job-secret", sample);
  metrics.OnRankPeakMemory("job-secret", 1, 1000);
  metrics.OnJobFinished("job-secret", "SUCCEEDED");
  const std::string text = metrics.Render();
  EXPECT_EQ(text.find("job-secret"), std::string::npos) << text;
  EXPECT_NE(text.find("foak_jobs_finished_total{state=\"SUCCEEDED\"} 1"), std::string::npos) << text;
}

}  // namespace
}  // namespace foak

// KubeClient on its own: the in-cluster defaults, the errors of a request
// that gets no answer (each naming the URL and what failed), and turning an
// API answer into a Status. Verification against a real certificate is in
// kubernetes_launcher_test.cc (the fake API server's TLS).
#include "server/launch/kube_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/net_util.h"
#include "gtest/gtest.h"

namespace foak {
namespace {

TEST(KubeClientTest, InClusterDefaultsAndErrors) {
  ::setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
  absl::StatusOr<std::unique_ptr<KubeClient>> client = KubeClient::Create({});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->api_server(), "https://[fd00::1]:6443");
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(KubeClient::Create({}).status().code(), absl::StatusCode::kInvalidArgument);

  KubeResponse forbidden{403, R"({"kind":"Status","message":"jobs.batch is forbidden"})"};
  absl::Status s = KubeApiError("cannot create Kubernetes Job ns/j", forbidden);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "cannot create Kubernetes Job ns/j: HTTP 403 Forbidden: jobs.batch is forbidden");
  EXPECT_EQ(KubeApiError("x", {503, "upstream down"}).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(UrlQueryEscape("a.b/c=d,e f"), "a.b%2Fc%3Dd%2Ce%20f");
}

TEST(KubeClientTest, ConnectAndTimeoutErrorsNameTheUrl) {
  KubeClientOptions options;
  options.token_file = "";
  options.ca_file = "";
  options.connect_timeout_ms = 300;
  options.request_timeout_ms = 300;
  // Nothing listens there.
  options.api_server = absl::StrCat("https://127.0.0.1:", FreeLoopbackPort());
  absl::StatusOr<KubeResponse> r = (*KubeClient::Create(options))->Request("GET", "/version");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "cannot connect")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), options.api_server + "/version"))
      << r.status();
  // A listener that never answers the TLS handshake.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  options.api_server = absl::StrCat("https://127.0.0.1:", ntohs(addr.sin_port));
  r = (*KubeClient::Create(options))->Request("GET", "/version");
  ::close(fd);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "timed out")) << r.status();
  // A token file that cannot be read.
  options.token_file = "/nonexistent/token";
  r = (*KubeClient::Create(options))->Request("GET", "/version");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "token_file '/nonexistent/token'"))
      << r.status();
}

}  // namespace
}  // namespace foak

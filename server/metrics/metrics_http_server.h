// The HTTP endpoint Prometheus scrapes: GET /metrics returns the text of a
// render callback (normally ServerMetrics::Render) in the text exposition
// format 0.0.4, GET /healthz returns "ok", anything else is 404 (or 405 for
// another method on a known path). Served by civetweb (Debian:
// libcivetweb-dev), which this header does not expose.
//
// Why these settings: keep-alive is off, so a connection never holds one of
// the few worker threads between scrapes (civetweb serves one connection per
// thread; with 2 threads, one idle keep-alive client would halve the
// capacity). A scrape renders a few KB, so closing and reopening the TCP
// connection every scrape interval costs nothing. Nothing is served from
// disk: there is no document root.
//
// With a bearer token set, /metrics answers only requests carrying
// "Authorization: Bearer <token>" (401 with WWW-Authenticate otherwise; the
// comparison takes the same time whatever the presented token holds), so a
// metrics port reachable from the network does not hand out job ids and
// names. /healthz stays open for probes.
//
// The render callback runs on civetweb's threads, possibly concurrently; it
// must be thread-safe and must outlive the server.
#ifndef FOAK_SERVER_METRICS_METRICS_HTTP_SERVER_H_
#define FOAK_SERVER_METRICS_METRICS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct mg_context;
struct mg_connection;

namespace foak {

struct MetricsHttpServerOptions {
  // "host:port": "127.0.0.1:9464", "localhost:9464", "0.0.0.0:9464" or
  // ":9464" (every interface). Port 0 picks a free port; read it back with
  // port(). "[v6]:port" works only where civetweb was built with IPv6
  // (Debian 12's is not).
  std::string listen_address = "127.0.0.1:9464";
  // civetweb worker threads, each serving one connection at a time.
  int num_threads = 2;
  // A client that sends nothing for this long is disconnected.
  int request_timeout_ms = 10000;
  // Non-empty: /metrics needs "Authorization: Bearer <bearer_token>".
  std::string bearer_token;
};

// The token of a --metrics_bearer_token_file: the file's text without
// surrounding whitespace. INVALID_ARGUMENT naming the file when it cannot be
// read, is empty, or the token holds whitespace or is shorter than 16
// characters; the message never repeats the token.
absl::StatusOr<std::string> ReadBearerTokenFile(const std::string& path);

// True when `authorization` (an Authorization header, or null) is
// "Bearer <expected>". Time depends on expected's length only.
bool BearerTokenMatches(const char* authorization, const std::string& expected);

class MetricsHttpServer {
 public:
  // Listens and serves until destroyed. INVALID_ARGUMENT for a malformed
  // address, thread count or missing callback; UNAVAILABLE naming the address
  // when it cannot be bound (e.g. the port is taken).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Create(
      const MetricsHttpServerOptions& options, std::function<std::string()> render);

  // Stops listening and waits for the requests in flight to finish (a few
  // ms; see the .cc for how civetweb's 2 s accept poll is cut short).
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the chosen one when the address asked for port 0).
  int port() const { return port_; }

 private:
  MetricsHttpServer(std::function<std::string()> render, std::string bearer_token);

  // civetweb's request handler; `self` is the MetricsHttpServer.
  static int HandleRequest(mg_connection* conn, void* self);
  int Handle(mg_connection* conn);
  // civetweb's log callback: keeps its messages (the reason a bind failed)
  // for the error that Create returns instead of printing them.
  static int LogMessage(const mg_connection* conn, const char* message);
  std::string TakeLog();

  const std::function<std::string()> render_;
  const std::string bearer_token_;  // empty = /metrics is open
  mg_context* context_ = nullptr;
  int port_ = 0;
  std::string local_host_;  // how this process reaches the listener (for the stop)
  absl::Mutex log_mu_;
  std::string log_ ABSL_GUARDED_BY(log_mu_);  // civetweb's messages, capped at ~4 KB
};

}  // namespace foak

#endif  // FOAK_SERVER_METRICS_METRICS_HTTP_SERVER_H_

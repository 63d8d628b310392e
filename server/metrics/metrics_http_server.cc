#include "server/metrics/metrics_http_server.h"

#include <civetweb.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace foak {
namespace {

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// civetweb wants mg_init_library once per process before the first server and
// its own lazy fallback is not thread-safe; two servers may start at once
// (tests do), so initialise exactly once here. It is never undone: the
// library's global state lives as long as the process.
void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

// Checks "host:port" (host may be "[v6]" or empty) and returns the port.
absl::StatusOr<int> ParseListenAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || address.find_first_of(", \t") != std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address '", address,
                     "' is not host:port with a port in 0..65535 (e.g. 127.0.0.1:9464; port 0 picks one)"));
  }
  return port;
}

// civetweb's "listening_ports" spelling: "host:port", "[v6]:port", or the
// bare port for every interface.
std::string CivetwebPorts(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == 0) return address.substr(1);  // ":9464"
  return address;
}

// Where a local client reaches the server: the listen host, with the
// wildcard addresses replaced by loopback.
std::string LocalHost(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") return "127.0.0.1";
  if (host == "::") return "::1";
  return host;
}

// Opens and closes one connection carrying a complete request, so that
// civetweb's accept loop (which polls with a 2 s timeout) wakes up and sees
// its stop flag. Best effort: a failure only means a slower stop.
void PokeListener(const std::string& host, int port) {
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses) != 0) return;
  const int fd = socket(addresses->ai_family, addresses->ai_socktype, addresses->ai_protocol);
  if (fd >= 0) {
    timeval tv{0, 200 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, addresses->ai_addr, addresses->ai_addrlen) == 0) {
      // If the server accepts it before stopping, a worker answers at once.
      static const char kRequest[] = "GET /healthz HTTP/1.0\r\n\r\n";
      (void)send(fd, kRequest, sizeof(kRequest) - 1, MSG_NOSIGNAL);
    }
    close(fd);
  }
  freeaddrinfo(addresses);
}

void SendResponse(mg_connection* conn, int status, const char* reason, const char* content_type,
                  const std::string& body, const char* extra_headers, bool with_body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\n"
            "Content-Type: %s\r\n"
            "Content-Length: %zu\r\n"
            "Cache-Control: no-store\r\n"
            "%s"
            "Connection: close\r\n"
            "\r\n",
            status, reason, content_type, body.size(), extra_headers);
  if (with_body && !body.empty()) mg_write(conn, body.data(), body.size());
}

}  // namespace

absl::StatusOr<std::string> ReadBearerTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_bearer_token_file = '", path, "' cannot be read: ", text.status().message()));
  }
  const std::string token(absl::StripAsciiWhitespace(*text));
  const bool spaces = std::any_of(token.begin(), token.end(),
                                  [](char c) { return absl::ascii_isspace(static_cast<unsigned char>(c)); });
  if (token.size() < 16 || spaces) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_bearer_token_file = '", path, "' holds ",
        token.empty() ? "no token" : spaces ? "more than one word" : "a token shorter than 16 characters",
        "; expected one token of at least 16 characters without spaces (e.g. openssl rand -hex 32)"));
  }
  return token;
}

bool BearerTokenMatches(const char* authorization, const std::string& expected) {
  static constexpr char kPrefix[] = "Bearer ";
  const std::string presented = authorization != nullptr ? authorization : "";
  const bool prefixed = presented.size() > sizeof(kPrefix) - 1 &&
                        absl::EqualsIgnoreCase(presented.substr(0, sizeof(kPrefix) - 1), kPrefix);
  const std::string token = prefixed ? presented.substr(sizeof(kPrefix) - 1) : "";
  // Every byte of `expected` is compared, against the presented token's
  // byte at the same index (or a zero past its end): no early exit.
  unsigned char diff = token.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char got = i < token.size() ? static_cast<unsigned char>(token[i]) : 0;
    diff |= got ^ static_cast<unsigned char>(expected[i]);
  }
  return prefixed && diff == 0;
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Create(
    const MetricsHttpServerOptions& options, std::function<std::string()> render) {
  if (!render) return absl::InvalidArgumentError("MetricsHttpServer needs a render callback");
  if (options.num_threads < 1 || options.num_threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics num_threads is ", options.num_threads, "; use 1..64 (2 is plenty)"));
  }
  if (options.request_timeout_ms < 1) {
    return absl::InvalidArgumentError(absl::StrCat("metrics request_timeout_ms is ",
                                                   options.request_timeout_ms, "; it must be positive"));
  }
  if (absl::StatusOr<int> port = ParseListenAddress(options.listen_address); !port.ok()) {
    return port.status();
  }
  InitCivetwebOnce();

  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(std::move(render), options.bearer_token));
  const std::string ports = CivetwebPorts(options.listen_address);
  const std::string threads = std::to_string(options.num_threads);
  const std::string timeout = std::to_string(options.request_timeout_ms);
  const char* config[] = {"listening_ports",    ports.c_str(),   "num_threads", threads.c_str(),
                          "request_timeout_ms", timeout.c_str(), "enable_keep_alive", "no",
                          nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = &MetricsHttpServer::LogMessage;
  mg_init_data init;
  std::memset(&init, 0, sizeof(init));
  init.callbacks = &callbacks;
  init.user_data = server.get();
  init.configuration_options = config;
  char error_text[256] = {0};
  unsigned error_code = 0;
  mg_error_data error;
  std::memset(&error, 0, sizeof(error));
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);

  server->context_ = mg_start2(&init, &error);
  if (server->context_ == nullptr) {
    // civetweb's error text is generic ("Failed to setup server ports"); the
    // reason (e.g. "Address already in use") went to its log callback.
    const std::string summary = error_text[0] != '\0' ? error_text : "civetweb failed to start";
    std::string detail = server->TakeLog();
    if (absl::EndsWith(detail, absl::StrCat("; ", summary))) detail.resize(detail.size() - summary.size() - 2);
    const bool in_use = detail.find("in use") != std::string::npos;
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", options.listen_address, ": ", summary,
        detail.empty() || detail == summary ? "" : absl::StrCat(" (", detail, ")"),
        in_use ? "; another process listens there: pick a free port, or port 0" : ""));
  }
  mg_server_port bound[4];
  std::memset(bound, 0, sizeof(bound));
  const int n = mg_get_server_ports(server->context_, 4, bound);
  if (n < 1 || bound[0].port <= 0) {
    return absl::InternalError(
        absl::StrCat("metrics server on ", options.listen_address, " started but reports no bound port"));
  }
  server->port_ = bound[0].port;
  server->local_host_ = LocalHost(options.listen_address);
  // "/" with civetweb's prefix matching catches every path; Handle() routes.
  mg_set_request_handler(server->context_, "/", &MetricsHttpServer::HandleRequest, server.get());
  return server;
}

MetricsHttpServer::MetricsHttpServer(std::function<std::string()> render, std::string bearer_token)
    : render_(std::move(render)), bearer_token_(std::move(bearer_token)) {}

MetricsHttpServer::~MetricsHttpServer() {
  if (context_ == nullptr) return;
  // mg_stop sets a stop flag and joins civetweb's threads, but the accept
  // loop looks at the flag only between 2 s polls; poking the listener until
  // mg_stop returns turns a ~2 s stop into a few ms.
  std::atomic<bool> stopped{false};
  std::thread stopper([this, &stopped] {
    mg_stop(context_);
    stopped = true;
  });
  while (!stopped) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!stopped) PokeListener(local_host_, port_);
  }
  stopper.join();
}

int MetricsHttpServer::LogMessage(const mg_connection* conn, const char* message) {
  const mg_context* context = conn != nullptr ? mg_get_context(conn) : nullptr;
  auto* self = context != nullptr ? static_cast<MetricsHttpServer*>(mg_get_user_data(context)) : nullptr;
  if (self != nullptr && message != nullptr) {
    absl::MutexLock lock(&self->log_mu_);
    if (self->log_.size() < 4096) absl::StrAppend(&self->log_, self->log_.empty() ? "" : "; ", message);
  }
  return 1;  // handled: civetweb writes nothing itself
}

std::string MetricsHttpServer::TakeLog() {
  absl::MutexLock lock(&log_mu_);
  std::string log = std::move(log_);
  log_.clear();
  return log;
}

int MetricsHttpServer::HandleRequest(mg_connection* conn, void* self) {
  return static_cast<MetricsHttpServer*>(self)->Handle(conn);
}

int MetricsHttpServer::Handle(mg_connection* conn) {
  const mg_request_info* request = mg_get_request_info(conn);
  const std::string method = request->request_method != nullptr ? request->request_method : "";
  const std::string path = request->local_uri != nullptr ? request->local_uri : "";
  const bool head = method == "HEAD";
  const bool get_or_head = method == "GET" || head;
  if (path != "/metrics" && path != "/healthz") {
    SendResponse(conn, 404, "Not Found", "text/plain; charset=utf-8",
                 "not found; try /metrics or /healthz\n", "", !head);
    return 404;
  }
  if (!get_or_head) {
    SendResponse(conn, 405, "Method Not Allowed", "text/plain; charset=utf-8",
                 absl::StrCat(path, " answers GET and HEAD only\n"), "Allow: GET, HEAD\r\n", true);
    return 405;
  }
  if (path == "/healthz") {
    SendResponse(conn, 200, "OK", "text/plain; charset=utf-8", "ok", "", !head);
    return 200;
  }
  if (!bearer_token_.empty() &&
      !BearerTokenMatches(mg_get_header(conn, "Authorization"), bearer_token_)) {
    SendResponse(conn, 401, "Unauthorized", "text/plain; charset=utf-8",
                 "/metrics needs 'Authorization: Bearer <token>' with the token of foakd's "
                 "--metrics_bearer_token_file (Prometheus: authorization.credentials_file)\n",
                 "WWW-Authenticate: Bearer realm=\"foakd metrics\"\r\n", !head);
    return 401;
  }
  SendResponse(conn, 200, "OK", kMetricsContentType, render_(), "", !head);
  return 200;
}

}  // namespace foak

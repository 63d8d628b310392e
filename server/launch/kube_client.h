// KubeClient: the few HTTPS requests foakd's Kubernetes launcher makes to the
// API server, over libcurl, as JSON.
//
// Why it is built the way it is:
//   * In a pod the API server is found and trusted the way every in-cluster
//     client does it (client-go's rest.InClusterConfig): the address from
//     KUBERNETES_SERVICE_HOST/PORT, the service account's CA bundle and its
//     bearer token. The token file is READ AGAIN FOR EVERY REQUEST: projected
//     service-account tokens expire (one hour by default) and the kubelet
//     rewrites the file well before that, so a token cached at start would
//     stop working after an hour.
//   * The peer certificate and host name are always verified and there is no
//     option to turn that off: the launcher sends a credential that can start
//     pods, and a client that may skip verification ends up skipping it in
//     production. Only https:// URLs are accepted, for the same reason.
//   * One curl easy handle per request: the launcher makes a handful of
//     requests a second at most, so connection reuse is not worth sharing a
//     handle across threads (curl handles are not thread-safe); the global
//     init runs once (std::call_once). Signals are off (CURLOPT_NOSIGNAL), as
//     a multi-threaded process needs.
//   * A failed exchange (no HTTP response at all) is an error Status naming
//     the URL and what failed: connecting, verifying the certificate, timing
//     out. An HTTP response of any status is a KubeResponse; the caller
//     decides what a 404 or 409 means, and KubeApiError turns the rest into a
//     Status carrying the message of the API's `Status` object (e.g. the RBAC
//     "jobs.batch is forbidden: User ... cannot create ...").
#ifndef FOAK_SERVER_LAUNCH_KUBE_CLIENT_H_
#define FOAK_SERVER_LAUNCH_KUBE_CLIENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace foak {

inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

struct KubeClientOptions {
  // Base URL of the API server, e.g. "https://10.96.0.1:443". Empty (the
  // default) = "https://" + $KUBERNETES_SERVICE_HOST + ":" +
  // $KUBERNETES_SERVICE_PORT, an IPv6 host put in brackets; Create fails when
  // those variables are unset (foakd is not running in a pod). https only.
  std::string api_server;
  // Bearer token, re-read on every request. Empty = send no Authorization
  // header (an API server behind an authenticating proxy).
  std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  // PEM bundle of the CA(s) that signed the API server's certificate. Empty =
  // the system's CA store (an API server with a publicly trusted
  // certificate). Either way the peer and the host name are verified.
  std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  int64_t connect_timeout_ms = 10000;  // TCP + TLS handshake
  int64_t request_timeout_ms = 30000;  // the whole exchange
  // A response larger than this fails the request (a runaway pod list).
  int64_t max_response_bytes = 64 << 20;
};

struct KubeResponse {
  int64_t http_status = 0;
  std::string body;
  bool ok() const { return http_status >= 200 && http_status < 300; }
};

// A Status for a response that was not what the caller wanted: "<what>:
// HTTP 403 Forbidden: <the message of the API's Status object, else the body
// cut to 512 bytes>". The code follows the HTTP status (403 ->
// PERMISSION_DENIED, 404 -> NOT_FOUND, 409 -> ALREADY_EXISTS, 400/422 ->
// INVALID_ARGUMENT, 401 -> UNAUTHENTICATED, 429/5xx -> UNAVAILABLE, else
// UNKNOWN).
absl::Status KubeApiError(const std::string& what, const KubeResponse& response);

// The `message` of a Kubernetes Status object in `body`, else the body
// itself, cut to 512 bytes (never empty: "(empty body)").
std::string KubeErrorMessage(const std::string& body);

// Percent-encodes `s` for a URL query value (everything but A-Z a-z 0-9 - _ . ~).
std::string UrlQueryEscape(const std::string& s);

class KubeClient {
 public:
  // INVALID_ARGUMENT naming the option: no API server (and no
  // KUBERNETES_SERVICE_HOST), a URL that is not https://, timeouts < 1 ms.
  // The token and CA files are not read here (the token is read per
  // request; a missing CA file fails the first request, naming it).
  static absl::StatusOr<std::unique_ptr<KubeClient>> Create(KubeClientOptions options);

  // `method` ("GET", "POST", "DELETE", ...) on `path_and_query` (starting
  // with "/", already escaped), with `body` sent as `content_type` when set.
  // Thread-safe. Errors (no HTTP response): UNAVAILABLE for connect,
  // timeout and TLS failures, FAILED_PRECONDITION for an unreadable token
  // file; each names the URL.
  absl::StatusOr<KubeResponse> Request(const std::string& method, const std::string& path_and_query,
                                       const std::optional<std::string>& body = std::nullopt,
                                       const std::string& content_type = "application/json");

  const std::string& api_server() const { return options_.api_server; }

 private:
  explicit KubeClient(KubeClientOptions options) : options_(std::move(options)) {}

  const KubeClientOptions options_;
};

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_KUBE_CLIENT_H_

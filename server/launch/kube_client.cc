#include "server/launch/kube_client.h"

#include <curl/curl.h>

#include <cstdlib>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "server/launch/process_util.h"

namespace foak {
namespace {

constexpr size_t kMaxErrorMessageBytes = 512;

// curl_global_init is process-wide; every KubeClient shares this one call.
void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Sink {
  std::string* body;
  size_t max_bytes;
  bool overflow = false;
};

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  Sink* sink = static_cast<Sink*>(user);
  const size_t n = size * count;
  if (sink->body->size() + n > sink->max_bytes) {
    sink->overflow = true;
    return 0;  // makes curl fail with CURLE_WRITE_ERROR
  }
  sink->body->append(data, n);
  return n;
}

// Frees what one request allocated, however it ends.
struct EasyRequest {
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  ~EasyRequest() {
    if (headers != nullptr) curl_slist_free_all(headers);
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

// What failed, in words a person can act on.
std::string DescribeCurlError(CURLcode code, const char* detail, const KubeClientOptions& options) {
  std::string what;
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
      what = "cannot resolve the host";
      break;
    case CURLE_COULDNT_CONNECT:
      what = "cannot connect";
      break;
    case CURLE_OPERATION_TIMEDOUT:
      what = absl::StrCat("timed out (connect timeout ", options.connect_timeout_ms,
                          " ms, request timeout ", options.request_timeout_ms, " ms)");
      break;
    case CURLE_PEER_FAILED_VERIFICATION:
      what = absl::StrCat(
          "TLS certificate verification failed: the API server's certificate is not signed by a "
          "CA in ",
          options.ca_file.empty() ? std::string("the system's CA store")
                                  : absl::StrCat("ca_file '", options.ca_file, "'"),
          " or does not name this host");
      break;
    case CURLE_SSL_CACERT_BADFILE:
      what = absl::StrCat("cannot read the CA bundle ca_file '", options.ca_file, "'");
      break;
    case CURLE_SSL_CONNECT_ERROR:
      what = "TLS handshake failed";
      break;
    case CURLE_UNSUPPORTED_PROTOCOL:
      what = "only https:// is allowed";
      break;
    default:
      what = curl_easy_strerror(code);
      break;
  }
  if (detail != nullptr && *detail != '\0') absl::StrAppend(&what, " (", detail, ")");
  return what;
}

}  // namespace

std::string KubeErrorMessage(const std::string& body) {
  std::string message;
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()) {
    message = parsed["message"].get<std::string>();
  } else {
    message = std::string(absl::StripAsciiWhitespace(body));
  }
  message = ValidUtf8(message);
  if (message.size() > kMaxErrorMessageBytes) {
    TruncateUtf8(&message, kMaxErrorMessageBytes);
    message += "...";
  }
  return message.empty() ? std::string("(empty body)") : message;
}

absl::Status KubeApiError(const std::string& what, const KubeResponse& response) {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  const char* name = "";
  switch (response.http_status) {
    case 400:
      code = absl::StatusCode::kInvalidArgument;
      name = " Bad Request";
      break;
    case 401:
      code = absl::StatusCode::kUnauthenticated;
      name = " Unauthorized";
      break;
    case 403:
      code = absl::StatusCode::kPermissionDenied;
      name = " Forbidden";
      break;
    case 404:
      code = absl::StatusCode::kNotFound;
      name = " Not Found";
      break;
    case 409:
      code = absl::StatusCode::kAlreadyExists;
      name = " Conflict";
      break;
    case 422:
      code = absl::StatusCode::kInvalidArgument;
      name = " Unprocessable Entity";
      break;
    case 429:
      code = absl::StatusCode::kUnavailable;
      name = " Too Many Requests";
      break;
    default:
      if (response.http_status >= 500) code = absl::StatusCode::kUnavailable;
      break;
  }
  return absl::Status(code, absl::StrCat(what, ": HTTP ", response.http_status, name, ": ",
                                         KubeErrorMessage(response.body)));
}

std::string UrlQueryEscape(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<KubeClient>> KubeClient::Create(KubeClientOptions options) {
  if (options.api_server.empty()) {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
      return absl::InvalidArgumentError(
          "api_server is empty and KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set "
          "(foakd is not running in a Kubernetes pod): set the API server URL, e.g. "
          "https://10.96.0.1:443");
    }
    const std::string h = host;
    options.api_server = absl::StrCat(
        "https://", h.find(':') != std::string::npos ? absl::StrCat("[", h, "]") : h, ":", port);
  }
  while (absl::EndsWith(options.api_server, "/")) options.api_server.pop_back();
  if (!absl::StartsWith(options.api_server, "https://") || options.api_server.size() <= 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "api_server = '", options.api_server,
        "'; expected an https:// URL (the launcher sends a bearer token, never in the clear)"));
  }
  if (options.connect_timeout_ms < 1 || options.request_timeout_ms < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect_timeout_ms and request_timeout_ms must be >= 1, got ",
                     options.connect_timeout_ms, " and ", options.request_timeout_ms));
  }
  if (options.max_response_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_response_bytes must be >= 1, got ", options.max_response_bytes));
  }
  InitCurlOnce();
  return std::unique_ptr<KubeClient>(new KubeClient(std::move(options)));
}

absl::StatusOr<KubeResponse> KubeClient::Request(const std::string& method,
                                                 const std::string& path_and_query,
                                                 const std::optional<std::string>& body,
                                                 const std::string& content_type) {
  const std::string url = options_.api_server + path_and_query;
  const std::string where = absl::StrCat(method, " ", url);
  std::string token;
  if (!options_.token_file.empty()) {
    absl::StatusOr<std::string> read = ReadFileToString(options_.token_file);
    if (!read.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": cannot read the service account token token_file '",
                       options_.token_file, "': ", read.status().message()));
    }
    token = std::string(absl::StripAsciiWhitespace(*read));
  }

  // Declared before `req`, whose destructor runs curl_easy_cleanup: curl
  // holds pointers to both until then.
  KubeResponse response;
  Sink sink{&response.body, static_cast<size_t>(options_.max_response_bytes)};
  char error[CURL_ERROR_SIZE] = {0};
  EasyRequest req;
  req.curl = curl_easy_init();
  if (req.curl == nullptr)
    return absl::InternalError(absl::StrCat(where, ": curl_easy_init failed"));
  CURL* curl = req.curl;
  req.headers = curl_slist_append(req.headers, "Accept: application/json");
  if (!token.empty()) {
    req.headers =
        curl_slist_append(req.headers, absl::StrCat("Authorization: Bearer ", token).c_str());
  }
  if (body.has_value()) {
    req.headers =
        curl_slist_append(req.headers, absl::StrCat("Content-Type: ", content_type).c_str());
    // No "Expect: 100-continue" round trip before a large body.
    req.headers = curl_slist_append(req.headers, "Expect:");
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
#else
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "GET") curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  if (body.has_value()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, req.headers);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout_ms));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  const CURLcode rc = curl_easy_perform(curl);
  if (sink.overflow) {
    return absl::ResourceExhaustedError(absl::StrCat(
        where, ": the response is larger than max_response_bytes = ", options_.max_response_bytes));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(where, ": ", DescribeCurlError(rc, error, options_)));
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  response.http_status = status;
  return response;
}

}  // namespace foak

// A minimal HTTP/1.1 client for tests, on plain POSIX sockets: one request,
// `Connection: close`, read to EOF. It talks to foakd's /metrics endpoint and
// to Prometheus's HTTP API without pulling an HTTP client library into the
// tests, and it checks exactly what a scraper would see (status line,
// headers, body).
//
// Handles Content-Length bodies, bodies that end at EOF, and
// `Transfer-Encoding: chunked` (Go's net/http, i.e. Prometheus, uses it for
// larger answers). No TLS, no redirects, no keep-alive.
#ifndef FOAK_TESTS_TESTING_HTTP_GET_H_
#define FOAK_TESTS_TESTING_HTTP_GET_H_

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace foak::testing {

struct HttpResponse {
  int status_code = 0;
  // In the order received; names as sent (compare them with Header()).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header called `name` (case-insensitive), or "" when absent.
  std::string Header(absl::string_view name) const {
    for (const auto& [key, value] : headers) {
      if (absl::EqualsIgnoreCase(key, name)) return value;
    }
    return "";
  }
};

namespace http_internal {

inline absl::Status Errno(absl::string_view what, const std::string& where) {
  return absl::UnavailableError(absl::StrCat(what, " ", where, ": ", std::strerror(errno)));
}

// Decodes a chunked body ("<hex size>[;ext]\r\n<data>\r\n ... 0\r\n\r\n").
inline absl::StatusOr<std::string> Dechunk(absl::string_view in) {
  std::string out;
  while (true) {
    const size_t eol = in.find("\r\n");
    if (eol == absl::string_view::npos) return absl::DataLossError("chunked body: no chunk size line");
    absl::string_view size_text = in.substr(0, eol);
    size_text = size_text.substr(0, size_text.find(';'));
    uint64_t size = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(size_text), &size)) {
      return absl::DataLossError(absl::StrCat("chunked body: bad chunk size '", size_text, "'"));
    }
    in.remove_prefix(eol + 2);
    if (size == 0) return out;
    if (in.size() < size) return absl::DataLossError("chunked body: truncated chunk");
    out.append(in.data(), size);
    in.remove_prefix(size);
    if (in.substr(0, 2) == "\r\n") in.remove_prefix(2);
  }
}

// Splits a whole response (read to EOF) into status, headers and body.
// `expect_body` is false for HEAD requests.
inline absl::StatusOr<HttpResponse> ParseResponse(const std::string& raw, bool expect_body) {
  const size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    return absl::DataLossError(absl::StrCat("HTTP response has no end of headers; got ", raw.size(),
                                            " bytes: '", raw.substr(0, 200), "'"));
  }
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, header_end), "\r\n");
  HttpResponse response;
  // "HTTP/1.1 200 OK"
  std::vector<std::string> status_parts = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_parts.size() < 2 || !absl::StartsWith(status_parts[0], "HTTP/") ||
      !absl::SimpleAtoi(status_parts[1], &response.status_code)) {
    return absl::DataLossError(absl::StrCat("bad HTTP status line '", lines[0], "'"));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    response.headers.emplace_back(lines[i].substr(0, colon),
                                  std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  std::string body = raw.substr(header_end + 4);
  if (!expect_body) {
    body.clear();  // a HEAD answer's Content-Length describes the GET body
  } else if (absl::EqualsIgnoreCase(response.Header("Transfer-Encoding"), "chunked")) {
    absl::StatusOr<std::string> decoded = Dechunk(body);
    if (!decoded.ok()) return decoded.status();
    body = *std::move(decoded);
  } else if (const std::string length = response.Header("Content-Length"); !length.empty()) {
    size_t n = 0;
    if (!absl::SimpleAtoi(length, &n)) {
      return absl::DataLossError(absl::StrCat("bad Content-Length '", length, "'"));
    }
    if (body.size() < n) {
      return absl::DataLossError(
          absl::StrCat("body has ", body.size(), " bytes, Content-Length says ", n));
    }
    body.resize(n);
  }
  response.body = std::move(body);
  return response;
}

}  // namespace http_internal

// Sends `method path` to host:port with `body` (if any) and `extra_headers`
// (whole lines, each ending in "\r\n") and returns the
// response. UNAVAILABLE when the connection fails or times out (per socket
// operation, `timeout_ms`), DATA_LOSS when the answer is not HTTP.
inline absl::StatusOr<HttpResponse> HttpRequest(const std::string& method, const std::string& host,
                                                int port, const std::string& path,
                                                const std::string& body = "",
                                                const std::string& content_type = "",
                                                int timeout_ms = 10000,
                                                const std::string& extra_headers = "") {
  const std::string where = absl::StrCat(host, ":", port);
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  const int gai = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses);
  if (gai != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", where, ": ", gai_strerror(gai)));
  }
  int fd = -1;
  absl::Status last = absl::UnavailableError(absl::StrCat("no address for ", where));
  for (addrinfo* a = addresses; a != nullptr; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) {
      last = http_internal::Errno("socket for", where);
      continue;
    }
    timeval tv;
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // also bounds connect() on Linux
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    last = http_internal::Errno("connect to", where);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(addresses);
  if (fd < 0) return last;

  std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: ", where,
                                     "\r\nUser-Agent: foak-test\r\nAccept: */*\r\nConnection: close\r\n",
                                     extra_headers);
  if (!body.empty() || (method != "GET" && method != "HEAD")) {
    absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
    if (!content_type.empty()) absl::StrAppend(&request, "Content-Type: ", content_type, "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status s = http_internal::Errno("send to", where);
      close(fd);
      return s;
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buffer[16384];
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = http_internal::Errno("recv from", where);
      close(fd);
      return s;
    }
    if (n == 0) break;
    raw.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return http_internal::ParseResponse(raw, /*expect_body=*/method != "HEAD");
}

// GET http://host:port/path.
inline absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port, const std::string& path,
                                            int timeout_ms = 10000) {
  return HttpRequest("GET", host, port, path, "", "", timeout_ms);
}

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_HTTP_GET_H_

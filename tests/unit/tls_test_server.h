// A tiny HTTPS/1.1 server for tests, on OpenSSL directly (Debian's civetweb
// has no TLS): 127.0.0.1, a port the kernel picks, one thread per
// connection, one request per connection ("Connection: close"), and a
// certificate made at test time (MakeTestPki), so a client can be tested
// with real certificate verification: its CA bundle either trusts the
// server's CA or, for the negative test, another one.
#ifndef FOAK_TESTS_UNIT_TLS_TEST_SERVER_H_
#define FOAK_TESTS_UNIT_TLS_TEST_SERVER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace foak {

// A CA and a server certificate it signed, for CN "127.0.0.1" with
// subjectAltName IP:127.0.0.1, valid from an hour ago for a day. PEM. With
// `server_dns` the server certificate names that host instead (CN and
// subjectAltName DNS:<server_dns>) and not 127.0.0.1: a client dialling
// 127.0.0.1 must then override the name it checks (a server-name override).
struct TestPki {
  std::string ca_cert_pem;
  std::string server_cert_pem;
  std::string server_key_pem;
  std::string ca_key_pem;  // to issue client certificates (MakeTestClientCert)
};
absl::StatusOr<TestPki> MakeTestPki(const std::string& ca_name,
                                    const std::string& server_dns = "");

// A client certificate (extendedKeyUsage clientAuth) for `cn`, signed by
// `pki`'s CA, for mutual TLS. PEM.
struct TestClientCert {
  std::string cert_pem;
  std::string key_pem;
};
absl::StatusOr<TestClientCert> MakeTestClientCert(const TestPki& pki, const std::string& cn);

struct HttpRequest {
  std::string method;
  std::string path;                                 // without the query, still percent-encoded
  std::string query;                                // after '?', raw
  std::map<std::string, std::string> query_params;  // decoded
  std::map<std::string, std::string> headers;       // lower-case names
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Percent-decoding of a query component ('+' stays '+').
std::string UrlDecode(const std::string& s);

class TlsTestServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  static absl::StatusOr<std::unique_ptr<TlsTestServer>> Start(const TestPki& pki, Handler handler);
  ~TlsTestServer();  // stops accepting, joins every connection thread

  int port() const { return port_; }
  std::string url() const;  // https://127.0.0.1:<port>
  // Connections whose TLS handshake failed (e.g. the client refused the
  // certificate).
  int failed_handshakes() const { return failed_handshakes_.load(); }

 private:
  TlsTestServer() = default;
  void AcceptLoop();
  void Serve(int fd);

  Handler handler_;
  void* ctx_ = nullptr;  // SSL_CTX
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> failed_handshakes_{0};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<std::thread> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace foak

#endif  // FOAK_TESTS_UNIT_TLS_TEST_SERVER_H_

#include "tests/unit/tls_test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace foak {
namespace {

constexpr size_t kMaxRequestBytes = 8 << 20;

std::string OpenSslError(const std::string& what) {
  std::string out = what;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&out, ": ", buf);
  }
  return out;
}

std::string ToPem(X509* cert, EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (cert != nullptr) PEM_write_bio_X509(bio, cert);
  if (key != nullptr) PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` named `cn`, signed by `issuer_key` (itself when
// `issuer` is null: a self-signed CA); a server's (subjectAltName `san`), or
// with `client` a client's.
X509* MakeCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
               long serial, bool client = false, const std::string& san = "IP:127.0.0.1") {
  const bool ca = issuer == nullptr;
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, ca ? name : X509_get_subject_name(issuer));
  X509* signer = ca ? cert : issuer;
  bool ok = AddExtension(cert, signer, NID_basic_constraints,
                         ca ? "critical,CA:TRUE" : "critical,CA:FALSE") &&
            AddExtension(cert, signer, NID_key_usage,
                         ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") &&
            AddExtension(cert, signer, NID_subject_key_identifier, "hash");
  if (ok && !ca) {
    ok = AddExtension(cert, signer, NID_authority_key_identifier, "keyid") &&
         AddExtension(cert, signer, NID_ext_key_usage, client ? "clientAuth" : "serverAuth") &&
         (client || AddExtension(cert, signer, NID_subject_alt_name, san.c_str()));
  }
  if (!ok || X509_sign(cert, ca ? key : issuer_key, EVP_sha256()) == 0) {
    X509_free(cert);
    return nullptr;
  }
  return cert;
}

bool SendAll(SSL* ssl, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const int n = SSL_write(ssl, data.data() + off, static_cast<int>(data.size() - off));
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 422:
      return "Unprocessable Entity";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const std::string& ca_name, const std::string& server_dns) {
  EVP_PKEY* ca_key = EVP_EC_gen("P-256");
  EVP_PKEY* server_key = EVP_EC_gen("P-256");
  if (ca_key == nullptr || server_key == nullptr) {
    return absl::InternalError(OpenSslError("EVP_EC_gen"));
  }
  X509* ca = MakeCert(ca_key, ca_name, nullptr, nullptr, 1);
  X509* server = ca == nullptr ? nullptr
                 : server_dns.empty()
                     ? MakeCert(server_key, "127.0.0.1", ca, ca_key, 2)
                     : MakeCert(server_key, server_dns, ca, ca_key, 2, /*client=*/false,
                                "DNS:" + server_dns);
  TestPki pki;
  if (server != nullptr) {
    pki.ca_cert_pem = ToPem(ca, nullptr);
    pki.server_cert_pem = ToPem(server, nullptr);
    pki.server_key_pem = ToPem(nullptr, server_key);
    pki.ca_key_pem = ToPem(nullptr, ca_key);
  }
  X509_free(server);
  X509_free(ca);
  EVP_PKEY_free(server_key);
  EVP_PKEY_free(ca_key);
  if (pki.ca_cert_pem.empty()) return absl::InternalError(OpenSslError("making the certificates"));
  return pki;
}

absl::StatusOr<TestClientCert> MakeTestClientCert(const TestPki& pki, const std::string& cn) {
  BIO* ca_bio = BIO_new_mem_buf(pki.ca_cert_pem.data(), static_cast<int>(pki.ca_cert_pem.size()));
  X509* ca = PEM_read_bio_X509(ca_bio, nullptr, nullptr, nullptr);
  BIO_free(ca_bio);
  BIO* key_bio = BIO_new_mem_buf(pki.ca_key_pem.data(), static_cast<int>(pki.ca_key_pem.size()));
  EVP_PKEY* ca_key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  EVP_PKEY* client_key = EVP_EC_gen("P-256");
  X509* cert = ca != nullptr && ca_key != nullptr && client_key != nullptr
                   ? MakeCert(client_key, cn, ca, ca_key, 3, /*client=*/true)
                   : nullptr;
  TestClientCert out;
  if (cert != nullptr) {
    out.cert_pem = ToPem(cert, nullptr);
    out.key_pem = ToPem(nullptr, client_key);
  }
  X509_free(cert);
  X509_free(ca);
  EVP_PKEY_free(client_key);
  EVP_PKEY_free(ca_key);
  if (out.cert_pem.empty()) return absl::InternalError(OpenSslError("making a client certificate"));
  return out;
}

std::string UrlDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int v = 0;
    if (s[i] == '%' && i + 2 < s.size() && absl::ascii_isxdigit(s[i + 1]) &&
        absl::ascii_isxdigit(s[i + 2]) && absl::SimpleHexAtoi(s.substr(i + 1, 2), &v)) {
      out.push_back(static_cast<char>(v));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<TlsTestServer>> TlsTestServer::Start(const TestPki& pki,
                                                                    Handler handler) {
  std::unique_ptr<TlsTestServer> server(new TlsTestServer());
  server->handler_ = std::move(handler);
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  server->ctx_ = ctx;
  BIO* cert_bio =
      BIO_new_mem_buf(pki.server_cert_pem.data(), static_cast<int>(pki.server_cert_pem.size()));
  BIO* key_bio =
      BIO_new_mem_buf(pki.server_key_pem.data(), static_cast<int>(pki.server_key_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  const bool loaded = cert != nullptr && key != nullptr &&
                      SSL_CTX_use_certificate(ctx, cert) == 1 &&
                      SSL_CTX_use_PrivateKey(ctx, key) == 1;
  X509_free(cert);
  EVP_PKEY_free(key);
  BIO_free(cert_bio);
  BIO_free(key_bio);
  if (!loaded) return absl::InternalError(OpenSslError("loading the server certificate"));

  server->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (server->listen_fd_ < 0 ||
      ::bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(server->listen_fd_, 64) != 0 ||
      ::getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError("cannot listen on 127.0.0.1");
  }
  server->port_ = ntohs(addr.sin_port);
  TlsTestServer* self = server.get();
  server->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  return server;
}

TlsTestServer::~TlsTestServer() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (std::thread& t : connections) t.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
}

std::string TlsTestServer::url() const { return absl::StrCat("https://127.0.0.1:", port_); }

void TlsTestServer::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    absl::MutexLock lock(&mu_);
    connections_.emplace_back([this, fd] { Serve(fd); });
  }
}

void TlsTestServer::Serve(int fd) {
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) {
    ++failed_handshakes_;
    ERR_clear_error();
    SSL_free(ssl);
    ::close(fd);
    return;
  }
  std::string data;
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  HttpRequest request;
  bool complete = false;
  char buf[16384];
  while (data.size() < kMaxRequestBytes) {
    const int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos) {
      header_end = data.find("\r\n\r\n");
      if (header_end == std::string::npos) continue;
      std::vector<std::string> lines = absl::StrSplit(data.substr(0, header_end), "\r\n");
      std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
      if (first.size() < 2) break;
      request.method = first[0];
      const size_t q = first[1].find('?');
      request.path = first[1].substr(0, q);
      if (q != std::string::npos) {
        request.query = first[1].substr(q + 1);
        for (absl::string_view kv : absl::StrSplit(request.query, '&', absl::SkipEmpty())) {
          const std::string pair(kv);
          const size_t eq = pair.find('=');
          request.query_params[UrlDecode(pair.substr(0, eq))] =
              eq == std::string::npos ? "" : UrlDecode(pair.substr(eq + 1));
        }
      }
      for (size_t i = 1; i < lines.size(); ++i) {
        const size_t colon = lines[i].find(':');
        if (colon == std::string::npos) continue;
        const std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
        request.headers[name] = std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      }
      auto cl = request.headers.find("content-length");
      if (cl != request.headers.end() && !absl::SimpleAtoi(cl->second, &content_length)) break;
    }
    if (data.size() >= header_end + 4 + content_length) {
      request.body = data.substr(header_end + 4, content_length);
      complete = true;
      break;
    }
  }
  if (complete) {
    const HttpResponse response = handler_(request);
    SendAll(ssl, absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status),
                              "\r\nContent-Type: ", response.content_type,
                              "\r\nContent-Length: ", response.body.size(),
                              "\r\nConnection: close\r\n\r\n", response.body));
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  ::close(fd);
}

}  // namespace foak

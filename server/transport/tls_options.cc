#include "server/transport/tls_options.h"

#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak {
namespace {

std::string Absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char buf[4096];
  if (getcwd(buf, sizeof buf) == nullptr) return path;
  return JoinPath(buf, path);
}

absl::Status Bad(const std::string& flag, const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(flag, " = '", path, "': ", what));
}

// The file's text; INVALID_ARGUMENT naming the flag when it is unset or
// unreadable.
absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path,
                                    const std::string& needed_because) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " is required ", needed_because));
  }
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return Bad(flag, path, std::string(text.status().message()));
  return text;
}

// Certificates in `pem` (at least one), as OpenSSL reads them.
absl::Status CheckCertificates(const std::string& flag, const std::string& path,
                               const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  int count = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    ++count;
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();  // the read that ended the loop
  if (count == 0) {
    return Bad(flag, path, "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)");
  }
  return absl::OkStatus();
}

// A private key in `key_pem` that belongs to the first certificate of
// `cert_pem`.
absl::Status CheckKeyPair(const std::string& cert_flag, const std::string& cert_path,
                          const std::string& cert_pem, const std::string& key_flag,
                          const std::string& key_path, const std::string& key_pem) {
  RETURN_IF_ERROR(CheckCertificates(cert_flag, cert_path, cert_pem));
  BIO* key_bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  if (key == nullptr) {
    ERR_clear_error();
    return Bad(key_flag, key_path,
               "no unencrypted PEM private key in it (expected -----BEGIN PRIVATE KEY----- or "
               "-----BEGIN EC/RSA PRIVATE KEY-----)");
  }
  BIO* cert_bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO_free(cert_bio);
  const bool match = cert != nullptr && X509_check_private_key(cert, key) == 1;
  X509_free(cert);
  EVP_PKEY_free(key);
  ERR_clear_error();
  if (!match) {
    return Bad(key_flag, key_path,
               absl::StrCat("this key does not belong to the certificate of ", cert_flag, " = '",
                            cert_path, "'; give the key the certificate was issued for"));
  }
  return absl::OkStatus();
}

// --worker_tls_server_name: a host name or an IP address, as a certificate
// names it (letters, digits, '.', '-', ':' for IPv6; '*' is a certificate's
// wildcard, never a name one dials).
absl::Status CheckServerName(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 253 &&
                  name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789.-:") == std::string::npos;
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "--worker_tls_server_name = '", name,
      "': expected a host name or an IP address as foakd's certificate names it (letters, "
      "digits, '.', '-', ':'), e.g. foakd.foak.svc"));
}

// Whether the first certificate of `cert_pem` is valid for `name` (a DNS
// name or an IP address), as a TLS client checks it.
bool CertificateNames(const std::string& cert_pem, const std::string& name) {
  BIO* bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  const bool named = cert != nullptr && (X509_check_ip_asc(cert, name.c_str(), 0) == 1 ||
                                         X509_check_host(cert, name.data(), name.size(), 0,
                                                         nullptr) == 1);
  X509_free(cert);
  ERR_clear_error();
  return named;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const FoakdTlsOptions& tls) {
  if (!tls.enabled()) {
    if (!tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca needs --tls_cert and --tls_key: client certificates are asked for in "
          "the TLS handshake");
    }
    return grpc::InsecureServerCredentials();
  }
  const std::string because = "with TLS (--tls_cert and --tls_key go together)";
  ASSIGN_OR_RETURN(std::string cert, ReadPem("--tls_cert", tls.cert_file, because));
  ASSIGN_OR_RETURN(std::string key, ReadPem("--tls_key", tls.key_file, because));
  RETURN_IF_ERROR(CheckKeyPair("--tls_cert", tls.cert_file, cert, "--tls_key", tls.key_file, key));
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({key, cert});
  if (!tls.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(std::string ca, ReadPem("--tls_client_ca", tls.client_ca_file, ""));
    RETURN_IF_ERROR(CheckCertificates("--tls_client_ca", tls.client_ca_file, ca));
    options.pem_root_certs = ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> WorkerTlsEnv(
    const FoakdTlsOptions& tls) {
  std::vector<std::pair<std::string, std::string>> env;
  if (!tls.enabled()) {
    if (!tls.worker_ca_file.empty() || !tls.worker_cert_file.empty() ||
        !tls.worker_key_file.empty() || !tls.worker_server_name.empty()) {
      return absl::InvalidArgumentError(
          "--worker_tls_ca, --worker_tls_cert, --worker_tls_key and --worker_tls_server_name "
          "apply only with --tls_cert and --tls_key (workers report over plaintext otherwise)");
    }
    return env;
  }
  ASSIGN_OR_RETURN(std::string ca,
                   ReadPem("--worker_tls_ca", tls.worker_ca_file,
                           "with --tls_cert: the CA that signed foakd's certificate, which the "
                           "workers verify it with"));
  RETURN_IF_ERROR(CheckCertificates("--worker_tls_ca", tls.worker_ca_file, ca));
  env.emplace_back("FOAK_COORDINATOR_TLS_CA", Absolute(tls.worker_ca_file));
  if (!tls.worker_server_name.empty()) {
    RETURN_IF_ERROR(CheckServerName(tls.worker_server_name));
    ASSIGN_OR_RETURN(std::string cert, ReadPem("--tls_cert", tls.cert_file, ""));
    if (!CertificateNames(cert, tls.worker_server_name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--worker_tls_server_name = '", tls.worker_server_name,
          "': the certificate of --tls_cert = '", tls.cert_file,
          "' does not name it (neither a subjectAltName DNS or IP entry nor, without those, its "
          "CN), so every worker's handshake would fail; give a name the certificate carries"));
    }
    env.emplace_back("FOAK_COORDINATOR_TLS_SERVER_NAME", tls.worker_server_name);
  }
  if (tls.client_ca_file.empty()) {
    if (!tls.worker_cert_file.empty() || !tls.worker_key_file.empty()) {
      return absl::InvalidArgumentError(
          "--worker_tls_cert and --worker_tls_key apply only with --tls_client_ca (without it "
          "foakd asks no client for a certificate)");
    }
    return env;
  }
  const std::string because =
      "with --tls_client_ca: every client presents a certificate, foakd's workers too";
  ASSIGN_OR_RETURN(std::string cert, ReadPem("--worker_tls_cert", tls.worker_cert_file, because));
  ASSIGN_OR_RETURN(std::string key, ReadPem("--worker_tls_key", tls.worker_key_file, because));
  RETURN_IF_ERROR(CheckKeyPair("--worker_tls_cert", tls.worker_cert_file, cert, "--worker_tls_key",
                               tls.worker_key_file, key));
  env.emplace_back("FOAK_COORDINATOR_TLS_CERT", Absolute(tls.worker_cert_file));
  env.emplace_back("FOAK_COORDINATOR_TLS_KEY", Absolute(tls.worker_key_file));
  return env;
}

}  // namespace foak

// TLS for foakd's gRPC port and for the workers' channel back to it.
//
// One port serves everyone (clients, workers, health checks), so one policy:
// with cert_file and key_file foakd speaks TLS only; with client_ca_file as
// well every connection must present a certificate that CA signed (mutual
// TLS), workers included. Workers then get what they need through their
// environment (FOAK_COORDINATOR_TLS_CA, _CERT, _KEY: file paths as the
// workers see them, which with the Kubernetes launcher means on the shared
// volume). Everything is checked when foakd starts, so a wrong path or a key
// that does not match its certificate stops foakd with the flag's name, not
// the first handshake hours later.
#ifndef FOAK_SERVER_TRANSPORT_TLS_OPTIONS_H_
#define FOAK_SERVER_TRANSPORT_TLS_OPTIONS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

// PEM files; all empty = plaintext (the local demo on loopback).
struct FoakdTlsOptions {
  std::string cert_file;       // --tls_cert: foakd's certificate (chain)
  std::string key_file;        // --tls_key: its private key
  std::string client_ca_file;  // --tls_client_ca: require client certificates it signed
  // What foakd's workers use (required with TLS): the CA that signed
  // cert_file, and with client_ca_file a client certificate and key.
  std::string worker_ca_file;    // --worker_tls_ca
  std::string worker_cert_file;  // --worker_tls_cert
  std::string worker_key_file;   // --worker_tls_key
  // --worker_tls_server_name: the name workers check foakd's certificate
  // against instead of the host they dial (FOAK_COORDINATOR_TLS_SERVER_NAME),
  // for workers that reach foakd by an IP or a Service name its certificate
  // does not carry. Empty = the dialled host, as usual.
  std::string worker_server_name;

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// Insecure credentials when TLS is off; else the checked files as TLS
// credentials. INVALID_ARGUMENT naming the flag and the file otherwise.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const FoakdTlsOptions& tls);

// The workers' extra environment: nothing without TLS; else
// FOAK_COORDINATOR_TLS_CA and, with a client CA, FOAK_COORDINATOR_TLS_CERT
// and FOAK_COORDINATOR_TLS_KEY (absolute paths), and with a server-name
// override FOAK_COORDINATOR_TLS_SERVER_NAME. Checks the files as
// MakeServerCredentials does, and that --tls_cert carries the override's name
// (else every worker's handshake would fail).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> WorkerTlsEnv(
    const FoakdTlsOptions& tls);

}  // namespace foak

#endif  // FOAK_SERVER_TRANSPORT_TLS_OPTIONS_H_

#include "client/connection.h"

#include <chrono>
#include <cstdint>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/errors.h"
#include "common/file_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace foak::client {
namespace {

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMicroseconds(d);
}

bool IsRetryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const Connection::Options& options) {
  grpc::ChannelArguments args;
  if (options.tls != nullptr && !options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(
      target, options.tls != nullptr ? options.tls : grpc::InsecureChannelCredentials(), args);
}

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFileToString(path);
  if (!pem.ok()) return UsageError(absl::StrCat(flag, " ", path, ": ", pem.status().message()));
  if (pem->find("-----BEGIN ") == std::string::npos) {
    return UsageError(absl::StrCat(flag, " ", path, ": not a PEM file (no -----BEGIN line)"));
  }
  return pem;
}

}  // namespace

Connection::Connection(const std::string& target, Options options)
    : target_(target),
      options_(options),
      channel_(MakeChannel(target, options)),
      jobs_(foak::v1::JobService::NewStub(channel_)),
      files_(foak::v1::FileService::NewStub(channel_)) {}

void Connection::Prepare(grpc::ClientContext* context) const {
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
}

void Connection::SetDeadline(grpc::ClientContext* context) const {
  Prepare(context);
  context->set_deadline(DeadlineAfter(options_.timeout));
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeTlsCredentials(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return UsageError(
        "--tls-cert and --tls-key go together (the client certificate and its key)");
  }
  grpc::SslCredentialsOptions tls;
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem("--tls-ca", ca_file);
    if (!ca.ok()) return ca.status();
    tls.pem_root_certs = *std::move(ca);
  }
  if (!cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem("--tls-cert", cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem("--tls-key", key_file);
    if (!key.ok()) return key.status();
    tls.pem_cert_chain = *std::move(cert);
    tls.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(tls);
}

absl::Status Connection::Call(bool retryable,
                              const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  absl::Duration backoff = options_.retry_backoff;
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = call(&context);
    if (status.ok() || !retryable || !IsRetryable(status) || attempt >= options_.max_retries) {
      return ServerError(status);
    }
    absl::SleepFor(backoff);
    backoff *= 2;
  }
}

std::string NewRequestId() {
  std::random_device random;  // /dev/urandom on Linux
  uint8_t b[16];
  for (int i = 0; i < 16; i += 4) {
    const uint32_t r = random();
    for (int k = 0; k < 4; ++k) b[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string hex;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) hex += '-';
    absl::StrAppendFormat(&hex, "%02x", b[i]);
  }
  return hex;
}

}  // namespace foak::client

#include "client/connection.h"

#include <chrono>
#include <cstdint>
#include <random>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/errors.h"
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

}  // namespace

Connection::Connection(const std::string& target, Options options)
    : target_(target),
      options_(options),
      channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
      jobs_(foak::v1::JobService::NewStub(channel_)),
      files_(foak::v1::FileService::NewStub(channel_)) {}

void Connection::SetDeadline(grpc::ClientContext* context) const {
  context->set_deadline(DeadlineAfter(options_.timeout));
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

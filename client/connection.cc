#include "client/connection.h"

#include <chrono>

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

}  // namespace foak::client

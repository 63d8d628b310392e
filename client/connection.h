// The channel to foakd and the retry policy of foakctl's unary calls.
//
// Every unary call gets its own deadline (--timeout). Calls that are safe to
// repeat (reads, and CreateJob because its request_id makes a repeat return
// the job created the first time) are retried on UNAVAILABLE and
// DEADLINE_EXCEEDED with exponential backoff; CancelJob, DeleteFile and
// uploads are sent once. The channel is insecure until TLS arrives.
#ifndef FOAK_CLIENT_CONNECTION_H_
#define FOAK_CLIENT_CONNECTION_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "foak/v1/file_service.grpc.pb.h"
#include "foak/v1/job_service.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/channel.h"

namespace foak::client {

class Connection {
 public:
  struct Options {
    // Deadline of each unary call (--timeout).
    absl::Duration timeout = absl::Seconds(30);
    // Retries of a retryable call after the first attempt.
    int max_retries = 3;
    // Wait before the first retry; doubles for each further one.
    absl::Duration retry_backoff = absl::Milliseconds(500);
  };

  // `target` is "host:port". Creating the channel does not connect yet.
  Connection(const std::string& target, Options options);

  const std::string& target() const { return target_; }
  const Options& options() const { return options_; }
  foak::v1::JobService::Stub* jobs() { return jobs_.get(); }
  foak::v1::FileService::Stub* files() { return files_.get(); }

  // Sets the per-call deadline on `context`.
  void SetDeadline(grpc::ClientContext* context) const;

  // Runs `call` with a fresh context (deadline set) and converts its status
  // with ServerError(). When `retryable`, UNAVAILABLE / DEADLINE_EXCEEDED are
  // retried up to options().max_retries times.
  absl::Status Call(bool retryable, const std::function<grpc::Status(grpc::ClientContext*)>& call);

 private:
  std::string target_;
  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<foak::v1::JobService::Stub> jobs_;
  std::unique_ptr<foak::v1::FileService::Stub> files_;
};

// A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx": the
// request_id of a CreateJob that may be retried.
std::string NewRequestId();

}  // namespace foak::client

#endif  // FOAK_CLIENT_CONNECTION_H_

// The channel to foakd and the retry policy of foakctl's unary calls.
//
// Every unary call gets its own deadline (--timeout). Calls that are safe to
// repeat (reads, and CreateJob because its request_id makes a repeat return
// the job created the first time) are retried on UNAVAILABLE and
// DEADLINE_EXCEEDED with exponential backoff; CancelJob, DeleteFile and
// uploads are sent once.
//
// Security (foakd --tls_cert, --tls_client_ca, --auth_tokens_file): the
// channel speaks TLS when Options::tls is set (MakeTlsCredentials reads the
// PEM files), and every call, unary or stream, carries
// "authorization: Bearer <token>" when Options::token is set (Prepare).
#ifndef FOAK_CLIENT_CONNECTION_H_
#define FOAK_CLIENT_CONNECTION_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "foak/v1/file_service.grpc.pb.h"
#include "foak/v1/job_service.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"

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
    // TLS credentials (MakeTlsCredentials); null = a plaintext channel.
    std::shared_ptr<grpc::ChannelCredentials> tls;
    // The name foakd's certificate must carry, when it is not the host of
    // the target (e.g. through a port-forward); empty = the target's host.
    std::string tls_server_name;
    // The API token (foakd --auth_tokens_file); empty = none sent.
    std::string token;
  };

  // `target` is "host:port". Creating the channel does not connect yet.
  Connection(const std::string& target, Options options);

  const std::string& target() const { return target_; }
  const Options& options() const { return options_; }
  foak::v1::JobService::Stub* jobs() { return jobs_.get(); }
  foak::v1::FileService::Stub* files() { return files_.get(); }

  // Adds the bearer token (if any) to `context`: every call does this.
  void Prepare(grpc::ClientContext* context) const;
  // Prepare, and sets the per-call deadline on `context`.
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

// TLS credentials from PEM files: `ca_file` verifies foakd's certificate
// (empty: the system's roots); `cert_file` and `key_file`, both or neither,
// are the client certificate foakd asks for with --tls_client_ca. A usage
// error (INVALID_ARGUMENT) naming the flag when a file is unreadable or not PEM.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeTlsCredentials(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file);

// A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx": the
// request_id of a CreateJob that may be retried.
std::string NewRequestId();

}  // namespace foak::client

#endif  // FOAK_CLIENT_CONNECTION_H_

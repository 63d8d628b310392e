// How foakctl's errors become exit codes scripts can rely on.
//
// One absl::Status carries every error, but the same canonical code means
// different things depending on who produced it: INVALID_ARGUMENT from a flag
// or a job file parsed here is a usage error (exit 2), while INVALID_ARGUMENT
// from foakd means the server refused the request (exit 7). ServerError()
// marks statuses that came over gRPC with a payload so ExitCodeFor() can tell
// the two apart without string matching.
#ifndef FOAK_CLIENT_ERRORS_H_
#define FOAK_CLIENT_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace foak::client {

// Exit codes (documented in client/README.md and `foakctl --help`).
enum ExitCode : int {
  kExitOk = 0,            // success; for watch: the job SUCCEEDED
  kExitError = 1,         // any other error
  kExitUsage = 2,         // bad flags, arguments or job file
  kExitNotFound = 3,      // the server has no such job or file
  kExitJobFailed = 4,     // the watched job ended FAILED
  kExitJobCancelled = 5,  // the watched job ended CANCELLED
  kExitUnreachable = 6,   // foakd unreachable (UNAVAILABLE / DEADLINE_EXCEEDED)
  kExitRefused = 7,       // INVALID_ARGUMENT / ALREADY_EXISTS / FAILED_PRECONDITION
};

// A local usage error: a bad flag, a missing argument, an unreadable or
// malformed job file. Exit code 2.
absl::Status UsageError(absl::string_view message);

// Converts a gRPC status to an absl::Status marked as coming from the server.
// The message is kept as the server wrote it (it names the field).
absl::Status ServerError(const grpc::Status& status);

bool IsServerError(const absl::Status& status);

// The process exit code for a failed command.
int ExitCodeFor(const absl::Status& status);

// A line of advice for the user after the error message, or "" when there is
// nothing useful to add. `server` is the address foakctl talked to; `tls`
// whether it spoke TLS to it.
std::string HintFor(const absl::Status& status, absl::string_view server, bool tls = false);

}  // namespace foak::client

#endif  // FOAK_CLIENT_ERRORS_H_

#include "client/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace foak::client {
namespace {

// The payload that marks a status as the server's answer.
constexpr char kServerPayload[] = "type.foak.dev/foakctl.ServerError";

bool IsConnectionCode(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace

absl::Status UsageError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::Status ServerError(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // gRPC and absl share the canonical code numbering 0..16.
  const int code = static_cast<int>(status.error_code());
  const absl::StatusCode absl_code = code >= 1 && code <= 16 ? static_cast<absl::StatusCode>(code)
                                                             : absl::StatusCode::kUnknown;
  std::string message = status.error_message();
  if (message.empty()) message = absl::StrCat("the server answered ", absl::StatusCodeToString(absl_code));
  absl::Status out(absl_code, message);
  out.SetPayload(kServerPayload, absl::Cord("1"));
  return out;
}

bool IsServerError(const absl::Status& status) {
  return status.GetPayload(kServerPayload).has_value();
}

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  const absl::StatusCode code = status.code();
  if (IsConnectionCode(code)) return kExitUnreachable;
  if (!IsServerError(status)) {
    return code == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitError;
  }
  switch (code) {
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
      return kExitRefused;
    default:
      return kExitError;
  }
}

std::string HintFor(const absl::Status& status, absl::string_view server) {
  if (IsConnectionCode(status.code())) {
    return absl::StrCat("is foakd running at ", server, "? set --server or FOAK_SERVER");
  }
  if (status.code() == absl::StatusCode::kAlreadyExists && IsServerError(status)) {
    return "a request id names one submission; omit --request-id to submit a new job";
  }
  return "";
}

}  // namespace foak::client

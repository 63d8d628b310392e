#include "client/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
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

std::string HintFor(const absl::Status& status, absl::string_view server, bool tls) {
  if (IsConnectionCode(status.code())) {
    const absl::string_view message = status.message();
    if (absl::StrContains(message, "CERTIFICATE_VERIFY_FAILED") ||
        absl::StrContains(message, "certificate verify failed")) {
      return absl::StrCat("foakd's certificate at ", server,
                          " did not verify: --tls-ca (or $FOAK_TLS_CA) must name the CA that "
                          "signed it, and the certificate must name the host you dial "
                          "(--tls-server-name overrides it)");
    }
    if (tls && (absl::StrContains(message, "andshake") || absl::StrContains(message, "SSL") ||
                absl::StrContains(message, "ssl") || absl::StrContains(message, "ocket closed"))) {
      return absl::StrCat("the TLS handshake with ", server,
                          " failed: does foakd serve TLS there? --tls-ca must name the CA that "
                          "signed its certificate, and if foakd wants a client certificate "
                          "(--tls_client_ca), pass --tls-cert and --tls-key");
    }
    if (!tls) {
      return absl::StrCat("is foakd running at ", server,
                          "? set --server or FOAK_SERVER; if foakd serves TLS (--tls_cert), pass "
                          "--tls-ca (or $FOAK_TLS_CA)");
    }
    return absl::StrCat("is foakd running at ", server, "? set --server or FOAK_SERVER");
  }
  if (status.code() == absl::StatusCode::kUnauthenticated && IsServerError(status)) {
    return "foakd wants one of its API tokens (foakd --auth_tokens_file): pass --token or "
           "--token-file, or set $FOAK_TOKEN";
  }
  if (status.code() == absl::StatusCode::kAlreadyExists && IsServerError(status)) {
    return "a request id names one submission; omit --request-id to submit a new job";
  }
  return "";
}

}  // namespace foak::client

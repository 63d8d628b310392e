// The one place an absl::Status becomes a grpc::Status (STYLE.md): the codes
// are numerically the same in both libraries, the message is kept as is.
#ifndef FOAK_SERVER_TRANSPORT_GRPC_STATUS_H_
#define FOAK_SERVER_TRANSPORT_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace foak {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace foak

#endif  // FOAK_SERVER_TRANSPORT_GRPC_STATUS_H_

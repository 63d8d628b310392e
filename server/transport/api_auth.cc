#include "server/transport/api_auth.h"

#include "server/transport/grpc_status.h"

namespace foak {

grpc::Status CallerTenant(const grpc::ServerContext& context, const ApiTokens* tokens,
                          std::string* tenant) {
  tenant->clear();
  if (tokens == nullptr) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  const bool present = it != metadata.end();
  const absl::string_view value =
      present ? absl::string_view(it->second.data(), it->second.size()) : absl::string_view();
  absl::StatusOr<std::string> who = tokens->Authenticate(present, value);
  if (!who.ok()) return ToGrpcStatus(who.status());
  *tenant = *std::move(who);
  return grpc::Status::OK;
}

}  // namespace foak

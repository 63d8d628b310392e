// Who is calling JobService / FileService: the bearer token of the call's
// "authorization" metadata, looked up in ApiTokens (server/domain/
// api_tokens.h). WorkerService does not come here: it takes only per-job
// worker tokens (JobManager::AuthorizeWorker). Health and reflection are
// other services and stay open.
#ifndef FOAK_SERVER_TRANSPORT_API_AUTH_H_
#define FOAK_SERVER_TRANSPORT_API_AUTH_H_

#include <grpcpp/server_context.h>

#include <string>

#include "server/domain/api_tokens.h"

namespace foak {

// Sets *tenant to the caller's tenant, or to "" when `tokens` is null (foakd
// without --auth_tokens_file: every caller sees everything). UNAUTHENTICATED
// (never repeating the token) for a missing, malformed or unknown token.
grpc::Status CallerTenant(const grpc::ServerContext& context, const ApiTokens* tokens,
                          std::string* tenant);

}  // namespace foak

#endif  // FOAK_SERVER_TRANSPORT_API_AUTH_H_

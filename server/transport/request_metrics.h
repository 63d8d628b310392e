// Counts every RPC foakd answers, by method and status code, into
// ServerMetrics (foak_grpc_server_handled_total). A server interceptor sees
// the final status of unary and streaming calls alike, so no handler has to
// remember to count.
#ifndef FOAK_SERVER_TRANSPORT_REQUEST_METRICS_H_
#define FOAK_SERVER_TRANSPORT_REQUEST_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>

namespace foak {

class ServerMetrics;

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRequestMetricsFactory(
    ServerMetrics* metrics);

// "OK", "NOT_FOUND", ... (the canonical names).
const char* GrpcCodeName(int code);

}  // namespace foak

#endif  // FOAK_SERVER_TRANSPORT_REQUEST_METRICS_H_

#include "server/transport/request_metrics.h"

#include <string>

#include "server/metrics/server_metrics.h"

namespace foak {
namespace {

class RequestMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  RequestMetricsInterceptor(ServerMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->OnGrpcRequest(method_, GrpcCodeName(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* metrics_;
  std::string method_;
};

class RequestMetricsFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RequestMetricsFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RequestMetricsInterceptor(metrics_, info->method());
  }

 private:
  ServerMetrics* metrics_;
};

}  // namespace

const char* GrpcCodeName(int code) {
  static const char* const kNames[] = {
      "OK",       "CANCELLED",         "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",   "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",     "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRequestMetricsFactory(
    ServerMetrics* metrics) {
  return std::make_unique<RequestMetricsFactory>(metrics);
}

}  // namespace foak

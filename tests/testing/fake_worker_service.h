// A stand-in for foakd's WorkerService in tests of the worker's reporter
// (worker/report/): a real gRPC server on 127.0.0.1 that records every report
// and the authorization metadata of every call, or refuses them all.
#ifndef FOAK_TESTS_TESTING_FAKE_WORKER_SERVICE_H_
#define FOAK_TESTS_TESTING_FAKE_WORKER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "foak/v1/worker_service.grpc.pb.h"

namespace foak::testing {

// Records every report and the authorization metadata of every call; refuses
// all calls with PERMISSION_DENIED when told to.
class FakeWorkerService final : public v1::WorkerService::Service {
 public:
  explicit FakeWorkerService(bool refuse) : refuse_(refuse) {}

  grpc::Status ReportEvents(grpc::ServerContext* context,
                            grpc::ServerReader<v1::WorkerReport>* reader,
                            v1::ReportEventsResponse* response) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++calls_;
      const auto it = context->client_metadata().find("authorization");
      authorization_.push_back(it == context->client_metadata().end()
                                   ? std::string()
                                   : std::string(it->second.data(), it->second.size()));
    }
    if (refuse_) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not this job's token");
    v1::WorkerReport report;
    int64_t accepted = 0;
    while (reader->Read(&report)) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(report);
      ++accepted;
      changed_.notify_all();
    }
    response->set_accepted(accepted);
    return grpc::Status::OK;
  }

  bool WaitForReports(size_t n, absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                             [&] { return reports_.size() >= n; });
  }
  std::vector<v1::WorkerReport> reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }
  std::vector<std::string> authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return authorization_;
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  const bool refuse_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<v1::WorkerReport> reports_;
  std::vector<std::string> authorization_;
  int calls_ = 0;
};

// A gRPC server with a FakeWorkerService on 127.0.0.1:`port` (0: any free one).
class FakeFoakd {
 public:
  explicit FakeFoakd(int port = 0, bool refuse = false) : service_(refuse) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeFoakd() { Shutdown(); }

  // Like foakd going away: open calls are cancelled, the port is released.
  void Shutdown() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    server_->Wait();
    server_.reset();
  }
  bool ok() const { return server_ != nullptr && port_ > 0; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  FakeWorkerService& service() { return service_; }

 private:
  FakeWorkerService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_FAKE_WORKER_SERVICE_H_

// Runs the real foakd binary for end-to-end tests: a private data folder,
// gRPC and metrics on free ports (read back from --port-file), stubs for the
// three services, and the ways a foakd ends -- SIGTERM (graceful) or SIGKILL
// (a crash) -- followed by a restart on the same data folder. Environment
// variables given to it reach its workers too (they inherit foakd's), which
// is how a test sets the worker's FOAK_TEST_* hooks.
#ifndef FOAK_TESTS_TESTING_FOAKD_PROCESS_H_
#define FOAK_TESTS_TESTING_FOAKD_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "foak/v1/file_service.grpc.pb.h"
#include "foak/v1/job_service.grpc.pb.h"
#include "gtest/gtest.h"

namespace foak::testing {

class FoakdProcess {
 public:
  // `extra_args` are appended to foakd's command line; `env` is set in its
  // environment on top of the test's.
  FoakdProcess(std::string data_dir, std::vector<std::string> extra_args = {},
               std::vector<std::pair<std::string, std::string>> env = {})
      : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)), env_(std::move(env)) {}
  ~FoakdProcess() { Kill(SIGKILL); }

  // Starts foakd and waits until it listens (up to 30 s). `port` 0 = any free
  // port; a restart may ask for the previous one so clients reconnect.
  bool Start(int port = 0) {
    const std::string port_file = JoinPath(data_dir_, "ports.txt");
    unlink(port_file.c_str());
    MakeDirs(data_dir_).IgnoreError();
    std::vector<std::string> args = {FOAKD_BIN,
                                     "--listen=127.0.0.1:" + std::to_string(port),
                                     "--metrics_listen=127.0.0.1:0",
                                     "--data_dir=" + data_dir_,
                                     "--gpus=none",
                                     "--grace_period_s=2",
                                     "--worker=" + std::string(FOAK_WORKER_BIN),
                                     "--port_file=" + port_file};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    const std::string log = JoinPath(data_dir_, "foakd.log");
    pid_ = fork();
    if (pid_ == 0) {
      FILE* f = freopen(log.c_str(), "a", stderr);
      (void)f;
      for (const auto& [name, value] : env_) setenv(name.c_str(), value.c_str(), 1);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 300; ++i) {
      absl::StatusOr<std::string> ports = ReadFileToString(port_file);
      if (ports.ok() && ports->find("metrics=") != std::string::npos) {
        grpc_port_ = std::stoi(ports->substr(ports->find("grpc=") + 5));
        metrics_port_ = std::stoi(ports->substr(ports->find("metrics=") + 8));
        channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
        jobs_ = foak::v1::JobService::NewStub(channel_);
        files_ = foak::v1::FileService::NewStub(channel_);
        return true;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "foakd exited at start; its log:\n" << Log();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "foakd did not start listening within 30 s; its log:\n" << Log();
    return false;
  }

  // Closes this side's channel first (no call may be in flight), then
  // SIGTERM (foakd stops its workers within --grace_period_s), and SIGKILL if
  // it has not ended after `timeout_s`; returns its wait status. With the
  // channel left open, foakd's graceful shutdown would wait seconds for an
  // idle client to answer its GOAWAY (gRPC polls idle channels every 5 s).
  int Stop(int timeout_s = 15) {
    if (pid_ <= 0) return -1;
    jobs_.reset();
    files_.reset();
    channel_.reset();
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < timeout_s * 100; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Kill(SIGKILL);
  }

  // Sends `sig` and waits for the process; returns its wait status.
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    jobs_.reset();
    files_.reset();
    channel_.reset();
    return status;
  }

  std::string Log() const { return ReadFileToString(JoinPath(data_dir_, "foakd.log")).value_or(""); }
  std::string address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  const std::string& data_dir() const { return data_dir_; }
  foak::v1::JobService::Stub& jobs() { return *jobs_; }
  foak::v1::FileService::Stub& files() { return *files_; }

 private:
  std::string data_dir_;
  std::vector<std::string> extra_args_;
  std::vector<std::pair<std::string, std::string>> env_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<foak::v1::JobService::Stub> jobs_;
  std::unique_ptr<foak::v1::FileService::Stub> files_;
};

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_FOAKD_PROCESS_H_

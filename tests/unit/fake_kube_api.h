// FakeKubeApi: the part of the Kubernetes API the Kubernetes launcher uses
// (Jobs, Services, Pods, pod logs in one namespace), as an in-memory handler
// for TlsTestServer. It keeps objects the way the API server does (uids,
// label selectors, Background / Foreground deletion, preconditions), lets a
// test script the cluster's side (pods appear, run, fail; Jobs complete;
// requests fail), and CHECKS every request it gets: the path and query, the
// bearer token, Accept and Content-Type, and each body. Anything it did not
// expect is recorded in Errors() (and answered with an error), which a test
// asserts is empty at its end.
#ifndef FOAK_TESTS_UNIT_FAKE_KUBE_API_H_
#define FOAK_TESTS_UNIT_FAKE_KUBE_API_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "tests/unit/tls_test_server.h"

namespace foak {

class FakeKubeApi {
 public:
  explicit FakeKubeApi(std::string namespace_name) : namespace_(std::move(namespace_name)) {}

  // The TlsTestServer handler.
  HttpResponse Handle(const HttpRequest& request);

  // --- what the fake checks ---
  // Bearer tokens it accepts; another one is an error (and a 401).
  void SetTokens(std::set<std::string> tokens);
  std::vector<std::string> TokensSeen();
  std::vector<std::string> Errors();

  // --- scripting ---
  // Answers the next `times` requests of `op` (-1: all of them until
  // cleared with times 0) with a Kubernetes Status error. Ops: create-job,
  // create-service, get-job, list-jobs, list-pods, get-log, delete-job,
  // delete-service.
  void Fail(const std::string& op, int http_status, const std::string& message, int times = 1);
  // false: a Foreground deletion leaves the Job (deletionTimestamp set) and
  // its pods until FinishDeletion; true (default): it completes at once.
  void SetFinishForegroundDeletion(bool finish);
  // Stores a Job as if someone created it; returns its uid.
  std::string AddJob(nlohmann::json job);
  void UpdateJob(const std::string& name, const std::function<void(nlohmann::json*)>& update);
  void SetJobCondition(const std::string& name, const std::string& type,
                       const std::string& reason = "", const std::string& message = "");
  void RemoveJob(const std::string& name);       // deleted by someone else; its pods too
  void FinishDeletion(const std::string& name);  // a Foreground deletion completes
  // A pod of Job `job_name` with completion index `index` and `status`;
  // owned = false gives it another owner uid (a pod of an earlier Job of the
  // same name). Returns its name.
  std::string AddPod(const std::string& job_name, int64_t index, nlohmann::json status,
                     bool owned = true);
  void SetPodStatus(const std::string& pod, nlohmann::json status);
  void SetPodDeleting(const std::string& pod);
  void SetLog(const std::string& pod, const std::string& text);

  // --- what happened ---
  std::optional<nlohmann::json> Job(const std::string& name);
  std::optional<nlohmann::json> Service(const std::string& name);
  std::vector<std::string> JobNames();
  std::vector<std::string> ServiceNames();
  std::vector<std::string> PodNames();
  // "create-job POST /apis/...?..." per request, in order.
  std::vector<std::string> Requests();
  int Count(const std::string& op);
  // Parsed bodies of the requests of `op`, in order.
  std::vector<nlohmann::json> Bodies(const std::string& op);

  // Status objects as the API server writes them.
  static nlohmann::json StatusObject(int code, const std::string& reason,
                                     const std::string& message);

 private:
  struct Failure {
    int status = 0;
    std::string message;
    int times = 0;
  };
  struct Seen {
    std::string op;
    std::string line;
    nlohmann::json body;
  };

  HttpResponse Route(const HttpRequest& r, std::string* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse CreateJob(const nlohmann::json& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse CreateService(const nlohmann::json& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse DeleteJob(const std::string& name, const nlohmann::json& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HttpResponse List(const std::map<std::string, nlohmann::json>& objects, const std::string& kind,
                    const std::string& selector) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveJobLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Error(const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string namespace_;
  absl::Mutex mu_;
  std::set<std::string> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> tokens_seen_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> errors_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Failure> failures_ ABSL_GUARDED_BY(mu_);
  bool finish_foreground_ ABSL_GUARDED_BY(mu_) = true;
  int64_t next_uid_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, nlohmann::json> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, nlohmann::json> services_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, nlohmann::json> pods_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> logs_ ABSL_GUARDED_BY(mu_);
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace foak

#endif  // FOAK_TESTS_UNIT_FAKE_KUBE_API_H_

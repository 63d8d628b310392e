// KubeJobApi: the requests the Kubernetes launcher makes, typed, on one
// namespace: the URL paths, the label selector queries, the DeleteOptions
// bodies, and which HTTP answers count as done (a DELETE of something
// already gone is fine). The launcher above it is then only the state
// machine of a job's life.
//
// Reads return the raw KubeResponse (the caller tells a 404 from a 200);
// every method fails with an error Status only when the API gave no answer
// at all (KubeClient's errors) or, for the writes, an answer that is not
// success; each message names the object.
#ifndef FOAK_SERVER_LAUNCH_KUBE_JOB_API_H_
#define FOAK_SERVER_LAUNCH_KUBE_JOB_API_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/launch/kube_client.h"

namespace foak {

class KubeJobApi {
 public:
  KubeJobApi(std::unique_ptr<KubeClient> client, std::string namespace_name);

  // POST of a batch/v1 Job; the answer as is (201, 409, 403, ...).
  absl::StatusOr<KubeResponse> CreateJob(const nlohmann::json& job);
  absl::StatusOr<KubeResponse> GetJob(const std::string& name);
  // `selector` unescaped, e.g. "a=b,c=d".
  absl::StatusOr<KubeResponse> ListJobs(const std::string& selector);
  absl::StatusOr<KubeResponse> ListPods(const std::string& selector);
  // The last 20 lines of the worker container's log of `pod`.
  absl::StatusOr<std::string> PodLog(const std::string& pod);

  // POST of a v1 Service. One of the same name that exists already is
  // deleted and the POST made once more (the caller names its Services
  // after a Job it has just created, so that one is a leftover of it).
  absl::Status CreateService(const nlohmann::json& service);
  // DELETE with propagationPolicy `propagation` ("Foreground" or
  // "Background") and, with a `uid`, the precondition that the Job is still
  // that one. OK when it is gone already or is another Job now.
  absl::Status DeleteJob(const std::string& name, const std::string& uid,
                         const std::string& propagation);
  absl::Status DeleteService(const std::string& name);  // OK when gone already
  // For a create that got no usable answer: deletes Job `name` (Background)
  // if it exists and is the one that create made, i.e. carries this job id
  // annotation, instance and attempt labels. Best effort.
  void DeleteIfCreatedBy(const std::string& name, const std::string& job_id, int64_t attempt,
                         const std::string& instance);

  const std::string& namespace_name() const { return namespace_; }

 private:
  std::string JobsPath() const;
  std::string ServicesPath() const;
  std::string PodsPath() const;

  const std::unique_ptr<KubeClient> client_;
  const std::string namespace_;
};

// The JSON of `body`; null when it is not JSON.
nlohmann::json ParseKubeJson(const std::string& body);
// j[a][b] when it is a string, else "".
std::string KubeJsonString(const nlohmann::json& j, const char* a, const char* b);

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_KUBE_JOB_API_H_

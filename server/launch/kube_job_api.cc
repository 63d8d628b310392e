#include "server/launch/kube_job_api.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/launch/kube_objects.h"

namespace foak {
namespace {

// `s` (a request that got no answer) with `what` in front.
absl::Status Annotate(const absl::Status& s, const std::string& what) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

}  // namespace

nlohmann::json ParseKubeJson(const std::string& body) {
  return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
}

std::string KubeJsonString(const nlohmann::json& j, const char* a, const char* b) {
  if (!j.is_object() || !j.contains(a) || !j[a].is_object() || !j[a].contains(b)) return "";
  return j[a][b].is_string() ? j[a][b].get<std::string>() : "";
}

KubeJobApi::KubeJobApi(std::unique_ptr<KubeClient> client, std::string namespace_name)
    : client_(std::move(client)), namespace_(std::move(namespace_name)) {}

std::string KubeJobApi::JobsPath() const {
  return absl::StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs");
}
std::string KubeJobApi::ServicesPath() const {
  return absl::StrCat("/api/v1/namespaces/", namespace_, "/services");
}
std::string KubeJobApi::PodsPath() const {
  return absl::StrCat("/api/v1/namespaces/", namespace_, "/pods");
}

absl::StatusOr<KubeResponse> KubeJobApi::CreateJob(const nlohmann::json& job) {
  // Invalid UTF-8 (a path in the spec) becomes U+FFFD instead of a throw.
  return client_->Request("POST", JobsPath(),
                          job.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

absl::StatusOr<KubeResponse> KubeJobApi::GetJob(const std::string& name) {
  return client_->Request("GET", absl::StrCat(JobsPath(), "/", name));
}

absl::StatusOr<KubeResponse> KubeJobApi::ListJobs(const std::string& selector) {
  return client_->Request("GET",
                          absl::StrCat(JobsPath(), "?labelSelector=", UrlQueryEscape(selector)));
}

absl::StatusOr<KubeResponse> KubeJobApi::ListPods(const std::string& selector) {
  return client_->Request("GET",
                          absl::StrCat(PodsPath(), "?labelSelector=", UrlQueryEscape(selector)));
}

absl::StatusOr<std::string> KubeJobApi::PodLog(const std::string& pod) {
  const std::string what = absl::StrCat("cannot read the log of pod ", namespace_, "/", pod);
  absl::StatusOr<KubeResponse> r = client_->Request(
      "GET",
      absl::StrCat(PodsPath(), "/", pod, "/log?container=", kKubeContainerName, "&tailLines=20"));
  if (!r.ok()) return Annotate(r.status(), what);
  if (!r->ok()) return KubeApiError(what, *r);
  return std::move(r->body);
}

absl::Status KubeJobApi::CreateService(const nlohmann::json& service) {
  const std::string name = KubeJsonString(service, "metadata", "name");
  const std::string what = absl::StrCat("cannot create Kubernetes Service ", namespace_, "/", name);
  const std::string body =
      service.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (int round = 0;; ++round) {
    absl::StatusOr<KubeResponse> r = client_->Request("POST", ServicesPath(), body);
    if (!r.ok()) return Annotate(r.status(), what);
    if (r->ok()) return absl::OkStatus();
    if (r->http_status != 409 || round > 0) return KubeApiError(what, *r);
    RETURN_IF_ERROR(DeleteService(name));
  }
}

absl::Status KubeJobApi::DeleteJob(const std::string& name, const std::string& uid,
                                   const std::string& propagation) {
  const std::string what = absl::StrCat("cannot delete Kubernetes Job ", namespace_, "/", name);
  absl::StatusOr<KubeResponse> r = client_->Request("DELETE", absl::StrCat(JobsPath(), "/", name),
                                                    KubeDeleteOptions(propagation, uid));
  if (!r.ok()) return Annotate(r.status(), what);
  // 404: gone already; 409: the uid precondition failed, it is another Job.
  if (r->ok() || r->http_status == 404 || r->http_status == 409) return absl::OkStatus();
  return KubeApiError(what, *r);
}

absl::Status KubeJobApi::DeleteService(const std::string& name) {
  const std::string what = absl::StrCat("cannot delete Kubernetes Service ", namespace_, "/", name);
  absl::StatusOr<KubeResponse> r =
      client_->Request("DELETE", absl::StrCat(ServicesPath(), "/", name));
  if (!r.ok()) return Annotate(r.status(), what);
  if (r->ok() || r->http_status == 404) return absl::OkStatus();
  return KubeApiError(what, *r);
}

void KubeJobApi::DeleteIfCreatedBy(const std::string& name, const std::string& job_id,
                                   int64_t attempt, const std::string& instance) {
  absl::StatusOr<KubeResponse> got = GetJob(name);
  if (!got.ok() || !got->ok()) return;
  const nlohmann::json job = ParseKubeJson(got->body);
  if (!job.is_object() || !job.contains("metadata")) return;
  const nlohmann::json& meta = job["metadata"];
  if (KubeJsonString(meta, "annotations", kKubeAnnotationJobId) != job_id ||
      KubeJsonString(meta, "labels", kKubeLabelInstance) != instance ||
      KubeJsonString(meta, "labels", kKubeLabelAttempt) != absl::StrCat(attempt)) {
    return;  // someone else's: never deleted
  }
  (void)DeleteJob(name, KubeJsonString(job, "metadata", "uid"), "Background");
}

}  // namespace foak

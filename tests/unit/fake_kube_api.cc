#include "tests/unit/fake_kube_api.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace foak {
namespace {

using nlohmann::json;

HttpResponse Respond(int status, const json& body) {
  return HttpResponse{status, "application/json", body.dump()};
}

bool Matches(const json& object, const std::string& selector) {
  for (absl::string_view term : absl::StrSplit(selector, ',', absl::SkipEmpty())) {
    const std::vector<std::string> kv = absl::StrSplit(term, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return false;
    const json& labels = object["metadata"].value("labels", json::object());
    if (!labels.contains(kv[0]) || labels[kv[0]] != kv[1]) return false;
  }
  return true;
}

std::string OwnerUid(const json& pod) {
  const json& owners = pod["metadata"].value("ownerReferences", json::array());
  return owners.empty() ? "" : owners[0].value("uid", "");
}

}  // namespace

json FakeKubeApi::StatusObject(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},
          {"apiVersion", "v1"},
          {"metadata", json::object()},
          {"status", code < 300 ? "Success" : "Failure"},
          {"message", message},
          {"reason", reason},
          {"code", code}};
}

void FakeKubeApi::Error(const std::string& what) { errors_.push_back(what); }

HttpResponse FakeKubeApi::Handle(const HttpRequest& r) {
  absl::MutexLock lock(&mu_);
  const std::string line = absl::StrCat(r.method, " ", r.path, r.query.empty() ? "" : "?", r.query);
  auto auth = r.headers.find("authorization");
  const std::string token = auth != r.headers.end() && absl::StartsWith(auth->second, "Bearer ")
                                ? auth->second.substr(7)
                                : "";
  tokens_seen_.push_back(token);
  if (tokens_.count(token) == 0) {
    Error(absl::StrCat(line, ": bearer token '", token, "' is not one of the accepted ones"));
    return Respond(401, StatusObject(401, "Unauthorized", "Unauthorized"));
  }
  auto accept = r.headers.find("accept");
  if (accept == r.headers.end() || !absl::StrContains(accept->second, "application/json")) {
    Error(absl::StrCat(line, ": no Accept: application/json"));
  }
  json body;
  if (!r.body.empty()) {
    auto type = r.headers.find("content-type");
    if (type == r.headers.end() || type->second != "application/json") {
      Error(absl::StrCat(line, ": a body without Content-Type: application/json"));
    }
    body = json::parse(r.body, nullptr, false);
    if (body.is_discarded()) Error(absl::StrCat(line, ": the body is not JSON: ", r.body));
  }
  std::string op;
  HttpResponse response = Route(r, &op);
  seen_.push_back(Seen{op, absl::StrCat(op, " ", line), body});
  return response;
}

HttpResponse FakeKubeApi::Route(const HttpRequest& r, std::string* op) {
  const std::string jobs = absl::StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs");
  const std::string services = absl::StrCat("/api/v1/namespaces/", namespace_, "/services");
  const std::string pods = absl::StrCat("/api/v1/namespaces/", namespace_, "/pods");
  std::string name;
  std::set<std::string> allowed_query;
  if (r.path == jobs && r.method == "POST") {
    *op = "create-job";
  } else if (r.path == jobs && r.method == "GET") {
    *op = "list-jobs";
    allowed_query = {"labelSelector"};
  } else if (absl::StartsWith(r.path, jobs + "/") && r.method == "GET") {
    *op = "get-job";
    name = r.path.substr(jobs.size() + 1);
  } else if (absl::StartsWith(r.path, jobs + "/") && r.method == "DELETE") {
    *op = "delete-job";
    name = r.path.substr(jobs.size() + 1);
  } else if (r.path == services && r.method == "POST") {
    *op = "create-service";
  } else if (absl::StartsWith(r.path, services + "/") && r.method == "DELETE") {
    *op = "delete-service";
    name = r.path.substr(services.size() + 1);
  } else if (r.path == pods && r.method == "GET") {
    *op = "list-pods";
    allowed_query = {"labelSelector"};
  } else if (absl::StartsWith(r.path, pods + "/") && absl::EndsWith(r.path, "/log") &&
             r.method == "GET") {
    *op = "get-log";
    name = r.path.substr(pods.size() + 1, r.path.size() - pods.size() - 5);
    allowed_query = {"container", "tailLines"};
  } else {
    *op = "unexpected";
    Error(absl::StrCat("unexpected request ", r.method, " ", r.path));
    return Respond(404, StatusObject(404, "NotFound", "the fake has no such resource"));
  }
  std::set<std::string> query_keys;
  for (const auto& [k, v] : r.query_params) query_keys.insert(k);
  if (query_keys != allowed_query) {
    Error(absl::StrCat(*op, " ", r.path, ": unexpected query '", r.query, "'"));
  }
  if (name.find('/') != std::string::npos || (!name.empty() && name != UrlDecode(name))) {
    Error(absl::StrCat(*op, ": odd object name '", name, "'"));
  }
  auto failure = failures_.find(*op);
  if (failure != failures_.end() && failure->second.times != 0) {
    if (failure->second.times > 0) --failure->second.times;
    const int status = failure->second.status;
    return Respond(status, StatusObject(status, status == 403 ? "Forbidden" : "Failure",
                                        failure->second.message));
  }
  const json body = r.body.empty() ? json() : json::parse(r.body, nullptr, false);
  if (*op == "create-job") return CreateJob(body);
  if (*op == "create-service") return CreateService(body);
  if (*op == "delete-job") return DeleteJob(name, body);
  if (*op == "list-jobs") return List(jobs_, "JobList", r.query_params.at("labelSelector"));
  if (*op == "list-pods") return List(pods_, "PodList", r.query_params.at("labelSelector"));
  if (*op == "get-job") {
    auto it = jobs_.find(name);
    if (it == jobs_.end()) {
      return Respond(
          404, StatusObject(404, "NotFound", absl::StrCat("jobs.batch \"", name, "\" not found")));
    }
    return Respond(200, it->second);
  }
  if (*op == "delete-service") {
    if (!r.body.empty()) Error("delete-service: unexpected body " + r.body);
    if (services_.erase(name) == 0) {
      return Respond(
          404, StatusObject(404, "NotFound", absl::StrCat("services \"", name, "\" not found")));
    }
    return Respond(200, StatusObject(200, "", ""));
  }
  // get-log
  if (r.query_params.count("container") == 0 || r.query_params.at("container") != "worker" ||
      r.query_params.count("tailLines") == 0 || r.query_params.at("tailLines") != "20") {
    Error(absl::StrCat("get-log: expected container=worker&tailLines=20, got ", r.query));
  }
  if (pods_.count(name) == 0) {
    return Respond(404,
                   StatusObject(404, "NotFound", absl::StrCat("pods \"", name, "\" not found")));
  }
  return HttpResponse{200, "text/plain", logs_[name]};
}

HttpResponse FakeKubeApi::CreateJob(const json& body) {
  if (!body.is_object() || body.value("apiVersion", "") != "batch/v1" ||
      body.value("kind", "") != "Job") {
    Error("create-job: the body is not a batch/v1 Job");
    return Respond(400, StatusObject(400, "BadRequest", "not a Job"));
  }
  const json& metadata = body.value("metadata", json::object());
  if (metadata.value("namespace", namespace_) != namespace_) {
    Error("create-job: metadata.namespace is not the request's namespace");
  }
  const std::string name = metadata.value("name", "");
  if (jobs_.count(name) > 0) {
    return Respond(409, StatusObject(409, "AlreadyExists",
                                     absl::StrCat("jobs.batch \"", name, "\" already exists")));
  }
  json job = body;
  job["metadata"]["uid"] = absl::StrCat("uid-", next_uid_++);
  job["metadata"]["namespace"] = namespace_;
  job["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z";
  job["status"] = json::object();
  jobs_[name] = job;
  return Respond(201, job);
}

HttpResponse FakeKubeApi::CreateService(const json& body) {
  if (!body.is_object() || body.value("apiVersion", "") != "v1" ||
      body.value("kind", "") != "Service") {
    Error("create-service: the body is not a v1 Service");
    return Respond(400, StatusObject(400, "BadRequest", "not a Service"));
  }
  const std::string name = body["metadata"].value("name", "");
  const json owners = body["metadata"].value("ownerReferences", json::array());
  auto job = jobs_.find(name);
  if (owners.size() != 1 || job == jobs_.end() ||
      owners[0].value("uid", "") != job->second["metadata"].value("uid", "")) {
    Error(absl::StrCat("create-service ", name, ": its ownerReference is not the Job ", name,
                       " with that Job's uid"));
  }
  if (services_.count(name) > 0) {
    return Respond(409, StatusObject(409, "AlreadyExists",
                                     absl::StrCat("services \"", name, "\" already exists")));
  }
  json service = body;
  service["metadata"]["uid"] = absl::StrCat("uid-", next_uid_++);
  services_[name] = service;
  return Respond(201, service);
}

HttpResponse FakeKubeApi::DeleteJob(const std::string& name, const json& body) {
  const std::string policy = body.is_object() ? body.value("propagationPolicy", "") : "";
  if (!body.is_object() || body.value("kind", "") != "DeleteOptions" ||
      (policy != "Foreground" && policy != "Background")) {
    Error(absl::StrCat("delete-job ", name,
                       ": expected DeleteOptions with propagationPolicy "
                       "Foreground or Background, got ",
                       body.dump()));
  }
  auto it = jobs_.find(name);
  if (it == jobs_.end()) {
    return Respond(
        404, StatusObject(404, "NotFound", absl::StrCat("jobs.batch \"", name, "\" not found")));
  }
  const std::string uid = body.is_object() && body.contains("preconditions")
                              ? body["preconditions"].value("uid", "")
                              : "";
  if (!uid.empty() && uid != it->second["metadata"].value("uid", "")) {
    return Respond(409, StatusObject(409, "Conflict", "Precondition failed: UID in precondition"));
  }
  if (policy == "Foreground" && !finish_foreground_) {
    it->second["metadata"]["deletionTimestamp"] = "2025-01-01T00:01:00Z";
    it->second["metadata"]["finalizers"] = json::array({"foregroundDeletion"});
    return Respond(200, it->second);
  }
  RemoveJobLocked(name);
  return Respond(200, StatusObject(200, "", ""));
}

HttpResponse FakeKubeApi::List(const std::map<std::string, json>& objects, const std::string& kind,
                               const std::string& selector) {
  json list = {{"kind", kind},
               {"apiVersion", kind == "JobList" ? "batch/v1" : "v1"},
               {"metadata", {{"resourceVersion", "1"}}},
               {"items", json::array()}};
  for (const auto& [name, object] : objects) {
    if (Matches(object, selector)) list["items"].push_back(object);
  }
  return Respond(200, list);
}

void FakeKubeApi::RemoveJobLocked(const std::string& name) {
  auto it = jobs_.find(name);
  if (it == jobs_.end()) return;
  const std::string uid = it->second["metadata"]["uid"].get<std::string>();
  jobs_.erase(it);
  for (auto pod = pods_.begin(); pod != pods_.end();) {
    pod = OwnerUid(pod->second) == uid ? pods_.erase(pod) : std::next(pod);
  }
}

void FakeKubeApi::SetTokens(std::set<std::string> tokens) {
  absl::MutexLock lock(&mu_);
  tokens_ = std::move(tokens);
}

std::vector<std::string> FakeKubeApi::TokensSeen() {
  absl::MutexLock lock(&mu_);
  return tokens_seen_;
}

std::vector<std::string> FakeKubeApi::Errors() {
  absl::MutexLock lock(&mu_);
  return errors_;
}

void FakeKubeApi::Fail(const std::string& op, int http_status, const std::string& message,
                       int times) {
  absl::MutexLock lock(&mu_);
  failures_[op] = Failure{http_status, message, times};
}

void FakeKubeApi::SetFinishForegroundDeletion(bool finish) {
  absl::MutexLock lock(&mu_);
  finish_foreground_ = finish;
}

std::string FakeKubeApi::AddJob(json job) {
  absl::MutexLock lock(&mu_);
  const std::string uid = absl::StrCat("uid-", next_uid_++);
  job["metadata"]["uid"] = uid;
  jobs_[job["metadata"]["name"].get<std::string>()] = job;
  return uid;
}

void FakeKubeApi::UpdateJob(const std::string& name, const std::function<void(json*)>& update) {
  absl::MutexLock lock(&mu_);
  update(&jobs_.at(name));
}

void FakeKubeApi::SetJobCondition(const std::string& name, const std::string& type,
                                  const std::string& reason, const std::string& message) {
  UpdateJob(name, [&](json* job) {
    (*job)["status"]["conditions"].push_back(
        {{"type", type}, {"status", "True"}, {"reason", reason}, {"message", message}});
  });
}

void FakeKubeApi::RemoveJob(const std::string& name) {
  absl::MutexLock lock(&mu_);
  RemoveJobLocked(name);
}

void FakeKubeApi::FinishDeletion(const std::string& name) {
  absl::MutexLock lock(&mu_);
  if (jobs_.count(name) == 0 || !jobs_[name]["metadata"].contains("deletionTimestamp")) {
    Error(absl::StrCat("FinishDeletion(", name, "): the Job is not being deleted"));
  }
  RemoveJobLocked(name);
}

std::string FakeKubeApi::AddPod(const std::string& job_name, int64_t index, json status,
                                bool owned) {
  absl::MutexLock lock(&mu_);
  const json& job = jobs_.at(job_name);
  const json& template_meta = job["spec"]["template"]["metadata"];
  const std::string name = absl::StrCat(job_name, "-", index, "-", owned ? "x" : "o", next_uid_);
  json labels = template_meta.value("labels", json::object());
  labels["batch.kubernetes.io/job-completion-index"] = absl::StrCat(index);
  labels["batch.kubernetes.io/job-name"] = job_name;
  json annotations = template_meta.value("annotations", json::object());
  annotations["batch.kubernetes.io/job-completion-index"] = absl::StrCat(index);
  json pod = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", name},
        {"namespace", namespace_},
        {"uid", absl::StrCat("uid-", next_uid_++)},
        {"labels", labels},
        {"annotations", annotations},
        {"ownerReferences",
         json::array({{{"apiVersion", "batch/v1"},
                       {"kind", "Job"},
                       {"name", job_name},
                       {"uid", owned ? job["metadata"]["uid"].get<std::string>() : "uid-earlier"},
                       {"controller", true}}})}}},
      {"spec", {{"nodeName", absl::StrCat("gpu-node-", index)}}},
      {"status", std::move(status)},
  };
  pods_[name] = pod;
  return name;
}

void FakeKubeApi::SetPodStatus(const std::string& pod, json status) {
  absl::MutexLock lock(&mu_);
  pods_.at(pod)["status"] = std::move(status);
}

void FakeKubeApi::SetPodDeleting(const std::string& pod) {
  absl::MutexLock lock(&mu_);
  pods_.at(pod)["metadata"]["deletionTimestamp"] = "2025-01-01T00:01:00Z";
}

void FakeKubeApi::SetLog(const std::string& pod, const std::string& text) {
  absl::MutexLock lock(&mu_);
  logs_[pod] = text;
}

std::optional<json> FakeKubeApi::Job(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(name);
  return it == jobs_.end() ? std::nullopt : std::optional<json>(it->second);
}

std::optional<json> FakeKubeApi::Service(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = services_.find(name);
  return it == services_.end() ? std::nullopt : std::optional<json>(it->second);
}

std::vector<std::string> FakeKubeApi::JobNames() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, job] : jobs_) out.push_back(name);
  return out;
}

std::vector<std::string> FakeKubeApi::ServiceNames() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, service] : services_) out.push_back(name);
  return out;
}

std::vector<std::string> FakeKubeApi::PodNames() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, pod] : pods_) out.push_back(name);
  return out;
}

std::vector<std::string> FakeKubeApi::Requests() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const Seen& s : seen_) out.push_back(s.line);
  return out;
}

int FakeKubeApi::Count(const std::string& op) {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const Seen& s : seen_) n += s.op == op ? 1 : 0;
  return n;
}

std::vector<json> FakeKubeApi::Bodies(const std::string& op) {
  absl::MutexLock lock(&mu_);
  std::vector<json> out;
  for (const Seen& s : seen_) {
    if (s.op == op) out.push_back(s.body);
  }
  return out;
}

}  // namespace foak

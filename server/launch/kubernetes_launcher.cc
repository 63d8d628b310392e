#include "server/launch/kubernetes_launcher.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/launch/kube_objects.h"

namespace foak {
namespace {

using nlohmann::json;

// A transport error, or a response that was not what `what` wanted, as text.
std::string Problem(const absl::StatusOr<KubeResponse>& r, const std::string& what) {
  if (!r.ok()) return std::string(r.status().message());
  return std::string(KubeApiError(what, *r).message());
}

std::string Duration(int64_t ms) { return absl::FormatDuration(absl::Milliseconds(ms)); }

}  // namespace

absl::StatusOr<std::unique_ptr<KubernetesLauncher>> KubernetesLauncher::Create(
    KubernetesLauncherOptions options, Launcher::Callbacks callbacks) {
  if (options.namespace_name.empty()) {
    const std::string file = JoinPath(kServiceAccountDir, "namespace");
    absl::StatusOr<std::string> ns = ReadFileToString(file);
    if (!ns.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "namespace_name is empty and the service account's namespace file cannot be read (",
          ns.status().message(), "); set the namespace of the worker Jobs"));
    }
    options.namespace_name = std::string(absl::StripAsciiWhitespace(*ns));
  }
  RETURN_IF_ERROR(ValidateKubernetesLauncherOptions(options));
  ASSIGN_OR_RETURN(std::unique_ptr<KubeClient> client, KubeClient::Create(options.client));
  options.client.api_server = client->api_server();
  auto api = std::make_unique<KubeJobApi>(std::move(client), options.namespace_name);
  std::unique_ptr<KubernetesLauncher> launcher(
      new KubernetesLauncher(std::move(options), std::move(callbacks), std::move(api)));
  KubernetesLauncher* self = launcher.get();
  launcher->monitor_ = std::thread([self] { self->MonitorLoop(); });
  return launcher;
}

KubernetesLauncher::KubernetesLauncher(KubernetesLauncherOptions options,
                                       Launcher::Callbacks callbacks,
                                       std::unique_ptr<KubeJobApi> api)
    : options_(std::move(options)), callbacks_(std::move(callbacks)), api_(std::move(api)) {}

KubernetesLauncher::~KubernetesLauncher() { Shutdown(); }

absl::Status KubernetesLauncher::Launch(const LaunchRequest& request) {
  if (request.job_id.empty()) return absl::InvalidArgumentError("LaunchRequest.job_id is empty");
  absl::Status valid = ValidateGangSpec(request.gang);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("job ", request.job_id, ": ", valid.message()));
  }
  const std::string name = KubeObjectName(request.job_id, request.attempt);
  const std::string object = absl::StrCat(options_.namespace_name, "/", name);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the launcher is shutting down");
    auto running = jobs_.find(request.job_id);
    if (running != jobs_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", request.job_id, " is already running (attempt ", running->second.attempt, ")"));
    }
    Job job;
    job.job_id = request.job_id;
    job.attempt = request.attempt;
    job.name = name;
    job.queue = request.gang.queue;
    job.nodes = request.gang.nodes;
    job.ranks_per_node = request.gang.ranks_per_node;
    jobs_.emplace(request.job_id, std::move(job));
  }
  auto give_up = [&](absl::Status status) {
    absl::MutexLock lock(&mu_);
    jobs_.erase(request.job_id);
    return status;
  };

  const std::string what = absl::StrCat("cannot create Kubernetes Job ", object);
  absl::StatusOr<KubeResponse> created = api_->CreateJob(KubeJobObject(options_, request));
  if (!created.ok()) {  // no answer: it may have been created all the same
    api_->DeleteIfCreatedBy(name, request.job_id, request.attempt, options_.instance);
    return give_up(absl::Status(created.status().code(),
                                absl::StrCat(what, ": ", created.status().message())));
  }
  if (created->http_status == 409) {
    return give_up(absl::AlreadyExistsError(
        absl::StrCat(what,
                     ": it already exists, made by someone else (another foakd with "
                     "--kube_instance ",
                     options_.instance, "?); foakd never deletes a Job it did not create: ",
                     "check it, delete it with `kubectl delete job -n ", options_.namespace_name,
                     " ", name, "` and retry")));
  }
  if (!created->ok()) return give_up(KubeApiError(what, *created));
  const std::string uid = KubeJsonString(ParseKubeJson(created->body), "metadata", "uid");
  if (uid.empty()) {
    api_->DeleteIfCreatedBy(name, request.job_id, request.attempt, options_.instance);
    return give_up(absl::InternalError(absl::StrCat(what, ": the answer has no metadata.uid")));
  }
  absl::Status service = api_->CreateService(KubeServiceObject(options_, request, uid));
  if (!service.ok()) {
    absl::Status deleted = api_->DeleteJob(name, uid, "Background");
    return give_up(absl::Status(
        service.code(),
        absl::StrCat(service.message(), deleted.ok()
                                            ? "; its Job was deleted again"
                                            : absl::StrCat("; and its Job could not be deleted: ",
                                                           deleted.message()))));
  }
  absl::MutexLock lock(&mu_);
  Job& job = jobs_[request.job_id];
  job.uid = uid;
  job.created = true;
  poll_now_ = true;
  wake_.Signal();
  return absl::OkStatus();
}

absl::Status KubernetesLauncher::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id, " has no Kubernetes Job running"));
  }
  if (!it->second.cancelled) {
    it->second.cancelled = true;
    it->second.cancel_message = "cancelled by request";
  }
  poll_now_ = true;
  wake_.Signal();
  return absl::OkStatus();
}

bool KubernetesLauncher::IsRunning(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  return jobs_.count(job_id) > 0;
}

int64_t KubernetesLauncher::RunningJobs() {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(jobs_.size());
}

absl::StatusOr<std::vector<std::string>> KubernetesLauncher::KillOrphans(const std::string&) {
  const std::string selector = KubeLabelSelector(
      {{kKubeLabelManagedBy, kKubeManagedBy}, {kKubeLabelInstance, options_.instance}});
  const std::string what =
      absl::StrCat("cannot list the Kubernetes Jobs of foakd instance ", options_.instance,
                   " in namespace ", options_.namespace_name);
  absl::StatusOr<KubeResponse> listed = api_->ListJobs(selector);
  if (!listed.ok()) {
    return absl::Status(listed.status().code(),
                        absl::StrCat(what, ": ", listed.status().message()));
  }
  if (!listed->ok()) return KubeApiError(what, *listed);
  std::set<std::string> mine;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : jobs_) mine.insert(job.name);
  }
  std::set<std::string> ids;
  std::set<std::string> uids;
  const json list = ParseKubeJson(listed->body);
  if (list.contains("items") && list["items"].is_array()) {
    for (const json& item : list["items"]) {
      const std::string name = KubeJsonString(item, "metadata", "name");
      if (name.empty() || mine.count(name) > 0) continue;
      const std::string uid = KubeJsonString(item, "metadata", "uid");
      RETURN_IF_ERROR(api_->DeleteJob(name, uid, "Background"));
      RETURN_IF_ERROR(api_->DeleteService(name));
      std::string id = KubeJsonString(item["metadata"], "annotations", kKubeAnnotationJobId);
      if (id.empty()) id = KubeJsonString(item["metadata"], "labels", kKubeLabelJobId);
      if (!id.empty()) ids.insert(id);
      uids.insert(uid);
    }
  }
  // Like killing a process group, wait (bounded) until the orphans' pods are
  // gone: a relaunch must not rendezvous with a dying pod of the same name.
  const Clock::time_point deadline =
      Clock::now() +
      std::chrono::milliseconds(options_.grace_period_ms + options_.deletion_wait_ms);
  while (!uids.empty() && Clock::now() < deadline) {
    absl::StatusOr<KubeResponse> pods = api_->ListPods(selector);
    if (pods.ok() && pods->ok()) {
      bool left = false;
      for (const std::string& uid : uids) {
        left = left || !ReadKubeGang(json::object(), ParseKubeJson(pods->body), uid).pods.empty();
      }
      if (!left) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.poll_interval_ms));
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

void KubernetesLauncher::Shutdown() {
  auto stop_all = [this] {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, job] : jobs_) {
      if (job.cancelled) continue;
      job.cancelled = true;
      job.cancel_message = "stopped: the coordinator is shutting down";
    }
    poll_now_ = true;
    wake_.Signal();
  };
  if (std::this_thread::get_id() == monitor_.get_id()) {  // from a callback
    stop_all();
    return;
  }
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  stop_all();
  if (joined_) return;
  if (monitor_.joinable()) monitor_.join();
  joined_ = true;
}

void KubernetesLauncher::MonitorLoop() {
  while (true) {
    std::vector<Job> snapshot;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, job] : jobs_) {
        if (job.created) snapshot.push_back(job);
      }
      poll_now_ = false;
    }
    // The API requests, without the lock: Launch and Cancel go on meanwhile.
    std::vector<LogLine> lines;
    std::vector<std::pair<Job, LaunchOutcome>> finished;
    for (const Job& job : snapshot) {
      Tracker& t = trackers_[job.job_id];
      if (t.name != job.name) {
        t = Tracker();
        t.name = job.name;
      }
      std::optional<LaunchOutcome> outcome = PollJob(job, &t, &lines);
      if (outcome.has_value()) finished.emplace_back(job, std::move(*outcome));
    }
    std::vector<LaunchOutcome> outcomes;
    bool done = false;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [job, outcome] : finished) {
        trackers_.erase(job.job_id);
        auto it = jobs_.find(job.job_id);
        if (it == jobs_.end() || it->second.name != job.name) continue;
        if (it->second.cancelled && outcome.state != JobState::kCancelled) {
          // Cancelled while it was ending: the request wins, as locally.
          outcome.state = JobState::kCancelled;
          outcome.reason = kReasonCancelled;
          outcome.message = it->second.cancel_message;
          outcome.retryable = false;
        }
        jobs_.erase(it);  // IsRunning turns false before on_exit
        outcomes.push_back(std::move(outcome));
      }
      done = stopping_ && jobs_.empty();
    }
    if (callbacks_.on_log) {
      for (const LogLine& line : lines) callbacks_.on_log(line);
    }
    if (callbacks_.on_exit) {
      for (const LaunchOutcome& outcome : outcomes) callbacks_.on_exit(outcome);
    }
    if (done) return;
    absl::MutexLock lock(&mu_);
    if (stopping_ && jobs_.empty()) continue;  // one more pass ends the loop
    if (!poll_now_) wake_.WaitWithTimeout(&mu_, absl::Milliseconds(options_.poll_interval_ms));
    poll_now_ = false;
  }
}

LaunchOutcome KubernetesLauncher::Outcome(const Job& job, JobState state, const char* reason,
                                          bool retryable, std::string message) const {
  LaunchOutcome outcome;
  outcome.job_id = job.job_id;
  outcome.attempt = job.attempt;
  outcome.state = state;
  outcome.reason = reason;
  outcome.retryable = retryable;
  outcome.message = std::move(message);
  return outcome;
}

std::string KubernetesLauncher::Selector(const Job& job) const {
  return KubeLabelSelector(KubeSelectorLabels(options_.instance, job.job_id, job.attempt));
}

KubeGangShape KubernetesLauncher::Shape(const Job& job) const {
  return KubeGangShape{job.job_id, job.attempt, options_.namespace_name,
                       job.name,   job.nodes,   job.ranks_per_node};
}

void KubernetesLauncher::BeginStop(Tracker* t, LaunchOutcome outcome,
                                   const std::string& propagation) {
  t->stopping = true;
  t->outcome = std::move(outcome);
  t->propagation = propagation;
  t->stop_deadline = Clock::now() + std::chrono::milliseconds(options_.grace_period_ms +
                                                              options_.deletion_wait_ms);
}

void KubernetesLauncher::ApiTrouble(const Job& job, Tracker* t, const std::string& error) {
  const Clock::time_point now = Clock::now();
  if (!t->api_failing_since.has_value()) t->api_failing_since = now;
  if (now - *t->api_failing_since < std::chrono::milliseconds(options_.api_failure_timeout_ms)) {
    return;  // transient until proven otherwise
  }
  BeginStop(t,
            Outcome(job, JobState::kFailed, kReasonLaunchFailed, false,
                    absl::StrCat("lost the Kubernetes API for ",
                                 Duration(options_.api_failure_timeout_ms), " while watching Job ",
                                 options_.namespace_name, "/", job.name, ": ", error)),
            "Background");
}

std::optional<LaunchOutcome> KubernetesLauncher::PollJob(const Job& job, Tracker* t,
                                                         std::vector<LogLine>* lines) {
  if (!t->stopping && job.cancelled) {
    BeginStop(t, Outcome(job, JobState::kCancelled, kReasonCancelled, false, job.cancel_message),
              "Foreground");
  }
  if (t->stopping) return PollStopping(job, t);

  const std::string object = absl::StrCat(options_.namespace_name, "/", job.name);
  absl::StatusOr<KubeResponse> got = api_->GetJob(job.name);
  if (!got.ok() || (!got->ok() && got->http_status != 404)) {
    ApiTrouble(job, t, Problem(got, absl::StrCat("cannot read Kubernetes Job ", object)));
    return t->stopping ? PollStopping(job, t) : std::nullopt;
  }
  const json job_json = got->ok() ? ParseKubeJson(got->body) : json();
  if (got->http_status == 404 || KubeJsonString(job_json, "metadata", "uid") != job.uid) {
    BeginStop(t,
              Outcome(job, JobState::kFailed, kReasonWorkerError, true,
                      absl::StrCat("Kubernetes Job ", object,
                                   " was deleted while it ran, not by "
                                   "foakd (kubectl delete, or another foakd with --kube_instance ",
                                   options_.instance, "?); its pods were stopped")),
              "Background");
    return PollStopping(job, t);
  }
  absl::StatusOr<KubeResponse> pods = api_->ListPods(Selector(job));
  if (!pods.ok() || !pods->ok()) {
    ApiTrouble(job, t,
               Problem(pods, absl::StrCat("cannot list the pods of Kubernetes Job ", object)));
    return t->stopping ? PollStopping(job, t) : std::nullopt;
  }
  t->api_failing_since.reset();
  const KubeGangView gang = ReadKubeGang(job_json, ParseKubeJson(pods->body), job.uid);
  TellNotes(job, gang, t, lines);

  if (std::optional<LaunchOutcome> failed = FailureOf(job, gang, t)) {
    failed->ranks = KubeRankExits(gang, job.ranks_per_node);
    BeginStop(t, std::move(*failed), "Background");
    return PollStopping(job, t);
  }
  if (!gang.complete) return std::nullopt;
  // Succeeded: the Job stays for ttlSecondsAfterFinished (kubectl logs);
  // its Service has nothing left to do.
  (void)api_->DeleteService(job.name);
  LaunchOutcome outcome =
      Outcome(job, JobState::kSucceeded, kReasonCompleted, false,
              absl::StrCat("all ", job.nodes, " node(s) (", job.nodes * job.ranks_per_node,
                           " rank(s)) completed; Kubernetes Job ", object));
  outcome.ranks = KubeRankExits(gang, job.ranks_per_node);
  return outcome;
}

std::optional<LaunchOutcome> KubernetesLauncher::FailureOf(const Job& job, const KubeGangView& gang,
                                                           Tracker* t) {
  const KubeGangShape shape = Shape(job);
  if (std::optional<size_t> i = KubeDecidingFailure(gang)) {
    const KubePodView& pod = gang.pods[*i];
    absl::StatusOr<std::string> log = api_->PodLog(pod.name);  // best effort
    return KubeFailureOutcome(shape, pod, log.ok() ? KubeLogTail(*log) : "",
                              log.ok() ? "" : std::string(log.status().message()));
  }
  if (gang.failed) return KubeJobFailedOutcome(shape, gang);
  const Clock::time_point now = Clock::now();
  std::map<std::string, Clock::time_point> still;
  for (const KubePodView& pod : gang.pods) {
    if (!KubeStartProblem(pod.waiting_reason)) continue;
    auto seen = t->start_problem_since.find(pod.name);
    const Clock::time_point since = seen == t->start_problem_since.end() ? now : seen->second;
    still[pod.name] = since;
    if (KubeStartsNever(pod.waiting_reason) ||
        now - since >= std::chrono::milliseconds(options_.pod_start_timeout_ms)) {
      return KubeStartFailureOutcome(shape, pod, options_.pod_start_timeout_ms, options_.image);
    }
  }
  t->start_problem_since = std::move(still);
  return std::nullopt;
}

void KubernetesLauncher::TellNotes(const Job& job, const KubeGangView& gang, Tracker* t,
                                   std::vector<LogLine>* lines) {
  for (KubeNote& note : KubeNotes(gang, job.name, job.queue)) {
    auto told = t->notes_told.find(note.key);
    if (told != t->notes_told.end() && (note.once || told->second == note.text)) continue;
    // A queue's "admitted" is news only after "suspended" was told.
    if (told == t->notes_told.end() && note.key == "job/suspended" && !gang.suspended) continue;
    t->notes_told[note.key] = note.text;
    lines->push_back(LogLine{job.job_id, job.attempt, note.node * job.ranks_per_node, note.text});
  }
}

std::optional<LaunchOutcome> KubernetesLauncher::PollStopping(const Job& job, Tracker* t) {
  if (!t->job_delete_sent) {
    t->job_delete_sent = api_->DeleteJob(job.name, job.uid, t->propagation).ok();
  }
  if (!t->service_delete_sent) t->service_delete_sent = api_->DeleteService(job.name).ok();
  bool gone = false;
  if (t->job_delete_sent && t->service_delete_sent) {
    absl::StatusOr<KubeResponse> got = api_->GetJob(job.name);
    const bool job_gone =
        got.ok() &&
        (got->http_status == 404 ||
         (got->ok() && KubeJsonString(ParseKubeJson(got->body), "metadata", "uid") != job.uid));
    if (job_gone) {
      absl::StatusOr<KubeResponse> pods = api_->ListPods(Selector(job));
      gone = pods.ok() && pods->ok() &&
             ReadKubeGang(json::object(), ParseKubeJson(pods->body), job.uid).pods.empty();
    }
  }
  if (gone) return std::move(t->outcome);
  if (Clock::now() < t->stop_deadline) return std::nullopt;
  LaunchOutcome outcome = std::move(*t->outcome);
  absl::StrAppend(&outcome.message, "; note: Kubernetes had not finished deleting Job ",
                  options_.namespace_name, "/", job.name, " and its pods after ",
                  Duration(options_.grace_period_ms + options_.deletion_wait_ms));
  return outcome;
}

}  // namespace foak

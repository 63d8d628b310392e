#include "server/launch/kube_gang_status.h"

#include <signal.h>

#include <algorithm>
#include <deque>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "server/launch/kube_objects.h"
#include "server/launch/process_util.h"

namespace foak {
namespace {

using nlohmann::json;

constexpr size_t kTailLines = 20;
constexpr size_t kTailBytes = 2048;
constexpr size_t kTailLineBytes = 512;

// j[k1][k2]... when every step exists, else null.
const json& At(const json& j, std::initializer_list<const char*> path) {
  static const json kNull;
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return kNull;
    auto it = cur->find(key);
    if (it == cur->end()) return kNull;
    cur = &*it;
  }
  return *cur;
}

std::string Str(const json& j, std::initializer_list<const char*> path) {
  const json& v = At(j, path);
  return v.is_string() ? v.get<std::string>() : std::string();
}

bool Killed(const KubePodView& p) {
  return p.terminated_reason == "OOMKilled" || p.exit_code > 128 || !p.disruption_reason.empty() ||
         (!p.terminated && p.phase == "Failed");
}

bool CouldNotRun(const KubePodView& p) {
  return p.terminated_reason == "StartError" || p.terminated_reason == "ContainerCannotRun";
}

KubePodView ReadPod(const json& pod) {
  KubePodView v;
  v.name = Str(pod, {"metadata", "name"});
  std::string index = Str(pod, {"metadata", "annotations", kKubeAnnotationCompletionIndex});
  if (index.empty()) index = Str(pod, {"metadata", "labels", kKubeAnnotationCompletionIndex});
  int64_t node = -1;
  if (absl::SimpleAtoi(index, &node) && node >= 0) v.node = node;
  v.phase = Str(pod, {"status", "phase"});
  v.node_name = Str(pod, {"spec", "nodeName"});
  v.deleting = !At(pod, {"metadata", "deletionTimestamp"}).is_null();
  v.pod_reason = Str(pod, {"status", "reason"});
  v.pod_message = Str(pod, {"status", "message"});
  const json& conditions = At(pod, {"status", "conditions"});
  if (conditions.is_array()) {
    for (const json& c : conditions) {
      if (Str(c, {"type"}) == "PodScheduled" && Str(c, {"status"}) == "False") {
        v.unschedulable = true;
        v.schedule_reason = Str(c, {"reason"});
        v.schedule_message = Str(c, {"message"});
      }
      if (Str(c, {"type"}) == "DisruptionTarget" && Str(c, {"status"}) == "True") {
        v.disruption_reason = Str(c, {"reason"});
        v.disruption_message = Str(c, {"message"});
        if (v.disruption_reason.empty()) v.disruption_reason = "DisruptionTarget";
      }
    }
  }
  const json& statuses = At(pod, {"status", "containerStatuses"});
  if (statuses.is_array()) {
    for (const json& s : statuses) {
      if (Str(s, {"name"}) != kKubeContainerName) continue;
      const json& terminated = At(s, {"state", "terminated"});
      if (terminated.is_object()) {
        v.terminated = true;
        const json& code = At(terminated, {"exitCode"});
        if (code.is_number_integer()) v.exit_code = code.get<int>();
        v.terminated_reason = Str(terminated, {"reason"});
        v.terminated_message = Str(terminated, {"message"});
        v.finished_at = Str(terminated, {"finishedAt"});
      }
      const json& waiting = At(s, {"state", "waiting"});
      if (waiting.is_object()) {
        v.waiting_reason = Str(waiting, {"reason"});
        v.waiting_message = Str(waiting, {"message"});
      }
    }
  }
  return v;
}

bool OwnedBy(const json& pod, const std::string& uid) {
  const json& owners = At(pod, {"metadata", "ownerReferences"});
  if (!owners.is_array()) return false;
  for (const json& o : owners) {
    if (Str(o, {"uid"}) == uid) return true;
  }
  return false;
}

}  // namespace

KubeGangView ReadKubeGang(const json& job, const json& pods, const std::string& job_uid) {
  KubeGangView gang;
  gang.suspended =
      At(job, {"spec", "suspend"}).is_boolean() && At(job, {"spec", "suspend"}).get<bool>();
  const json& conditions = At(job, {"status", "conditions"});
  if (conditions.is_array()) {
    for (const json& c : conditions) {
      if (Str(c, {"status"}) != "True") continue;
      const std::string type = Str(c, {"type"});
      if (type == "Complete") gang.complete = true;
      if (type == "Failed" || type == "FailureTarget") {
        gang.failed = true;
        gang.failed_reason = Str(c, {"reason"});
        gang.failed_message = Str(c, {"message"});
      }
    }
  }
  const json& items = At(pods, {"items"});
  if (items.is_array()) {
    for (const json& pod : items) {
      if (OwnedBy(pod, job_uid)) gang.pods.push_back(ReadPod(pod));
    }
  }
  std::sort(gang.pods.begin(), gang.pods.end(), [](const KubePodView& a, const KubePodView& b) {
    return std::tie(a.node, a.name) < std::tie(b.node, b.name);
  });
  return gang;
}

bool KubePodFailed(const KubePodView& pod) {
  if (pod.terminated) return pod.exit_code != 0;
  return pod.phase == "Failed";
}

std::optional<size_t> KubeDecidingFailure(const KubeGangView& gang) {
  std::optional<size_t> best;
  auto rank = [](const KubePodView& p) {
    WorkerExitMeaning meaning;
    const int kind = Killed(p) ? 0 : MeaningOfWorkerExit(p.exit_code, &meaning) ? 1 : 2;
    const bool consequence = p.deleting && p.disruption_reason.empty();
    // An empty finishedAt (a pod failed without running) sorts last.
    return std::make_tuple(consequence ? 1 : 0, kind, p.finished_at.empty() ? 1 : 0, p.finished_at,
                           p.node);
  };
  for (size_t i = 0; i < gang.pods.size(); ++i) {
    if (!KubePodFailed(gang.pods[i])) continue;
    // A suspended Job's pods are being stopped on purpose (Kueue preempted
    // the workload; it will admit it again): not a failure of the gang.
    if (gang.suspended && gang.pods[i].deleting) continue;
    if (!best.has_value() || rank(gang.pods[i]) < rank(gang.pods[*best])) best = i;
  }
  return best;
}

bool KubeStartProblem(const std::string& reason) {
  return reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName" ||
         reason == "CreateContainerConfigError" || reason == "CreateContainerError";
}

bool KubeStartsNever(const std::string& reason) { return reason == "InvalidImageName"; }

std::vector<KubeNote> KubeNotes(const KubeGangView& gang, const std::string& job_name,
                                const std::string& queue) {
  std::vector<KubeNote> notes;
  if (gang.suspended) {
    notes.push_back({"job/suspended",
                     queue.empty() ? absl::StrCat("kubernetes: job ", job_name, " is suspended")
                                   : absl::StrCat("kubernetes: job ", job_name,
                                                  " suspended, waiting for Kueue queue ", queue,
                                                  " to admit it"),
                     0, false});
  } else if (!queue.empty()) {
    notes.push_back({"job/suspended",
                     absl::StrCat("kubernetes: job ", job_name, " admitted by Kueue queue ", queue),
                     0, false});
  }
  for (const KubePodView& p : gang.pods) {
    const int64_t node = std::max<int64_t>(p.node, 0);
    if (p.unschedulable) {
      notes.push_back({absl::StrCat("pod/", p.name, "/scheduled"),
                       absl::StrCat("kubernetes: pod ", p.name, " Pending: ", p.schedule_reason,
                                    p.schedule_message.empty() ? "" : ": ", p.schedule_message),
                       node, false});
    }
    if (!p.waiting_reason.empty() && p.waiting_reason != "ContainerCreating" &&
        p.waiting_reason != "PodInitializing") {
      notes.push_back({absl::StrCat("pod/", p.name, "/waiting/", p.waiting_reason),
                       absl::StrCat("kubernetes: pod ", p.name, ": container ", kKubeContainerName,
                                    " waiting: ", p.waiting_reason,
                                    p.waiting_message.empty() ? "" : ": ", p.waiting_message),
                       node, true});
    }
    if (p.phase == "Running") {
      notes.push_back({absl::StrCat("pod/", p.name, "/running"),
                       absl::StrCat("kubernetes: pod ", p.name, " running on node ",
                                    p.node_name.empty() ? "?" : p.node_name),
                       node, true});
    }
  }
  return notes;
}

std::vector<RankExit> KubeRankExits(const KubeGangView& gang, int64_t ranks_per_node) {
  std::vector<RankExit> out;
  for (const KubePodView& p : gang.pods) {
    if (!p.terminated || p.node < 0) continue;
    for (int64_t r = p.node * ranks_per_node; r < (p.node + 1) * ranks_per_node; ++r) {
      RankExit e;
      e.rank = r;
      if (p.exit_code > 128) {
        e.signal = p.exit_code - 128;
      } else {
        e.exit_code = p.exit_code;
      }
      out.push_back(e);
    }
  }
  return out;
}

LaunchOutcome KubeFailureOutcome(const KubeGangShape& shape, const KubePodView& pod,
                                 const std::string& log_tail, const std::string& log_error) {
  LaunchOutcome outcome;
  outcome.job_id = shape.job_id;
  outcome.attempt = shape.attempt;
  outcome.state = JobState::kFailed;
  outcome.retryable = true;
  const std::string who = KubeNodeRanks(std::max<int64_t>(pod.node, 0), shape.ranks_per_node);
  std::string what;
  if (CouldNotRun(pod)) {
    outcome.reason = kReasonLaunchFailed;
    outcome.retryable = false;
    what = absl::StrCat("could not start its worker (", pod.terminated_reason,
                        pod.terminated_message.empty() ? "" : ": ", pod.terminated_message,
                        "); check the worker image and worker_path");
  } else if (!pod.disruption_reason.empty()) {
    outcome.reason = kReasonKilled;
    what = absl::StrCat("was stopped by Kubernetes (", pod.disruption_reason,
                        pod.disruption_message.empty() ? "" : ": ", pod.disruption_message,
                        pod.terminated ? absl::StrCat("; exit code ", pod.exit_code) : "", ")");
  } else if (pod.terminated_reason == "OOMKilled") {
    outcome.reason = kReasonKilled;
    what = absl::StrCat(
        "was killed: out of memory (OOMKilled, exit code ", pod.exit_code,
        "): the pod passed its memory limit; give it more memory (foakd --kube_worker_memory) or "
        "use a smaller batch");
  } else if (pod.terminated && pod.exit_code > 128) {
    outcome.reason = kReasonKilled;
    const int sig = pod.exit_code - 128;
    what = absl::StrCat(
        "was killed by ", SignalName(sig), " (exit code ", pod.exit_code, ")",
        sig == SIGKILL ? " (possibly the out-of-memory killer)"
        : (sig == SIGSEGV || sig == SIGABRT || sig == SIGBUS || sig == SIGILL || sig == SIGFPE)
            ? " (the worker crashed)"
        : sig == SIGTERM && pod.deleting
            ? " (its pod was deleted: node drain, preemption or kubectl delete)"
            : " (not sent by foakd)",
        pod.pod_reason.empty() ? ""
                               : absl::StrCat("; pod ", pod.pod_reason, ": ", pod.pod_message));
  } else if (!pod.terminated) {
    outcome.reason = kReasonKilled;
    what = absl::StrCat("failed before its worker ended: pod ", pod.name, " is ", pod.phase,
                        pod.pod_reason.empty() ? "" : ": ", pod.pod_reason,
                        pod.pod_message.empty() ? "" : ": ", pod.pod_message);
  } else if (WorkerExitMeaning meaning; MeaningOfWorkerExit(pod.exit_code, &meaning)) {
    outcome.reason = meaning.reason;
    outcome.retryable = meaning.retryable;
    what = meaning.what;
  } else {
    outcome.reason =
        shape.nodes * shape.ranks_per_node > 1 ? kReasonGangMemberFailed : kReasonWorkerError;
    what = absl::StrCat("exited with code ", pod.exit_code);
  }
  outcome.message = absl::StrCat(who, " ", what);
  if (shape.nodes > 1) {
    absl::StrAppend(&outcome.message, "; the other ", shape.nodes - 1, " node(s) were stopped");
  }
  const std::string where = absl::StrCat("pod ", pod.name, " (kubectl logs -n ",
                                         shape.namespace_name, " ", pod.name, ")");
  if (!log_tail.empty()) {
    absl::StrAppend(&outcome.message, "; last lines of ", where, ":\n", log_tail);
  } else if (!pod.terminated_message.empty() && !CouldNotRun(pod)) {
    absl::StrAppend(&outcome.message, "; last lines of ", where, ":\n",
                    KubeLogTail(pod.terminated_message));
  } else if (!log_error.empty()) {
    absl::StrAppend(&outcome.message, "; the log of ", where, " could not be read: ", log_error);
  } else if (pod.terminated) {
    absl::StrAppend(&outcome.message, "; the log of ", where, " is empty");
  }
  return outcome;
}

LaunchOutcome KubeJobFailedOutcome(const KubeGangShape& shape, const KubeGangView& gang) {
  LaunchOutcome outcome;
  outcome.job_id = shape.job_id;
  outcome.attempt = shape.attempt;
  outcome.state = JobState::kFailed;
  outcome.reason =
      shape.nodes * shape.ranks_per_node > 1 ? kReasonGangMemberFailed : kReasonWorkerError;
  outcome.retryable = true;
  outcome.message = absl::StrCat("Kubernetes Job ", shape.namespace_name, "/", shape.job_name,
                                 " failed: ", gang.failed_reason, ": ", gang.failed_message);
  return outcome;
}

LaunchOutcome KubeStartFailureOutcome(const KubeGangShape& shape, const KubePodView& pod,
                                      int64_t waited_ms, const std::string& image) {
  LaunchOutcome outcome;
  outcome.job_id = shape.job_id;
  outcome.attempt = shape.attempt;
  outcome.state = JobState::kFailed;
  outcome.reason = kReasonLaunchFailed;
  outcome.retryable = false;
  outcome.message = absl::StrCat(
      KubeNodeRanks(std::max<int64_t>(pod.node, 0), shape.ranks_per_node), ": pod ", pod.name,
      " cannot start: container ", kKubeContainerName, " waiting: ", pod.waiting_reason,
      pod.waiting_message.empty() ? "" : ": ", pod.waiting_message,
      KubeStartsNever(pod.waiting_reason)
          ? ""
          : absl::StrCat(" (for ", absl::FormatDuration(absl::Milliseconds(waited_ms)), ")"),
      "; check the worker image ", image, " and the pod's configuration (kubectl describe pod -n ",
      shape.namespace_name, " ", pod.name, ")");
  return outcome;
}

std::string KubeLogTail(const std::string& log) {
  std::deque<std::string> lines;
  size_t bytes = 0;
  absl::string_view text = log;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.empty()) return "";
  for (absl::string_view piece : absl::StrSplit(text, '\n')) {
    std::string line = ValidUtf8(std::string(piece));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    TruncateUtf8(&line, kTailLineBytes);
    bytes += line.size() + 1;
    lines.push_back(std::move(line));
    while (lines.size() > kTailLines || (lines.size() > 1 && bytes > kTailBytes)) {
      bytes -= lines.front().size() + 1;
      lines.pop_front();
    }
  }
  return absl::StrJoin(lines, "\n");
}

}  // namespace foak

// Reading a gang's state out of the Kubernetes API's JSON, and turning a
// failed pod into a LaunchOutcome: pure functions, so every rule below is
// tested on plain JSON without a cluster or a thread.
//
// A pod is one NODE of the gang (its completion index), running
// `foak-worker launch`, which starts the node's ranks index*R .. index*R+R-1
// and exits with the exit code of its first failing rank (128 + signal for a
// signal). Hence messages say "node 1 (ranks 8-15)".
//
// Which failed pod decides the outcome (the others' failures are mostly the
// consequence of losing a peer, or of Kubernetes stopping them):
//   1. a pod NOT being deleted over one that is, unless Kubernetes marked it
//      disrupted (preempted, evicted, its node lost): when the Job fails,
//      the Job controller deletes the still-running pods, which then exit
//      with 143 (SIGTERM); they are the consequence, never the cause;
//   2. killed (OOMKilled, exit code > 128, disrupted, failed without its
//      container ending) over exit code 2 over any other code, like
//      LocalLauncher: the peers of a node that was killed outright fail
//      fast with an ordinary error;
//   3. the earliest finishedAt, then the lowest node.
// Outcome of the deciding pod:
//   exit code 2                  -> InvalidJob, not retryable
//   the container could not run
//   (StartError, e.g. a wrong
//   worker_path)                 -> LaunchFailed, not retryable
//   OOMKilled, > 128, disrupted  -> Killed, retryable (names the signal / OOM
//                                   / Kubernetes' reason)
//   other exit code              -> WorkerError (a gang of one rank) or
//                                   GangMemberFailed; retryable
// Pods are matched to the Job by ownerReference uid, not only by labels: a
// pod of an earlier Job of the same name (a restarted foakd relaunching the
// same attempt) may still be terminating with the same labels.
#ifndef FOAK_SERVER_LAUNCH_KUBE_GANG_STATUS_H_
#define FOAK_SERVER_LAUNCH_KUBE_GANG_STATUS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/launch/launcher.h"

namespace foak {

struct KubePodView {
  std::string name;
  int64_t node = -1;  // completion index; -1 when the pod has none
  std::string phase;  // Pending, Running, Succeeded, Failed
  std::string node_name;
  bool deleting = false;  // metadata.deletionTimestamp is set
  // The worker container, when it has terminated.
  bool terminated = false;
  int exit_code = -1;
  std::string terminated_reason;   // OOMKilled, Error, Completed, ...
  std::string terminated_message;  // with FallbackToLogsOnError: the log's tail
  std::string finished_at;         // RFC 3339
  // The worker container, while it waits to start.
  std::string waiting_reason;  // ErrImagePull, ImagePullBackOff, ContainerCreating, ...
  std::string waiting_message;
  // PodScheduled=False.
  bool unschedulable = false;
  std::string schedule_reason;
  std::string schedule_message;
  // status.reason / status.message of a failed pod (Evicted, Preempted, ...).
  std::string pod_reason;
  std::string pod_message;
  // DisruptionTarget=True: Kubernetes itself is stopping the pod
  // (PreemptionByScheduler, DeletionByTaintManager, EvictionByEvictionAPI,
  // TerminationByKubelet, ...).
  std::string disruption_reason;
  std::string disruption_message;
};

struct KubeGangView {
  bool complete = false;  // condition Complete=True
  bool failed = false;    // condition Failed=True or FailureTarget=True
  std::string failed_reason;
  std::string failed_message;
  bool suspended = false;         // spec.suspend
  std::vector<KubePodView> pods;  // the Job's own pods, by node then name
};

// `job`: a batch/v1 Job; `pods`: a v1 PodList. Pods not owned by `job_uid`
// are left out (see above).
KubeGangView ReadKubeGang(const nlohmann::json& job, const nlohmann::json& pods,
                          const std::string& job_uid);

// True when the pod failed: its worker exited with a code != 0, or the pod
// is Failed without its container having run to an end (evicted, preempted).
bool KubePodFailed(const KubePodView& pod);

// Index into gang.pods of the pod that decides a failed gang, if any failed.
std::optional<size_t> KubeDecidingFailure(const KubeGangView& gang);

// Waiting reasons that mean the pod cannot start by itself: failed after
// KubernetesLauncherOptions::pod_start_timeout_ms (immediately for
// InvalidImageName, see KubeStartsNever).
bool KubeStartProblem(const std::string& waiting_reason);
bool KubeStartsNever(const std::string& waiting_reason);

// A notable change worth telling the user through on_log.
struct KubeNote {
  std::string key;    // what it is about, e.g. "pod/foak-j-0-1-x/scheduled"
  std::string text;   // the log line, "kubernetes: ..."
  int64_t node = 0;   // its rank is node * ranks_per_node
  bool once = false;  // told once per key even when the text changes
};
std::vector<KubeNote> KubeNotes(const KubeGangView& gang, const std::string& job_name,
                                const std::string& queue);

// The shape of the gang the outcome is about.
struct KubeGangShape {
  std::string job_id;
  int64_t attempt = 0;
  std::string namespace_name;
  std::string job_name;
  int64_t nodes = 1;
  int64_t ranks_per_node = 1;
};

// RankExit of every rank of the pods that have terminated (a node's exit
// code stands for each of its ranks; >= 128 becomes the signal).
std::vector<RankExit> KubeRankExits(const KubeGangView& gang, int64_t ranks_per_node);

// The outcome decided by `pod` (see above). `log_tail`: the last lines of
// its log, or empty when they could not be read (`log_error` then says why;
// the container's termination message is used instead when it has one).
LaunchOutcome KubeFailureOutcome(const KubeGangShape& shape, const KubePodView& pod,
                                 const std::string& log_tail, const std::string& log_error);

// The Job failed (condition Failed) with no failed pod to show (a deadline,
// pods deleted): WorkerError / GangMemberFailed, retryable, with the
// condition's reason and message.
LaunchOutcome KubeJobFailedOutcome(const KubeGangShape& shape, const KubeGangView& gang);

// `pod` cannot start (KubeStartProblem): LaunchFailed, not retryable, with
// Kubernetes' reason and message; `waited_ms` is said unless the reason
// fails at once.
LaunchOutcome KubeStartFailureOutcome(const KubeGangShape& shape, const KubePodView& pod,
                                      int64_t waited_ms, const std::string& image);

// The last lines of `log` within about 2 KB (20 lines, each cut to 512
// bytes), valid UTF-8.
std::string KubeLogTail(const std::string& log);

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_KUBE_GANG_STATUS_H_

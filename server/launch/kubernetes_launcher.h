// KubernetesLauncher: runs each job attempt as a batch/v1 Indexed Job (one
// pod per node of the gang, `foak-worker launch` in each) plus a headless
// Service for the rendezvous, through the Kubernetes API (kube_client.h,
// kube_job_api.h). The objects are described in kube_objects.h, the options
// in kube_options.h, how pod states become outcomes in kube_gang_status.h.
//
// Why it is built the way it is:
//   * Polling, not watching: ONE monitor thread GETs each running Job and
//     LISTs its pods (label selector job id + attempt + instance) every
//     poll_interval_ms. A watch would need a long-lived stream per job, its
//     resourceVersion bookkeeping and a re-list on every "410 Gone" anyway;
//     a job lives for minutes to days, so two small requests every two
//     seconds per job cost nothing and survive API server restarts without
//     any special case. Every callback comes from this thread, never while
//     the launcher's lock is held; no HTTP request is made under the lock.
//   * Launch creates the Job FIRST, then the Service (owned by the Job, so
//     Kubernetes garbage-collects it with the Job). A Service that cannot be
//     created makes Launch delete the Job again, and a Job create that got no
//     answer (timeout) is looked up and deleted if it was made after all, so
//     a failed Launch leaves nothing behind. A Job of the same name that already exists (409) is an error
//     naming it, never deleted: foakd's names are per job AND attempt, and
//     KillOrphans removes this instance's leftovers at start, so the Job
//     belongs to someone else (another foakd with the same --kube_instance?)
//     and deleting it would kill their work. A Service that already exists
//     is a leftover of this very Job name (the Job create just succeeded)
//     and is replaced.
//   * Outcomes (first failure wins, kube_gang_status.h has the rules):
//       Job condition Complete      -> kSucceeded "Completed"
//       a pod's worker exit code 2  -> "InvalidJob", not retryable
//       OOMKilled / signal /
//       preempted, evicted          -> "Killed", retryable
//       worker could not start
//       (StartError)                -> "LaunchFailed", not retryable
//       other exit code             -> "WorkerError" (1 rank) or
//                                      "GangMemberFailed"; retryable
//       image pull / config errors  -> "LaunchFailed", not retryable, after
//                                      pod_start_timeout_ms (bad image names
//                                      at once)
//       Job deleted by someone else -> "WorkerError", retryable
//       API unreachable for
//       api_failure_timeout_ms      -> "LaunchFailed", not retryable
//       Cancel / Shutdown           -> kCancelled "Cancelled"
//     The message names the node and its ranks, the exit code or signal and
//     the last lines of the failing pod's log (GET .../log?tailLines=20).
//   * A failed gang's Job is deleted at once (propagationPolicy Background),
//     which stops the other pods (gang semantics; backoffLimit 0 already
//     makes the Job controller stop them too), and on_exit fires once the
//     Job and its pods are gone (or grace + deletion_wait_ms have passed).
//     A cancelled Job is deleted with propagationPolicy Foreground and
//     on_exit fires once GET returns 404. A SUCCEEDED Job is left to
//     ttlSecondsAfterFinished so `kubectl logs` still works for a while;
//     only its Service is deleted.
//   * Kubernetes events of the gang (a pod that cannot be scheduled, an
//     image that cannot be pulled, a Job waiting in a Kueue queue, a pod
//     running on a node) become on_log lines "kubernetes: ..." of the pod's
//     first rank, once per change. The workers' own output is not streamed
//     (they report to foakd themselves; `kubectl logs` has the rest).
//   * KillOrphans ignores its run_root: it lists the Jobs labelled
//     managed-by=foakd and instance=<options.instance>, deletes each with
//     its Service (succeeded ones too: their job may still be RUNNING in the
//     store of a foakd that crashed, which relaunches the same attempt
//     name), waits (bounded) for their pods to be gone, and returns
//     their job ids (the foak.dev/job-id annotation) for the coordinator to
//     requeue from their checkpoints.
// RBAC it needs in its namespace (deploy/k8s/base/role.yaml): jobs create,
// get, list, delete; services create, delete; pods list; pods/log get.
#ifndef FOAK_SERVER_LAUNCH_KUBERNETES_LAUNCHER_H_
#define FOAK_SERVER_LAUNCH_KUBERNETES_LAUNCHER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/launch/kube_client.h"
#include "server/launch/kube_gang_status.h"
#include "server/launch/kube_job_api.h"
#include "server/launch/kube_options.h"  // KubernetesLauncherOptions: every option, documented
#include "server/launch/launcher.h"

namespace foak {

class KubernetesLauncher : public Launcher {
 public:
  // INVALID_ARGUMENT naming the option that is wrong (see
  // ValidateKubernetesLauncherOptions); an empty namespace_name is read from
  // the service account's namespace file (an error names it when missing).
  // Makes no request to the API server.
  static absl::StatusOr<std::unique_ptr<KubernetesLauncher>> Create(
      KubernetesLauncherOptions options, Launcher::Callbacks callbacks);
  ~KubernetesLauncher() override;  // Shutdown()

  KubernetesLauncher(const KubernetesLauncher&) = delete;
  KubernetesLauncher& operator=(const KubernetesLauncher&) = delete;

  // Creates the Job and the Service of request.gang (request.ranks,
  // working_dir and run_dir are the local launcher's and not used). Blocks
  // for the API requests (at most a few request timeouts). Errors name the
  // object and carry the API's message (403 RBAC, 422 invalid, 409 exists,
  // unreachable); then nothing is left in the cluster and on_exit does not
  // fire. FAILED_PRECONDITION if the job already runs; UNAVAILABLE after
  // Shutdown.
  absl::Status Launch(const LaunchRequest& request) override;
  // Marks the job cancelled and returns at once; the monitor thread deletes
  // the Job (Foreground) and its Service and reports kCancelled when the Job
  // is gone. NOT_FOUND for a job this launcher does not run.
  absl::Status Cancel(const std::string& job_id) override;
  bool IsRunning(const std::string& job_id) override;
  int64_t RunningJobs() override;
  // See the file comment; `run_root` is ignored. Blocks up to grace +
  // deletion_wait_ms while the orphans' pods stop.
  absl::StatusOr<std::vector<std::string>> KillOrphans(const std::string& run_root) override;
  // Cancels every job, waits until their Jobs are deleted (each bounded by
  // grace + deletion_wait_ms) and stops the monitor thread. Idempotent.
  // From a callback it only starts stopping; the destructor finishes.
  void Shutdown() override;

  // The options in use, with the namespace and API server resolved.
  const KubernetesLauncherOptions& options() const { return options_; }

 private:
  using Clock = std::chrono::steady_clock;

  // What Launch/Cancel and the monitor share (under mu_).
  struct Job {
    std::string job_id;
    int64_t attempt = 0;
    std::string name;  // of the Job and the Service
    std::string uid;   // of the Job, once created
    std::string queue;
    int64_t nodes = 1;
    int64_t ranks_per_node = 1;
    bool created = false;  // false while Launch is still creating it
    bool cancelled = false;
    std::string cancel_message;
  };

  // What the monitor thread alone keeps per job between polls.
  struct Tracker {
    std::string name;  // the Job it tracks; a relaunch gets a fresh Tracker
    bool stopping = false;
    std::optional<LaunchOutcome> outcome;  // decided; reported once stopped
    std::string propagation;               // of the Job's deletion
    bool job_delete_sent = false;
    bool service_delete_sent = false;
    Clock::time_point stop_deadline;
    std::optional<Clock::time_point> api_failing_since;
    std::map<std::string, std::string> notes_told;                 // KubeNote key -> text
    std::map<std::string, Clock::time_point> start_problem_since;  // pod -> first seen
  };

  KubernetesLauncher(KubernetesLauncherOptions options, Launcher::Callbacks callbacks,
                     std::unique_ptr<KubeJobApi> api);

  void MonitorLoop();
  // One poll of one job; the outcome when it is over.
  std::optional<LaunchOutcome> PollJob(const Job& job, Tracker* t, std::vector<LogLine>* lines);
  std::optional<LaunchOutcome> PollStopping(const Job& job, Tracker* t);
  // Records an API failure; fails the job once they last too long.
  void ApiTrouble(const Job& job, Tracker* t, const std::string& error);
  void BeginStop(Tracker* t, LaunchOutcome outcome, const std::string& propagation);
  void TellNotes(const Job& job, const KubeGangView& gang, Tracker* t, std::vector<LogLine>* lines);
  // The outcome of a gang that failed, or of one that cannot start; none
  // while it runs (or waits) normally.
  std::optional<LaunchOutcome> FailureOf(const Job& job, const KubeGangView& gang, Tracker* t);
  LaunchOutcome Outcome(const Job& job, JobState state, const char* reason, bool retryable,
                        std::string message) const;
  KubeGangShape Shape(const Job& job) const;
  std::string Selector(const Job& job) const;  // of its pods

  const KubernetesLauncherOptions options_;
  const Launcher::Callbacks callbacks_;
  const std::unique_ptr<KubeJobApi> api_;

  absl::Mutex shutdown_mu_;  // serializes Shutdown(); taken before mu_
  bool joined_ ABSL_GUARDED_BY(shutdown_mu_) = false;

  absl::Mutex mu_;
  absl::CondVar wake_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // A Launch, Cancel or Shutdown since the monitor's last snapshot: poll
  // again at once instead of waiting out the interval.
  bool poll_now_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);

  std::map<std::string, Tracker> trackers_;  // monitor thread only, by job id
  std::thread monitor_;
};

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_KUBERNETES_LAUNCHER_H_

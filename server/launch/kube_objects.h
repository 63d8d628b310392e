// The Kubernetes objects of one job attempt, as JSON, built by pure functions
// (no I/O) so they can be checked field by field and against the official
// OpenAPI schemas (deploy/k8s/validate.sh) without a cluster.
//
// One attempt = one batch/v1 Job + one headless v1 Service, both named
// foak-<job id>-<attempt>:
//   * The Job is Indexed with completions = parallelism = nodes: the pod of
//     index i is node i of the gang (JOB_COMPLETION_INDEX, which
//     `foak-worker launch` takes as its node rank) and gets the stable
//     hostname <job name>-<i>. backoffLimit 0: Kubernetes must not restart a
//     single pod of a gang (its peers would wait for it at a collective
//     forever); foakd restarts the whole gang itself, per max_restarts, as a
//     new attempt with new names.
//   * The pods' subdomain is the Service, so node 0 is reachable as
//     <job name>-0.<service> (MASTER_ADDR) as soon as it has an address;
//     publishNotReadyAddresses because the workers have no readiness probe
//     and must rendezvous before anything is "ready".
//   * The Service is owned by the Job (ownerReference with the Job's uid), so
//     deleting the Job, or its ttlSecondsAfterFinished running out, removes
//     the Service too; hence the Job is created first.
//   * With a Kueue queue the Job is created suspended with the queue-name
//     label; Kueue admits the whole gang at once and unsuspends it.
//   * Labels: app.kubernetes.io/{name=foak-worker, part-of=foak,
//     managed-by=foakd, instance=<options.instance>} and foak.dev/job-id,
//     foak.dev/attempt; the exact job id is in the foak.dev/job-id
//     annotation (a label value cannot hold every id).
//   * Names are DNS-1123 labels of at most 57 characters, so pod hostnames
//     <job name>-<index> stay within 63 for up to 100000 nodes. An id that
//     had to be changed (upper case, '_', '.') or cut gets 8 hex digits of a
//     hash of the exact id, so two ids never share a name.
#ifndef FOAK_SERVER_LAUNCH_KUBE_OBJECTS_H_
#define FOAK_SERVER_LAUNCH_KUBE_OBJECTS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "server/launch/kube_options.h"
#include "server/launch/launcher.h"

namespace foak {

inline constexpr char kKubeLabelName[] = "app.kubernetes.io/name";
inline constexpr char kKubeLabelPartOf[] = "app.kubernetes.io/part-of";
inline constexpr char kKubeLabelManagedBy[] = "app.kubernetes.io/managed-by";
inline constexpr char kKubeLabelInstance[] = "app.kubernetes.io/instance";
inline constexpr char kKubeLabelJobId[] = "foak.dev/job-id";
inline constexpr char kKubeLabelAttempt[] = "foak.dev/attempt";
inline constexpr char kKubeAnnotationJobId[] = "foak.dev/job-id";
inline constexpr char kKubeLabelQueue[] = "kueue.x-k8s.io/queue-name";
inline constexpr char kKubeAnnotationCompletionIndex[] = "batch.kubernetes.io/job-completion-index";
inline constexpr char kKubeManagedBy[] = "foakd";
inline constexpr char kKubeContainerName[] = "worker";
inline constexpr size_t kKubeMaxObjectNameBytes = 57;

// foak-<job id: lower case, other than [a-z0-9-] -> '-'>-<attempt>, see above.
std::string KubeObjectName(const std::string& job_id, int64_t attempt);

// The foak.dev/job-id label value of `job_id`: the id when it is a valid
// label value, else a cleaned, cut id with a hash, like KubeObjectName.
std::string KubeJobIdLabel(const std::string& job_id);

// The labels that select one attempt's pods: job id, attempt, instance.
std::map<std::string, std::string> KubeSelectorLabels(const std::string& instance,
                                                      const std::string& job_id, int64_t attempt);
// Every label of the attempt's objects (the selector labels and the rest).
std::map<std::string, std::string> KubeObjectLabels(const std::string& instance,
                                                    const std::string& job_id, int64_t attempt);
// "k1=v1,k2=v2" (unescaped; UrlQueryEscape it for a query).
std::string KubeLabelSelector(const std::map<std::string, std::string>& labels);

// "node 1 (ranks 8-15)", "node 0 (rank 0)".
std::string KubeNodeRanks(int64_t node, int64_t ranks_per_node);

bool IsDns1123Label(const std::string& s);
bool IsDns1123Subdomain(const std::string& s);
bool IsKubeLabelValue(const std::string& s);
bool IsKubeLabelKey(const std::string& s);  // [prefix/]name
bool IsKubeQuantity(const std::string& s);  // "16Gi", "500m", "1.5", "2e3"

// INVALID_ARGUMENT naming the field (namespace_name, image, ...); the
// namespace must already be resolved (not empty).
absl::Status ValidateKubernetesLauncherOptions(const KubernetesLauncherOptions& options);
// INVALID_ARGUMENT naming the GangSpec field: nodes, ranks_per_node,
// gpus_per_node, worker_args, env, node_selector, tolerations[i], queue.
absl::Status ValidateGangSpec(const GangSpec& gang);

// The batch/v1 Job of `request` (its job_id, attempt and gang; ranks,
// working_dir and run_dir are for the local launcher and not used).
nlohmann::json KubeJobObject(const KubernetesLauncherOptions& options,
                             const LaunchRequest& request);
// The headless v1 Service, owned by the Job whose uid the create returned.
nlohmann::json KubeServiceObject(const KubernetesLauncherOptions& options,
                                 const LaunchRequest& request, const std::string& job_uid);
// A DeleteOptions body: propagationPolicy "Foreground" or "Background", and
// with a `uid` the precondition that the object is still that one (a Job of
// the same name created by someone since is never deleted: 409 instead).
std::string KubeDeleteOptions(const std::string& propagation_policy, const std::string& uid = "");

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_KUBE_OBJECTS_H_

// KubernetesLauncherOptions: everything that shapes the worker pods foakd
// creates and how it watches them. A plain struct in its own header so the
// pure object builders (kube_objects.h) and the launcher
// (kubernetes_launcher.h, which includes this) share it; foakd fills it from
// its --kube_* flags. KubernetesLauncher::Create checks every field and names
// the one that is wrong.
#ifndef FOAK_SERVER_LAUNCH_KUBE_OPTIONS_H_
#define FOAK_SERVER_LAUNCH_KUBE_OPTIONS_H_

#include <cstdint>
#include <string>

#include "server/launch/kube_client.h"

namespace foak {

struct KubernetesLauncherOptions {
  // Namespace of the Jobs and Services. Empty = foakd's own, read from
  // /var/run/secrets/kubernetes.io/serviceaccount/namespace at Create.
  std::string namespace_name;

  // --- the worker pods ---
  // The worker image (deploy/docker/worker.Dockerfile). Required.
  std::string image;
  std::string image_pull_policy = "IfNotPresent";  // "Always", "IfNotPresent" or "Never"
  // foak-worker inside the image (absolute); the pod runs
  //   WORKER launch --nproc-per-node R --nnodes N --master-addr <job>-0.<service>
  //          --master-port P -- <GangSpec.worker_args>
  std::string worker_path = "/usr/local/bin/foak-worker";
  // serviceAccountName of the pods; empty = the namespace's "default". The
  // pods get no API token either way (automountServiceAccountToken: false):
  // workers talk to foakd, never to Kubernetes.
  std::string service_account;
  // PersistentVolumeClaim mounted in every pod at shared_mount_path
  // (ReadWriteMany for jobs of 2+ nodes). Required: the worker reads its job
  // file, the model and the dataset there and writes its checkpoints there,
  // so foakd's --shared_dir must be on the same volume at the same path.
  std::string shared_volume_claim;
  std::string shared_mount_path = "/shared";  // absolute, not /dev/shm
  // sizeLimit of the memory-backed emptyDir at /dev/shm: NCCL's shared-memory
  // transport and data loaders need far more than the container runtime's
  // default 64 MiB. It counts against the pod's memory. A Kubernetes quantity.
  std::string shm_size = "16Gi";
  // The rendezvous port of node 0 (MASTER_PORT) and of the headless Service.
  int64_t master_port = 29500;
  // Kubernetes quantities, e.g. "8", "500m", "64Gi"; empty = not set. The
  // CPU limit stays unset by default (a CPU limit throttles the data loader);
  // memory_limit empty = memory_request (a pod that may exceed its request
  // is the first one the kubelet evicts under memory pressure).
  std::string cpu_request;
  std::string cpu_limit;
  std::string memory_request;
  std::string memory_limit;
  // app.kubernetes.io/instance of everything this foakd creates (a valid
  // label value), so several foakds can share a namespace: each one watches,
  // and KillOrphans deletes, only its own.
  std::string instance = "foakd";

  // --- timing ---
  // terminationGracePeriodSeconds of the pods (rounded up to whole seconds):
  // the time between SIGTERM and SIGKILL when a Job is deleted.
  int64_t grace_period_ms = 10000;
  // ttlSecondsAfterFinished of a Job: how long a finished Job and its pods
  // (and so `kubectl logs`) stay. foakd deletes a failed or cancelled Job
  // itself at once; a succeeded one is left for this long. >= 60 (a shorter
  // one could delete a Job before foakd sees it finish), or -1 = never.
  int64_t ttl_seconds_after_finished = 3600;
  // How often the monitor thread reads each running Job and its pods.
  int64_t poll_interval_ms = 2000;
  // A pod whose container keeps waiting with ErrImagePull, ImagePullBackOff,
  // CreateContainerConfigError or CreateContainerError this long fails the
  // job with LaunchFailed (InvalidImageName fails it at once).
  int64_t pod_start_timeout_ms = 5 * 60 * 1000;
  // The API server failing (unreachable, 5xx, 401/403) on every poll of a
  // job for this long fails the job with LaunchFailed; shorter outages are
  // waited out.
  int64_t api_failure_timeout_ms = 5 * 60 * 1000;
  // After deleting a Job (cancel, failure, shutdown), how long past the
  // grace period foakd waits for its pods to be gone before reporting the
  // outcome anyway (a node that stopped answering keeps pods "Terminating").
  int64_t deletion_wait_ms = 60 * 1000;

  // How to reach the API server (in-cluster defaults).
  KubeClientOptions client;
};

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_KUBE_OPTIONS_H_

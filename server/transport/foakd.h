// Foakd: the coordinator assembled -- job store (SQLite), uploaded files,
// worker tokens, Prometheus metrics over HTTP, the local launcher, the
// JobManager and the gRPC server (JobService, WorkerService, FileService, the
// standard health service and server reflection). foakd's main() parses
// flags into FoakdOptions; tests start it in-process the same way.
//
// Shutdown order, so that nothing is cut off mid-way: (1) health reports
// NOT_SERVING and the manager refuses new jobs and ends every WatchJob
// stream with UNAVAILABLE ("watch again with after_seq = N"); (2) the gRPC
// server drains in-flight calls until shutdown_timeout; (3) workers are
// stopped (SIGTERM, then SIGKILL after the grace period) without changing
// their jobs' states, so the next start requeues them from their newest
// checkpoint; (4) the metrics endpoint and the store close.
#ifndef FOAK_SERVER_TRANSPORT_FOAKD_H_
#define FOAK_SERVER_TRANSPORT_FOAKD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/domain/job_spec_policy.h"
#include "server/launch/kube_options.h"
#include "server/transport/tls_options.h"

namespace foak {

struct FoakdOptions {
  std::string listen_address = "127.0.0.1:7070";   // gRPC; port 0 = any free port
  std::string metrics_address = "127.0.0.1:9464";  // /metrics; empty = off; port 0 = any
  // A file holding one token: /metrics then needs "Authorization: Bearer
  // <token>" (metrics_http_server.h). Empty = open.
  std::string metrics_bearer_token_file;
  // False: no per-job (job_id-labelled) series on /metrics (ServerMetricsOptions).
  bool metrics_per_job_series = true;
  std::string data_dir = "foakd-data";             // made absolute
  std::string db_path;                             // default <data_dir>/foakd.db
  // Where job files, uploaded files and default job outputs go: a folder the
  // workers see at the same path (with the Kubernetes launcher, a
  // ReadWriteMany volume mounted in foakd and in every worker pod). Default
  // data_dir. The database and the worker-token key stay in data_dir.
  std::string shared_dir;
  // "local": workers are processes on this host (gpu_ids, cpu_slots);
  // "kubernetes": every job is an Indexed Job of the worker image, placed by
  // the cluster (see server/launch/kubernetes_launcher.h).
  std::string launcher = "local";
  KubernetesLauncherOptions kubernetes;            // launcher == "kubernetes"
  // HOST:PORT workers dial to report (FOAK_COORDINATOR); default: the listen
  // address (a wildcard host becomes 127.0.0.1). With the Kubernetes launcher
  // set it to foakd's Service, e.g. foakd:7070.
  std::string advertise_address;
  std::string worker_path;                         // foak-worker executable (required)
  std::vector<int> gpu_ids;                        // GPUs to schedule; empty = CPU jobs only
  int64_t cpu_slots = 1;                           // CPU jobs at once
  int64_t grace_period_ms = 10000;                 // SIGTERM -> SIGKILL
  // A running attempt silent this long is stopped (JobManagerOptions); 0 = never.
  int64_t stall_timeout_ms = 30 * 60 * 1000;
  // An attempt with no report this long after its launch (pods that never
  // start) is stopped (JobManagerOptions); 0 = never.
  int64_t start_timeout_ms = 24 * 3600 * 1000;
  int64_t max_upload_bytes = 1ll << 30;
  int64_t finished_job_retention_ms = 10 * 60 * 1000;  // metrics series of finished jobs
  int64_t shutdown_timeout_ms = 5000;              // in-flight RPCs at shutdown
  // TLS on the gRPC port and for the workers' reports (tls_options.h); off
  // by default.
  FoakdTlsOptions tls;
  // API tokens bound to tenants (server/domain/api_tokens.h); empty = no
  // tokens, every caller sees every job.
  std::string auth_tokens_file;
  // Where a spec's paths may point and how big a job may be
  // (server/domain/job_spec_policy.h); roots as given, resolved by Start.
  // Default: anywhere, any size.
  JobSpecPolicy spec_policy;
};

class Foakd {
 public:
  static absl::StatusOr<std::unique_ptr<Foakd>> Start(FoakdOptions options);
  ~Foakd();

  int grpc_port() const;
  int metrics_port() const;  // 0 when off
  const FoakdOptions& options() const;

  // Graceful shutdown (see the file comment); idempotent.
  void Shutdown();

  // Re-reads auth_tokens_file (foakd does on SIGHUP): the number of tokens
  // now in force. FAILED_PRECONDITION without one; on a parse error the old
  // tokens stay.
  absl::StatusOr<size_t> ReloadAuthTokens();

  struct Parts;

 private:
  explicit Foakd(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

// Non-empty when API tokens would cross the network in plaintext:
// auth_tokens_file set, no TLS, and listen_address not a loopback host
// (127.0.0.0/8, localhost, ::1). Foakd::Start prints it to stderr as a
// warning; foakd still starts (a TLS-terminating proxy on the same host is a
// valid setup).
std::string PlaintextTokensWarning(const FoakdOptions& options);

// "auto": the NVIDIA devices of this host (/dev/nvidia0, /dev/nvidia1, ...);
// "none" or "": no GPU; "0,2": those CUDA indices. INVALID_ARGUMENT otherwise.
absl::StatusOr<std::vector<int>> ParseGpuList(const std::string& value);

}  // namespace foak

#endif  // FOAK_SERVER_TRANSPORT_FOAKD_H_

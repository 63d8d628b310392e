// foakd: the coordinator. Flags into FoakdOptions, then wait for SIGINT or
// SIGTERM and shut down gracefully (server/transport/foakd.h). The signals are
// blocked in every thread and taken synchronously with sigwait in main, so no
// work happens inside a signal handler.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "server/domain/job_spec.h"
#include "server/transport/foakd.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070", "gRPC address (HOST:PORT; port 0 = any free port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "Prometheus /metrics address (HOST:PORT); empty = no metrics endpoint");
ABSL_FLAG(std::string, data_dir, "foakd-data",
          "folder for the job database, uploaded files, job logs and default outputs");
ABSL_FLAG(std::string, db, "", "SQLite job database (default: DATA_DIR/foakd.db)");
ABSL_FLAG(std::string, shared_dir, "",
          "folder the workers see at the same path, for job files, uploaded files and default "
          "outputs (default: DATA_DIR); with --launcher kubernetes a ReadWriteMany volume mounted "
          "in foakd and every worker pod");
ABSL_FLAG(std::string, launcher, "local",
          "where workers run: local (processes on this host) or kubernetes (an Indexed Job per "
          "job, in the cluster foakd runs in)");
ABSL_FLAG(std::string, advertise_address, "",
          "HOST:PORT workers dial to report (default: the --listen address); with --launcher "
          "kubernetes, foakd's Service, e.g. foakd:7070");
ABSL_FLAG(std::string, kube_namespace, "",
          "namespace of the workers' Jobs (default: $FOAKD_NAMESPACE, else foakd's own from its "
          "service account)");
ABSL_FLAG(std::string, kube_image, "", "the worker image (deploy/docker/worker.Dockerfile); required with --launcher kubernetes");
ABSL_FLAG(std::string, kube_image_pull_policy, "IfNotPresent", "Always, IfNotPresent or Never");
ABSL_FLAG(std::string, kube_service_account, "", "service account of the worker pods (default: the namespace's default)");
ABSL_FLAG(std::string, kube_shared_claim, "",
          "PersistentVolumeClaim mounted in every worker pod at --kube_shared_mount (it must hold "
          "--shared_dir and the models); required with --launcher kubernetes");
ABSL_FLAG(std::string, kube_shared_mount, "/shared", "where the shared claim is mounted in worker pods");
ABSL_FLAG(std::string, kube_shm_size, "16Gi", "size of each worker pod's memory-backed /dev/shm (NCCL, data loading)");
ABSL_FLAG(std::string, kube_worker_cpu, "", "CPU request of each worker pod, e.g. 8 (default: none)");
ABSL_FLAG(std::string, kube_worker_memory, "", "memory request and limit of each worker pod, e.g. 64Gi (default: none)");
ABSL_FLAG(std::string, kube_instance, "foakd",
          "this foakd's name in the app.kubernetes.io/instance label of what it creates, so "
          "several foakds can share a namespace");
ABSL_FLAG(std::string, kube_api_server, "",
          "Kubernetes API server URL (default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)");
ABSL_FLAG(std::string, kube_token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token",
          "bearer token file, re-read on every request (projected tokens rotate)");
ABSL_FLAG(std::string, kube_ca_file, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
          "CA bundle that signed the API server's certificate");
ABSL_FLAG(int64_t, kube_ttl_after_finished_s, 3600,
          "seconds a succeeded Job (and its pods' logs) stays before Kubernetes deletes it");
ABSL_FLAG(double, kube_poll_interval_s, 2, "how often each running Job and its pods are read");
ABSL_FLAG(std::string, worker, "",
          "foak-worker executable (default: next to foakd, then ../worker/foak-worker)");
ABSL_FLAG(std::string, gpus, "auto",
          "GPUs to schedule: auto (this host's NVIDIA devices), none, or CUDA indices like 0,1");
ABSL_FLAG(int64_t, cpu_slots, 1, "CPU jobs (resources.gpus = 0) that may run at once");
ABSL_FLAG(double, grace_period_s, 10, "seconds between SIGTERM and SIGKILL when stopping a worker");
ABSL_FLAG(double, stall_timeout_s, 1800,
          "seconds a running job may go without a worker report (start, logged step, "
          "evaluation, checkpoint) before its workers are stopped and it restarts or fails as "
          "\"Stalled\"; a spec's stall_timeout_s overrides it; 0 = never");
ABSL_FLAG(double, start_timeout_s, 86400,
          "seconds from a job attempt's launch to its workers' first report (pods waiting for "
          "capacity or in a Kueue queue, images pulling, the model loading) before its workers "
          "are stopped and it restarts or fails as \"StartTimeout\"; a spec's start_timeout_s "
          "overrides it; -1 (or 0) = never");
ABSL_FLAG(int64_t, max_upload_bytes, int64_t{1} << 30, "largest file FileService accepts");
ABSL_FLAG(double, finished_job_retention_s, 600,
          "seconds a finished job's metrics series stay on /metrics");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) of foakd's gRPC port; with --tls_key turns TLS on (default: "
          "plaintext, fine on loopback only)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; set = mutual TLS: every client (foakctl, workers) must present a "
          "certificate it signed");
ABSL_FLAG(std::string, worker_tls_ca, "",
          "with TLS: the PEM CA workers verify foakd's certificate with (passed to them as "
          "FOAK_COORDINATOR_TLS_CA; the path as the workers see it)");
ABSL_FLAG(std::string, worker_tls_cert, "",
          "with --tls_client_ca: the PEM client certificate workers present (FOAK_COORDINATOR_TLS_CERT)");
ABSL_FLAG(std::string, worker_tls_key, "",
          "with --tls_client_ca: the PEM key of --worker_tls_cert (FOAK_COORDINATOR_TLS_KEY)");
ABSL_FLAG(std::string, worker_tls_server_name, "",
          "with TLS: the name workers check foakd's certificate against instead of the host "
          "they dial (FOAK_COORDINATOR_TLS_SERVER_NAME), when they reach foakd by an IP or a "
          "Service name the certificate does not carry; it must carry this one");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "API tokens, one 'TENANT sha256:HEX' (or 'TENANT TOKEN') a line; set = every JobService "
          "and FileService call needs 'authorization: Bearer TOKEN' and a tenant sees only its own "
          "jobs and files; re-read on SIGHUP");
ABSL_FLAG(std::string, metrics_bearer_token_file, "",
          "a file holding one token (at least 16 characters); set = /metrics answers only "
          "'Authorization: Bearer TOKEN' (401 otherwise; /healthz stays open)");
ABSL_FLAG(bool, metrics_per_job_series, true,
          "export the series labelled by job_id (step, loss, tokens, memory per job); false = only "
          "aggregates (jobs by state, finished jobs, queue wait, requests)");
ABSL_FLAG(std::string, port_file, "",
          "once listening, write 'grpc=PORT' and 'metrics=PORT' lines here (for scripts and tests "
          "that listen on port 0)");
ABSL_FLAG(std::string, model_roots, "",
          "comma-separated folders a spec's model must lie in (symlinks and '..' resolved first); "
          "empty = anywhere foakd can read");
ABSL_FLAG(std::string, data_roots, "",
          "comma-separated folders a spec's dataset files must lie in (uploaded file ids are always "
          "allowed); empty = anywhere");
ABSL_FLAG(std::string, output_roots, "",
          "comma-separated folders a spec's output_dir and resume_from_checkpoint must lie in (an "
          "empty output_dir, foakd's own jobs/<id>/output, is always allowed); empty = anywhere");
ABSL_FLAG(std::string, shared_model_roots, "",
          "comma-separated folders of models every tenant may use (with --auth_tokens_file the "
          "other roots are split per tenant: a tenant's paths must lie in <root>/<tenant>/); may "
          "not overlap --output_roots; empty = none");
ABSL_FLAG(int64_t, max_gpus_per_job, 0,
          "most GPUs one job may ask for (resources.gpus x resources.nodes); 0 = no limit");
ABSL_FLAG(int64_t, max_nodes_per_job, 0, "most resources.nodes one job may ask for; 0 = no limit");
ABSL_FLAG(int64_t, max_seq_len, 0,
          "largest hyperparameters.max_seq_len (and bench.seq_lens) a job may ask for; 0 = no limit");
ABSL_FLAG(int64_t, max_steps, 0,
          "most optimizer steps a job may run (hyperparameters.max_steps, then required; a "
          "benchmark's planned steps); 0 = no limit");
ABSL_FLAG(double, max_epochs, 0,
          "largest hyperparameters.epochs of a job without max_steps; 0 = no limit");

namespace {

// KubernetesLauncher::Create names the option it refuses ("image = ''; ...");
// a foakd user set it through a flag, so the message names the flag.
std::string InFlagTerms(std::string message) {
  static constexpr std::pair<const char*, const char*> kFlags[] = {
      {"namespace_name", "--kube_namespace"},
      {"image_pull_policy", "--kube_image_pull_policy"},
      {"image", "--kube_image"},
      {"service_account", "--kube_service_account"},
      {"shared_volume_claim", "--kube_shared_claim"},
      {"shared_mount_path", "--kube_shared_mount"},
      {"shm_size", "--kube_shm_size"},
      {"cpu_request", "--kube_worker_cpu"},
      {"memory_request", "--kube_worker_memory"},
      {"instance", "--kube_instance"},
      {"ttl_seconds_after_finished", "--kube_ttl_after_finished_s"},
      {"poll_interval_ms", "--kube_poll_interval_s (in ms)"},
      {"grace_period_ms", "--grace_period_s (in ms)"},
      {"api_server", "--kube_api_server"},
      {"token_file", "--kube_token_file"},
      {"ca_file", "--kube_ca_file"}};
  for (const auto& [field, flag] : kFlags) {
    const std::string prefix = std::string(field) + " ";
    if (message.rfind(prefix, 0) == 0) return std::string(flag) + message.substr(std::strlen(field));
  }
  return message;
}

std::string DefaultWorker(const char* argv0) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir = ".";
  if (n > 0) {
    self[n] = '\0';
    dir = std::string(self);
    dir = dir.substr(0, dir.rfind('/'));
  } else if (std::string(argv0).find('/') != std::string::npos) {
    dir = std::string(argv0).substr(0, std::string(argv0).rfind('/'));
  }
  for (const std::string& candidate :
       {foak::JoinPath(dir, "foak-worker"), foak::JoinPath(dir, "../../worker/foak-worker"),
        foak::JoinPath(dir, "../worker/foak-worker")}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return foak::JoinPath(dir, "foak-worker");
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the foak coordinator: accepts fine-tuning jobs over gRPC, schedules foak-worker processes, "
      "serves Prometheus metrics.\n  foakd [--listen 127.0.0.1:7070] [--data-dir foakd-data] "
      "[--gpus auto] ...");
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGHUP);  // re-read --auth_tokens_file
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts

  foak::FoakdOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_listen);
  options.metrics_bearer_token_file = absl::GetFlag(FLAGS_metrics_bearer_token_file);
  options.metrics_per_job_series = absl::GetFlag(FLAGS_metrics_per_job_series);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.db_path = absl::GetFlag(FLAGS_db);
  options.shared_dir = absl::GetFlag(FLAGS_shared_dir);
  options.launcher = absl::GetFlag(FLAGS_launcher);
  options.advertise_address = absl::GetFlag(FLAGS_advertise_address);
  foak::KubernetesLauncherOptions& kube = options.kubernetes;
  kube.namespace_name = absl::GetFlag(FLAGS_kube_namespace);
  if (kube.namespace_name.empty() && getenv("FOAKD_NAMESPACE") != nullptr) {
    kube.namespace_name = getenv("FOAKD_NAMESPACE");
  }
  kube.image = absl::GetFlag(FLAGS_kube_image);
  kube.image_pull_policy = absl::GetFlag(FLAGS_kube_image_pull_policy);
  kube.service_account = absl::GetFlag(FLAGS_kube_service_account);
  kube.shared_volume_claim = absl::GetFlag(FLAGS_kube_shared_claim);
  kube.shared_mount_path = absl::GetFlag(FLAGS_kube_shared_mount);
  kube.shm_size = absl::GetFlag(FLAGS_kube_shm_size);
  kube.cpu_request = absl::GetFlag(FLAGS_kube_worker_cpu);
  kube.memory_request = absl::GetFlag(FLAGS_kube_worker_memory);
  kube.instance = absl::GetFlag(FLAGS_kube_instance);
  if (!absl::GetFlag(FLAGS_kube_api_server).empty()) {
    kube.client.api_server = absl::GetFlag(FLAGS_kube_api_server);
  }
  kube.client.token_file = absl::GetFlag(FLAGS_kube_token_file);
  kube.client.ca_file = absl::GetFlag(FLAGS_kube_ca_file);
  kube.ttl_seconds_after_finished = absl::GetFlag(FLAGS_kube_ttl_after_finished_s);
  kube.poll_interval_ms = static_cast<int64_t>(absl::GetFlag(FLAGS_kube_poll_interval_s) * 1000);
  options.worker_path = absl::GetFlag(FLAGS_worker);
  if (options.worker_path.empty()) options.worker_path = DefaultWorker(argv[0]);
  absl::StatusOr<std::vector<int>> gpus = foak::ParseGpuList(absl::GetFlag(FLAGS_gpus));
  if (!gpus.ok()) {
    std::fprintf(stderr, "foakd: %s\n", std::string(gpus.status().message()).c_str());
    return 2;
  }
  options.gpu_ids = *gpus;
  if (!(absl::GetFlag(FLAGS_stall_timeout_s) >= 0) ||
      absl::GetFlag(FLAGS_stall_timeout_s) > static_cast<double>(foak::kMaxStallTimeoutS)) {
    std::fprintf(stderr,
                 "foakd: --stall_timeout_s = %g; expected seconds from 0 (never) to %lld (a week)\n",
                 absl::GetFlag(FLAGS_stall_timeout_s),
                 static_cast<long long>(foak::kMaxStallTimeoutS));
    return 2;
  }
  options.stall_timeout_ms = static_cast<int64_t>(absl::GetFlag(FLAGS_stall_timeout_s) * 1000);
  const double start_timeout_s = absl::GetFlag(FLAGS_start_timeout_s);
  if (!(start_timeout_s == -1 || (start_timeout_s >= 0 &&
                                  start_timeout_s <= static_cast<double>(foak::kMaxStartTimeoutS)))) {
    std::fprintf(stderr,
                 "foakd: --start_timeout_s = %g; expected seconds up to %lld (a week), or -1 or 0 "
                 "(never)\n",
                 start_timeout_s, static_cast<long long>(foak::kMaxStartTimeoutS));
    return 2;
  }
  options.start_timeout_ms =
      start_timeout_s < 0 ? 0 : static_cast<int64_t>(start_timeout_s * 1000);
  if (absl::GetFlag(FLAGS_cpu_slots) < 1 || absl::GetFlag(FLAGS_grace_period_s) < 0 ||
      absl::GetFlag(FLAGS_max_upload_bytes) < 1 || absl::GetFlag(FLAGS_finished_job_retention_s) < 0) {
    std::fprintf(stderr,
                 "foakd: --cpu_slots must be >= 1, --max_upload_bytes >= 1, and --grace_period_s "
                 "and --finished_job_retention_s >= 0 (got %lld, %lld, %g, %g)\n",
                 static_cast<long long>(absl::GetFlag(FLAGS_cpu_slots)),
                 static_cast<long long>(absl::GetFlag(FLAGS_max_upload_bytes)),
                 absl::GetFlag(FLAGS_grace_period_s), absl::GetFlag(FLAGS_finished_job_retention_s));
    return 2;
  }
  options.cpu_slots = absl::GetFlag(FLAGS_cpu_slots);
  options.grace_period_ms = static_cast<int64_t>(absl::GetFlag(FLAGS_grace_period_s) * 1000);
  options.max_upload_bytes = absl::GetFlag(FLAGS_max_upload_bytes);
  options.finished_job_retention_ms =
      static_cast<int64_t>(absl::GetFlag(FLAGS_finished_job_retention_s) * 1000);
  foak::JobSpecPolicy& policy = options.spec_policy;
  auto folders = [](const std::string& list) -> std::vector<std::string> {
    return absl::StrSplit(list, ',', absl::SkipEmpty());
  };
  policy.model_roots = folders(absl::GetFlag(FLAGS_model_roots));
  policy.data_roots = folders(absl::GetFlag(FLAGS_data_roots));
  policy.output_roots = folders(absl::GetFlag(FLAGS_output_roots));
  policy.shared_model_roots = folders(absl::GetFlag(FLAGS_shared_model_roots));
  policy.max_gpus_per_job = absl::GetFlag(FLAGS_max_gpus_per_job);
  policy.max_nodes_per_job = absl::GetFlag(FLAGS_max_nodes_per_job);
  policy.max_seq_len = absl::GetFlag(FLAGS_max_seq_len);
  policy.max_steps = absl::GetFlag(FLAGS_max_steps);
  policy.max_epochs = absl::GetFlag(FLAGS_max_epochs);

  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.tls.worker_ca_file = absl::GetFlag(FLAGS_worker_tls_ca);
  options.tls.worker_cert_file = absl::GetFlag(FLAGS_worker_tls_cert);
  options.tls.worker_key_file = absl::GetFlag(FLAGS_worker_tls_key);
  options.tls.worker_server_name = absl::GetFlag(FLAGS_worker_tls_server_name);
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  if (!options.auth_tokens_file.empty() &&
      ((policy.model_roots.empty() && policy.shared_model_roots.empty()) ||
       policy.data_roots.empty() || policy.output_roots.empty())) {
    // Without roots a spec may name any file foakd can read: another
    // tenant's uploads or outputs, or the key worker tokens are made with.
    std::fprintf(stderr,
                 "foakd: --auth_tokens_file makes foakd serve several tenants, so every path a "
                 "spec names must be confined: set --model_roots (or --shared_model_roots), "
                 "--data_roots and --output_roots too (got '%s', '%s', '%s')\n",
                 absl::GetFlag(FLAGS_model_roots).c_str(), absl::GetFlag(FLAGS_data_roots).c_str(),
                 absl::GetFlag(FLAGS_output_roots).c_str());
    return 2;
  }
  policy.tenants = !options.auth_tokens_file.empty();

  absl::StatusOr<std::unique_ptr<foak::Foakd>> foakd = foak::Foakd::Start(options);
  if (!foakd.ok()) {
    std::fprintf(stderr, "foakd: %s\n", InFlagTerms(std::string(foakd.status().message())).c_str());
    return 1;
  }
  const foak::FoakdOptions& o = (*foakd)->options();
  std::fprintf(stderr,
               "foakd: serving gRPC on port %d (%s), metrics on port %d; data in %s; %s\n",
               (*foakd)->grpc_port(), o.listen_address.c_str(), (*foakd)->metrics_port(),
               o.data_dir.c_str(),
               o.launcher == "kubernetes"
                   ? absl::StrCat("workers on Kubernetes, image ", o.kubernetes.image).c_str()
                   : absl::StrCat(o.gpu_ids.size(), " GPU(s), ", o.cpu_slots,
                                  " CPU slot(s); worker ", o.worker_path)
                         .c_str());
  std::fprintf(stderr, "foakd: gRPC %s; %s\n",
               !o.tls.enabled()                ? "in plaintext (no --tls_cert)"
               : o.tls.client_ca_file.empty() ? "over TLS"
                                               : "over mutual TLS (client certificates required)",
               o.auth_tokens_file.empty()
                   ? "no API tokens: every caller sees every job (no --auth_tokens_file)"
                   : absl::StrCat("API tokens from ", o.auth_tokens_file).c_str());
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    absl::Status written = foak::WriteFileAtomically(absl::GetFlag(FLAGS_port_file),
                                                     absl::StrCat("grpc=", (*foakd)->grpc_port(), "\nmetrics=",
                                                                  (*foakd)->metrics_port(), "\n"));
    if (!written.ok()) {
      std::fprintf(stderr, "foakd: %s\n", std::string(written.message()).c_str());
      return 1;
    }
  }
  int sig = 0;
  while (sigwait(&stop, &sig) == 0 && sig == SIGHUP) {
    absl::StatusOr<size_t> reloaded = (*foakd)->ReloadAuthTokens();
    if (reloaded.ok()) {
      std::fprintf(stderr, "foakd: SIGHUP: %zu API token(s) in force from %s\n", *reloaded,
                   o.auth_tokens_file.c_str());
    } else {
      std::fprintf(stderr, "foakd: SIGHUP: %s; the previous tokens stay in force\n",
                   std::string(reloaded.status().message()).c_str());
    }
  }
  std::fprintf(stderr, "foakd: %s received; shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*foakd)->Shutdown();
  std::fprintf(stderr, "foakd: stopped\n");
  return 0;
}

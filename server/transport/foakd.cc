#include "server/transport/foakd.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "server/domain/job_manager.h"
#ifdef FOAK_HAVE_KUBERNETES_LAUNCHER
#include "server/launch/kubernetes_launcher.h"
#endif
#include "server/launch/local_launcher.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/server_metrics.h"
#include "server/storage/sqlite_job_store.h"
#include "server/transport/job_service.h"
#include "server/transport/tls_options.h"
#include "server/transport/request_metrics.h"

namespace foak {
namespace {

constexpr const char* kServices[] = {"foak.v1.JobService", "foak.v1.WorkerService",
                                     "foak.v1.FileService"};

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char buf[4096];
  if (getcwd(buf, sizeof buf) == nullptr) return path;
  return JoinPath(buf, path);
}

// The address workers dial: a wildcard listen address is reached on loopback.
std::string DialAddress(const std::string& listen, int port) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = "127.0.0.1";
  return absl::StrCat(host, ":", port);
}

}  // namespace

struct Foakd::Parts {
  FoakdOptions options;
  std::unique_ptr<JobStore> store;
  std::unique_ptr<FileStore> files;
  std::unique_ptr<WorkerTokens> tokens;
  std::unique_ptr<ApiTokens> api_tokens;  // null: no --auth_tokens_file
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<MetricsHttpServer> http;
  std::unique_ptr<JobManager> manager;
  std::unique_ptr<JobServiceImpl> job_service;
  std::unique_ptr<WorkerServiceImpl> worker_service;
  std::unique_ptr<FileServiceImpl> file_service;
  std::unique_ptr<grpc::Server> server;
  int grpc_port = 0;
  bool shut_down = false;
};

absl::StatusOr<std::vector<int>> ParseGpuList(const std::string& value) {
  std::vector<int> ids;
  if (value.empty() || value == "none") return ids;
  if (value == "auto") {
    absl::StatusOr<std::vector<std::string>> dev = ListDir("/dev");
    if (!dev.ok()) return ids;
    for (const std::string& name : *dev) {
      int n = 0;
      if (name.rfind("nvidia", 0) == 0 && name.size() > 6 &&
          absl::SimpleAtoi(name.substr(6), &n) && std::isdigit(static_cast<unsigned char>(name[6]))) {
        ids.push_back(n);
      }
    }
    std::sort(ids.begin(), ids.end());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int>(i);  // CUDA indices 0..n-1
    return ids;
  }
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gpus = '", value, "'; expected auto, none or a list of CUDA indices like 0,1"));
    }
    if (std::find(ids.begin(), ids.end(), n) != ids.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gpus = '", value, "' names GPU ", n, " twice; list each index once"));
    }
    ids.push_back(n);
  }
  return ids;
}

std::string PlaintextTokensWarning(const FoakdOptions& options) {
  if (options.auth_tokens_file.empty() || options.tls.enabled()) return "";
  std::string host = options.listen_address.substr(0, options.listen_address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0) return "";
  return absl::StrCat(
      "--auth_tokens_file is set but gRPC is plaintext (no --tls_cert) on ", options.listen_address,
      ", which is not a loopback address: every API token crosses the network unencrypted and can "
      "be read and replayed by anyone on the path. Set --tls_cert and --tls_key, or listen on "
      "127.0.0.1 behind a TLS-terminating proxy");
}

absl::StatusOr<std::unique_ptr<Foakd>> Foakd::Start(FoakdOptions options) {
  auto parts = std::make_unique<Parts>();
  options.data_dir = AbsolutePath(options.data_dir);
  if (options.db_path.empty()) options.db_path = JoinPath(options.data_dir, "foakd.db");
  options.shared_dir = AbsolutePath(options.shared_dir.empty() ? options.data_dir : options.shared_dir);
  const bool kubernetes = options.launcher == "kubernetes";
  if (!kubernetes && options.launcher != "local") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--launcher = '", options.launcher, "'; expected local (worker processes on this host) "
        "or kubernetes (an Indexed Job per job)"));
  }
#ifndef FOAK_HAVE_KUBERNETES_LAUNCHER
  if (kubernetes) {
    return absl::FailedPreconditionError(
        "--launcher kubernetes: this foakd was built without libcurl (Debian: "
        "libcurl4-openssl-dev), so it has no Kubernetes launcher; rebuild with it");
  }
#endif
  options.worker_path = AbsolutePath(options.worker_path);
  // Security settings first: a typo in a certificate path should stop foakd
  // before it touches the database or its workers.
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   MakeServerCredentials(options.tls));
  ASSIGN_OR_RETURN(auto worker_tls_env, WorkerTlsEnv(options.tls));
  if (!options.auth_tokens_file.empty()) {
    absl::StatusOr<std::unique_ptr<ApiTokens>> api_tokens = ApiTokens::Load(options.auth_tokens_file);
    if (!api_tokens.ok()) {
      return absl::Status(api_tokens.status().code(),
                          absl::StrCat("--auth_tokens_file: ", api_tokens.status().message()));
    }
    parts->api_tokens = *std::move(api_tokens);
  }
  if (const std::string warning = PlaintextTokensWarning(options); !warning.empty()) {
    std::fprintf(stderr, "foakd: WARNING: %s\n", warning.c_str());
  }
  RETURN_IF_ERROR(MakeDirs(options.data_dir));
  RETURN_IF_ERROR(MakeDirs(options.shared_dir));
  options.spec_policy.own_dirs = {options.data_dir, options.shared_dir};
  // Tokens bind callers to tenants, and tenants' paths are split per tenant.
  options.spec_policy.tenants = !options.auth_tokens_file.empty();
  ASSIGN_OR_RETURN(options.spec_policy, ResolveJobSpecPolicy(std::move(options.spec_policy)));
  parts->options = options;

  SqliteJobStoreOptions store_options;
  store_options.path = options.db_path;
  ASSIGN_OR_RETURN(parts->store, OpenSqliteJobStore(store_options));
  FileStoreOptions file_options;
  file_options.root = JoinPath(options.shared_dir, "files");
  file_options.max_file_bytes = options.max_upload_bytes;
  ASSIGN_OR_RETURN(parts->files, FileStore::Open(file_options));
  ASSIGN_OR_RETURN(parts->tokens, WorkerTokens::Open(JoinPath(options.data_dir, "worker_token.key")));

  ServerMetricsOptions metrics_options;
  metrics_options.finished_job_retention_ms = options.finished_job_retention_ms;
  metrics_options.per_job_series = options.metrics_per_job_series;
  parts->metrics = std::make_unique<ServerMetrics>(metrics_options);
  parts->metrics->SetBuildInfo(FOAK_VERSION);
  if (!options.metrics_address.empty()) {
    MetricsHttpServerOptions http_options;
    http_options.listen_address = options.metrics_address;
    if (!options.metrics_bearer_token_file.empty()) {
      ASSIGN_OR_RETURN(http_options.bearer_token, ReadBearerTokenFile(options.metrics_bearer_token_file));
    }
    ServerMetrics* metrics = parts->metrics.get();
    ASSIGN_OR_RETURN(parts->http,
                     MetricsHttpServer::Create(http_options, [metrics] { return metrics->Render(); }));
  }

  // The gRPC port is known only once the server is up, but the manager (and
  // the services on it) must exist before: bind first, then tell the manager.
  JobManagerOptions manager_options;
  manager_options.data_dir = options.shared_dir;
  manager_options.worker_path = options.worker_path;
  manager_options.stall_timeout_ms = options.stall_timeout_ms;
  manager_options.start_timeout_ms = options.start_timeout_ms;
  manager_options.worker_env = worker_tls_env;
  manager_options.spec_policy = options.spec_policy;
  SchedulerOptions scheduler_options;
  scheduler_options.gpu_ids = options.gpu_ids;
  scheduler_options.cpu_slots = options.cpu_slots;
  scheduler_options.cluster = kubernetes;
  JobManager::LauncherFactory factory;
  if (kubernetes) {
#ifdef FOAK_HAVE_KUBERNETES_LAUNCHER
    KubernetesLauncherOptions kube = options.kubernetes;
    kube.grace_period_ms = options.grace_period_ms;
    factory = [kube](Launcher::Callbacks callbacks) -> absl::StatusOr<std::unique_ptr<Launcher>> {
      ASSIGN_OR_RETURN(std::unique_ptr<KubernetesLauncher> launcher,
                       KubernetesLauncher::Create(kube, callbacks));
      return std::unique_ptr<Launcher>(std::move(launcher));
    };
#endif
  } else {
    LocalLauncherOptions local;
    local.grace_period_ms = options.grace_period_ms;
    factory = [local](Launcher::Callbacks callbacks) -> absl::StatusOr<std::unique_ptr<Launcher>> {
      ASSIGN_OR_RETURN(std::unique_ptr<LocalLauncher> launcher,
                       LocalLauncher::Create(local, callbacks));
      return std::unique_ptr<Launcher>(std::move(launcher));
    };
  }
  ASSIGN_OR_RETURN(parts->manager,
                   JobManager::Create(manager_options, parts->store.get(), parts->files.get(),
                                      parts->tokens.get(), parts->metrics.get(), scheduler_options,
                                      factory));

  parts->job_service = std::make_unique<JobServiceImpl>(parts->manager.get(), parts->api_tokens.get());
  parts->worker_service = std::make_unique<WorkerServiceImpl>(parts->manager.get());
  parts->file_service = std::make_unique<FileServiceImpl>(parts->manager.get(), parts->api_tokens.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials, &parts->grpc_port);
  builder.RegisterService(parts->job_service.get());
  builder.RegisterService(parts->worker_service.get());
  builder.RegisterService(parts->file_service.get());
  builder.SetMaxReceiveMessageSize(8 << 20);  // upload chunks up to 4 MiB plus framing
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeRequestMetricsFactory(parts->metrics.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  parts->server = builder.BuildAndStart();
  if (parts->server == nullptr || parts->grpc_port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.listen_address,
        " (in use or not a local address?); pick another with --listen HOST:PORT"));
  }
  parts->manager->SetCoordinatorAddress(options.advertise_address.empty()
                                            ? DialAddress(options.listen_address, parts->grpc_port)
                                            : options.advertise_address);
  if (grpc::HealthCheckServiceInterface* health = parts->server->GetHealthCheckService()) {
    health->SetServingStatus(true);
    for (const char* service : kServices) health->SetServingStatus(service, true);
  }
  RETURN_IF_ERROR(parts->manager->Start());
  return std::unique_ptr<Foakd>(new Foakd(std::move(parts)));
}

Foakd::Foakd(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Foakd::~Foakd() { Shutdown(); }

int Foakd::grpc_port() const { return parts_->grpc_port; }
int Foakd::metrics_port() const { return parts_->http != nullptr ? parts_->http->port() : 0; }
const FoakdOptions& Foakd::options() const { return parts_->options; }

absl::StatusOr<size_t> Foakd::ReloadAuthTokens() {
  if (parts_->api_tokens == nullptr) {
    return absl::FailedPreconditionError("foakd runs without --auth_tokens_file; nothing to reload");
  }
  return parts_->api_tokens->Reload();
}

void Foakd::Shutdown() {
  if (parts_->shut_down) return;
  parts_->shut_down = true;
  if (grpc::HealthCheckServiceInterface* health = parts_->server->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  parts_->manager->BeginShutdown();
  parts_->server->Shutdown(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(parts_->options.shutdown_timeout_ms));
  parts_->server->Wait();
  parts_->manager->Shutdown();
  parts_->http.reset();
}

}  // namespace foak

#include "server/domain/job_manager.h"
#include "common/net_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/metrics/server_metrics.h"

namespace foak {
namespace {

using Json = nlohmann::json;

std::optional<JobProgressInfo> ProgressFromEvents(const std::optional<JobEvent>& metrics,
                                                  const std::optional<JobEvent>& eval,
                                                  const std::optional<JobEvent>& bench) {
  if (!metrics.has_value() && !eval.has_value() && !bench.has_value()) return std::nullopt;
  JobProgressInfo p;
  try {
    if (metrics.has_value()) {
      Json m = Json::parse(metrics->payload_json);
      p.step = m.value("step", int64_t{0});
      p.max_steps = m.value("max_steps", int64_t{0});
      p.loss = m.value("loss", 0.0);
      p.learning_rate = m.value("learning_rate", 0.0);
      p.tokens_per_second = m.value("tokens_per_second", 0.0);
      p.peak_memory_bytes = m.value("peak_memory_bytes", int64_t{0});
      p.elapsed_s = m.value("elapsed_s", 0.0);
    } else if (bench.has_value()) {
      // A benchmark job: rows done out of rows planned, the newest row's figures
      // (as JobManager::OnWorkerReport keeps them live).
      Json b = Json::parse(bench->payload_json);
      p.step = b.value("index", int64_t{0}) + 1;
      p.max_steps = b.value("total", int64_t{0});
      const bool ran = b.value("status", std::string()) == "ok";
      // value() throws on a null (a non-finite number stored as null).
      auto number = [&b](const char* key) {
        auto it = b.find(key);
        return it != b.end() && it->is_number() ? it->get<double>() : 0.0;
      };
      p.loss = number("loss_last");
      p.tokens_per_second = ran ? number("tokens_per_second") : 0;
      p.peak_memory_bytes = b.value("peak_allocated_bytes", int64_t{0});
    }
    if (eval.has_value()) p.eval_loss = Json::parse(eval->payload_json).value("eval_loss", 0.0);
  } catch (const Json::exception&) {
    return std::nullopt;
  }
  return p;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(
    JobManagerOptions options, JobStore* store, FileStore* files, WorkerTokens* tokens,
    ServerMetrics* metrics, SchedulerOptions scheduler, const LauncherFactory& launcher) {
  if (options.data_dir.empty() || options.data_dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("data_dir = '", options.data_dir, "'; expected an absolute folder"));
  }
  // In cluster mode the worker is the Kubernetes launcher's image's, not a file here.
  if (!scheduler.cluster && access(options.worker_path.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker executable '", options.worker_path,
        "' is missing or not executable; build foak-worker or pass foakd --worker PATH"));
  }
  if (!options.now_ms) options.now_ms = SystemNowMs;
  RETURN_IF_ERROR(MakeDirs(JoinPath(options.data_dir, "jobs")));
  std::unique_ptr<JobManager> manager(
      new JobManager(std::move(options), store, files, tokens, metrics, std::move(scheduler)));
  JobManager* m = manager.get();
  Launcher::Callbacks callbacks;
  callbacks.on_log = [m](const LogLine& line) { m->OnLog(line); };
  callbacks.on_exit = [m](const LaunchOutcome& outcome) { m->OnExit(outcome); };
  ASSIGN_OR_RETURN(manager->launcher_, launcher(std::move(callbacks)));
  if (metrics != nullptr) {
    // foak_jobs{state}: counted when Prometheus scrapes. The count scans the
    // job table, so doing it on every state change made each new job cost
    // O(backlog) (issue 9).
    metrics->SetJobsByStateSource(
        [store]() -> std::optional<std::vector<std::pair<std::string, int64_t>>> {
          absl::StatusOr<std::vector<std::pair<JobState, int64_t>>> counts = store->CountJobsByState();
          if (!counts.ok()) return std::nullopt;
          std::vector<std::pair<std::string, int64_t>> named;
          for (const auto& [state, n] : *counts) named.emplace_back(JobStateName(state), n);
          return named;
        });
  }
  return manager;
}

JobManager::JobManager(JobManagerOptions options, JobStore* store, FileStore* files,
                       WorkerTokens* tokens, ServerMetrics* metrics, SchedulerOptions scheduler)
    : options_(std::move(options)),
      store_(store),
      files_(files),
      tokens_(tokens),
      metrics_(metrics),
      // What the scheduler will hold: each listed GPU once.
      total_gpus_(static_cast<int64_t>(
          std::set<int>(scheduler.gpu_ids.begin(), scheduler.gpu_ids.end()).size())),
      cluster_(scheduler.cluster),
      scheduler_(scheduler) {}

JobManager::~JobManager() {
  Shutdown();
  if (metrics_ != nullptr) metrics_->SetJobsByStateSource(nullptr);
}

std::string JobManager::JobDir(const std::string& id) const {
  return JoinPath(JoinPath(options_.data_dir, "jobs"), id);
}

JobSpecContext JobManager::SpecContext() const {
  JobSpecContext context;
  context.total_gpus = total_gpus_;
  context.cluster = cluster_;
  context.policy = options_.spec_policy;
  context.jobs_dir = JoinPath(options_.data_dir, "jobs");
  if (files_ != nullptr) {
    context.resolve_file = [this](const std::string& id) { return files_->PathOf(id); };
  }
  return context;
}

absl::StatusOr<JobSpecContext> JobManager::TenantSpecContext(const std::string& tenant) const {
  JobSpecContext context = SpecContext();
  ASSIGN_OR_RETURN(context.policy, PolicyForTenant(options_.spec_policy, tenant));
  if (files_ != nullptr && !tenant.empty()) {
    context.resolve_file = [this, tenant](const std::string& id) { return files_->PathOf(id, tenant); };
  }
  return context;
}

std::string JobManager::OutputDir(const JobRecord& job) const {
  try {
    Json spec = Json::parse(job.spec_json);
    auto it = spec.find("output_dir");
    if (it != spec.end() && it->is_string() && !it->get<std::string>().empty()) {
      return it->get<std::string>();
    }
  } catch (const Json::exception&) {
  }
  return JoinPath(JobDir(job.id), "output");
}

absl::StatusOr<JobView> JobManager::View(JobRecord record) {
  JobView view;
  view.output_dir = record.id.empty() ? "" : OutputDir(record);
  if (!record.id.empty()) {
    absl::MutexLock lock(&mu_);
    if (auto it = progress_.find(record.id); it != progress_.end()) view.progress = it->second;
  }
  if (!view.progress.has_value() && !record.id.empty() && record.state != JobState::kQueued) {
    // The job's progress is rank 0's (every rank stores its step metrics).
    ASSIGN_OR_RETURN(std::optional<JobEvent> metrics,
                     store_->LastRankEvent(record.id, "metrics", 0));
    ASSIGN_OR_RETURN(std::optional<JobEvent> eval, store_->LastEvent(record.id, "eval"));
    std::optional<JobEvent> bench;
    if (!metrics.has_value()) {  // only a benchmark job has "bench" events and no "metrics"
      ASSIGN_OR_RETURN(bench, store_->LastEvent(record.id, "bench"));
    }
    view.progress = ProgressFromEvents(metrics, eval, bench);
    // A data-parallel job: each rank's newest peak memory, as live.
    int64_t world = record.gpus;  // one rank per GPU
    if (world == 0) {
      absl::StatusOr<PreparedJobSpec> fields = CoordinatorFields(record.spec_json, SpecContext());
      world = fields.ok() ? fields->processes : 1;
    }
    if (view.progress.has_value() && world > 1) {
      std::vector<int64_t>& memory = view.progress->rank_peak_memory_bytes;
      memory.assign(static_cast<size_t>(world), 0);
      memory[0] = view.progress->peak_memory_bytes;
      for (int64_t rank = 1; rank < world; ++rank) {
        ASSIGN_OR_RETURN(std::optional<JobEvent> m,
                         store_->LastRankEvent(record.id, "metrics", rank));
        if (!m.has_value()) continue;
        const Json payload = Json::parse(m->payload_json, nullptr, /*allow_exceptions=*/false);
        auto bytes = payload.find("peak_memory_bytes");  // end() unless an object has it
        if (bytes != payload.end() && bytes->is_number_integer()) {
          memory[static_cast<size_t>(rank)] = bytes->get<int64_t>();
        }
      }
    }
  }
  view.record = std::move(record);
  return view;
}

void JobManager::SetCoordinatorAddress(const std::string& address) {
  absl::MutexLock lock(&schedule_mu_);
  options_.coordinator_address = address;
}

absl::Status JobManager::Start() {
  ASSIGN_OR_RETURN(std::vector<std::string> orphans,
                   launcher_->KillOrphans(JoinPath(options_.data_dir, "jobs")));
  ASSIGN_OR_RETURN(std::vector<JobRecord> live,
                   store_->JobsInStates({JobState::kStarting, JobState::kRunning,
                                         JobState::kCancelling}));
  for (const JobRecord& job : live) {
    if (job.state == JobState::kCancelling) {
      RETURN_IF_ERROR(Transition(job.id, JobState::kCancelled, "Cancelled",
                                 "cancelled; foakd restarted while its workers were stopping")
                          .status());
    } else {
      RETURN_IF_ERROR(Transition(job.id, JobState::kQueued, "CoordinatorRestarted",
                                 "foakd restarted; the job runs again from its newest checkpoint",
                                 /*count_restart=*/false)
                          .status());
    }
  }
  if (options_.stall_check_interval_ms > 0 && !stall_thread_.joinable()) {
    stall_thread_ = std::thread([this] { StallLoop(); });
  }
  Schedule();
  return absl::OkStatus();
}

void JobManager::BeginShutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (auto& [id, waiters] : waiters_) waiters.cv.SignalAll();
  }
  shutdown_cv_.SignalAll();
}

void JobManager::Shutdown() {
  BeginShutdown();
  if (stall_thread_.joinable()) stall_thread_.join();
  if (launcher_ != nullptr) launcher_->Shutdown();  // idempotent
}

bool JobManager::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

absl::StatusOr<JobView> JobManager::CreateJob(const std::string& spec_json,
                                              const std::string& request_id, bool validate_only,
                                              const std::string& tenant) {
  if (shutting_down()) return absl::UnavailableError("foakd is shutting down; retry shortly");
  absl::StatusOr<JobSpecContext> context = TenantSpecContext(tenant);
  if (!context.ok()) return absl::InvalidArgumentError(absl::StrCat("spec: ", context.status().message()));
  ASSIGN_OR_RETURN(PreparedJobSpec prepared, PrepareJobSpec(spec_json, *context));
  JobRecord job;
  job.request_id = request_id;
  job.tenant = tenant;
  job.spec_json = prepared.spec_json;
  job.priority = prepared.priority;
  job.gpus = prepared.gpus;
  job.max_restarts = prepared.max_restarts;
  // An empty output_dir is foakd's own jobs/<id>/output: new, so free.
  const std::string output_dir = prepared.resolved_output_dir.empty()
                                     ? ResolveOrGiven(prepared.output_dir)
                                     : prepared.resolved_output_dir;
  JobRecord created;
  {
    absl::MutexLock outputs_lock(&outputs_mu_);
    if (!output_dir.empty()) {
      RETURN_IF_ERROR(LoadOutputDirsLocked());
      RETURN_IF_ERROR(CheckOutputDirFree(prepared.output_dir, output_dir, tenant, request_id));
    }
    if (!validate_only) {
      ASSIGN_OR_RETURN(created, store_->CreateJob(job));
      if (outputs_loaded_) {
        outputs_[created.id] = {output_dir.empty() ? ResolveOrGiven(OutputDir(created)) : output_dir,
                                tenant, request_id};
      }
    }
  }
  if (validate_only) {
    job.reason = "ValidateOnly";
    job.message = "the spec is valid; nothing was created";
    return View(std::move(job));
  }
  Notify(created.id);
  Schedule();
  ASSIGN_OR_RETURN(JobRecord now, store_->GetJob(created.id));
  return View(std::move(now));
}

absl::StatusOr<JobView> JobManager::GetJob(const std::string& id) {
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  return View(std::move(job));
}

absl::StatusOr<JobState> JobManager::GetState(const std::string& id) {
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  return job.state;
}

absl::StatusOr<std::vector<JobView>> JobManager::ListJobs(const ListJobsQuery& query,
                                                          std::string* next_page_token) {
  ASSIGN_OR_RETURN(ListJobsPage page, store_->ListJobs(query));
  std::vector<JobView> views;
  for (JobRecord& job : page.jobs) {
    ASSIGN_OR_RETURN(JobView v, View(std::move(job)));
    views.push_back(std::move(v));
  }
  *next_page_token = page.next_page_token;
  return views;
}

absl::StatusOr<JobView> JobManager::CancelJob(const std::string& id) {
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  if (job.state == JobState::kCancelling) return View(std::move(job));  // already on its way
  if (job.state == JobState::kQueued) {
    ASSIGN_OR_RETURN(JobRecord cancelled, Transition(id, JobState::kCancelled, "Cancelled",
                                                     "cancelled before it started"));
    Schedule();  // a job behind it in the queue may fit now
    return View(std::move(cancelled));
  }
  ASSIGN_OR_RETURN(JobRecord cancelling,
                   Transition(id, JobState::kCancelling, "CancelRequested",
                              "stopping the workers (SIGTERM, then SIGKILL after the grace period)"));
  absl::Status stop = launcher_->Cancel(id);
  if (absl::IsNotFound(stop)) {
    // No worker runs (it ended between the two steps or never started).
    ASSIGN_OR_RETURN(JobRecord done, Transition(id, JobState::kCancelled, "Cancelled", "cancelled"));
    {
      absl::MutexLock lock(&schedule_mu_);
      scheduler_.Release(id);
    }
    Schedule();
    return View(std::move(done));
  }
  RETURN_IF_ERROR(stop);
  return View(std::move(cancelling));
}

absl::StatusOr<std::vector<CheckpointRecord>> JobManager::ListCheckpoints(const std::string& id) {
  return store_->ListCheckpoints(id);
}

absl::StatusOr<std::vector<JobEvent>> JobManager::ListEvents(const std::string& id,
                                                             int64_t after_seq, int64_t limit) {
  return store_->ListEvents(id, after_seq, limit);
}

int64_t JobManager::EventGeneration(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = generation_.find(id);
  return it == generation_.end() ? 0 : it->second;
}

void JobManager::WaitForChange(const std::string& id, int64_t generation, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  JobWaiters& waiters = waiters_[id];  // constructed in place; map nodes do not move
  ++waiters.count;
  while (!shutting_down_) {
    auto it = generation_.find(id);
    if (it != generation_.end() && it->second != generation) break;
    if (waiters.cv.WaitWithDeadline(&mu_, deadline)) break;  // timed out
  }
  if (--waiters.count == 0) waiters_.erase(id);
}

void JobManager::Notify(const std::string& id) {
  absl::MutexLock lock(&mu_);
  ++generation_[id];
  if (auto it = waiters_.find(id); it != waiters_.end()) it->second.cv.SignalAll();
}

absl::StatusOr<JobRecord> JobManager::Transition(const std::string& id, JobState to,
                                                 const std::string& reason,
                                                 const std::string& message, bool count_restart) {
  ASSIGN_OR_RETURN(JobRecord job, store_->UpdateState(id, to, reason, message, count_restart));
  Notify(id);  // the store appended the "state" event
  if (IsFinal(to)) ReleaseOutputDir(id);
  if (IsFinal(to) && metrics_ != nullptr) metrics_->OnJobFinished(id, JobStateName(to));
  return job;
}

absl::StatusOr<int64_t> JobManager::Append(const std::string& id, const std::string& kind,
                                           const std::string& payload_json) {
  ASSIGN_OR_RETURN(int64_t seq, store_->AppendEvent(id, kind, payload_json));
  Notify(id);
  return seq;
}

void JobManager::Schedule() {
  if (shutting_down()) return;
  absl::MutexLock lock(&schedule_mu_);
  // Nothing can start while the host is full: no need to read the whole queue.
  if (!scheduler_.HasRoom()) return;
  absl::StatusOr<std::vector<JobRecord>> queued = store_->JobsInStates({JobState::kQueued});
  if (!queued.ok()) return;
  std::vector<QueuedJob> queue;
  std::map<std::string, JobRecord> by_id;
  int64_t order = 0;
  for (JobRecord& job : *queued) {
    queue.push_back({job.id, job.priority, job.gpus, order++});  // the store lists oldest first
    by_id[job.id] = std::move(job);
  }
  for (const Placement& placement : scheduler_.Schedule(std::move(queue))) {
    LaunchLocked(by_id[placement.job_id], placement);
  }
}

void JobManager::LaunchLocked(const JobRecord& job, const Placement& placement) {
  const int64_t attempt = attempt_.count(job.id) > 0 ? attempt_[job.id] + 1 : job.restarts;
  attempt_[job.id] = attempt;
  const std::string dir = JobDir(job.id);
  const std::string output_dir = OutputDir(job);
  const bool gpu = placement.gpus > 0;
  const int64_t queued_since_ms = job.update_time_ms;

  auto fail = [&](const std::string& reason, const absl::Status& status) {
    scheduler_.Release(job.id);
    (void)Transition(job.id, JobState::kFailed, reason, std::string(status.message()));
  };
  // One rank per GPU, else the CPU job's resources.processes, on each of
  // resources.nodes hosts. The stored spec passed these checks when it was
  // created; they fail here only if foakd now has fewer GPUs than it had then
  // (or no longer runs the Kubernetes launcher).
  absl::StatusOr<PreparedJobSpec> fields = CoordinatorFields(job.spec_json, SpecContext());
  const int64_t per_node = gpu ? placement.gpus : (fields.ok() ? fields->processes : 1);
  const int64_t nodes = fields.ok() ? fields->nodes : 1;
  const int64_t world = per_node * nodes;
  world_size_[job.id] = world;
  const std::string ranks = world > 1 ? absl::StrCat(", ", world, " ranks") : "";
  std::string where;
  if (cluster_) {
    where = absl::StrCat("on Kubernetes: ", nodes, nodes == 1 ? " node" : " nodes", " x ",
                         per_node, gpu ? (per_node == 1 ? " GPU" : " GPUs") : " CPU ranks");
  } else if (gpu) {
    where = absl::StrCat("on GPU ", absl::StrJoin(placement.gpu_ids, ","), ranks);
  } else {
    where = absl::StrCat("on the CPU", ranks);
  }
  absl::StatusOr<JobRecord> starting = Transition(job.id, JobState::kStarting, "Scheduled",
                                                   absl::StrCat(where, ", attempt ", attempt));
  if (!starting.ok()) {
    scheduler_.Release(job.id);
    return;
  }
  if (metrics_ != nullptr) {
    metrics_->ObserveQueueWait(static_cast<double>(options_.now_ms() - queued_since_ms) / 1000.0);
  }
  if (!fields.ok()) return fail("InvalidJob", fields.status());
  WorkerLaunchSettings settings;
  settings.output_dir = output_dir;
  settings.device = gpu ? "cuda" : "cpu";
  settings.restart = job.restarts > 0 || attempt > 0;
  absl::StatusOr<JobSpecContext> context = TenantSpecContext(job.tenant);
  if (!context.ok()) return fail("InvalidJob", context.status());
  absl::StatusOr<std::string> worker_json = WorkerJobJson(job.spec_json, settings, *context);
  if (!worker_json.ok()) return fail("InvalidJob", worker_json.status());
  const std::string job_file = JoinPath(dir, absl::StrCat("job-", attempt, ".json"));
  absl::Status written = MakeDirs(JoinPath(dir, "logs"));
  if (written.ok()) written = WriteFileAtomically(job_file, *worker_json);
  if (!written.ok()) return fail("LaunchFailed", written);

  LaunchRequest request;
  request.job_id = job.id;
  request.attempt = attempt;
  request.working_dir = dir;
  request.run_dir = JoinPath(dir, "run");
  // The gang's environment is torchrun's (and Kubeflow's PyTorchJob's) for
  // one node: every rank sees all of the job's GPUs and takes
  // cuda:LOCAL_RANK itself, so CUDA_VISIBLE_DEVICES is the same for all (a
  // CPU job sees no GPU at all), and the ranks meet at one MASTER_PORT.
  std::vector<std::pair<std::string, std::string>> job_env = {
      {"FOAK_COORDINATOR", options_.coordinator_address},
      {"FOAK_JOB_ID", job.id},
      {"FOAK_JOB_TOKEN", tokens_->TokenFor(job.id)},
      {"FOAK_JOB_ATTEMPT", absl::StrCat(attempt)},
  };
  job_env.insert(job_env.end(), options_.worker_env.begin(), options_.worker_env.end());
  request.gang.nodes = nodes;
  request.gang.ranks_per_node = per_node;
  request.gang.gpus_per_node = gpu ? per_node : 0;
  request.gang.worker_args = {"train", "--job", job_file};
  request.gang.env = job_env;
  request.gang.node_selector = fields->node_selector;
  request.gang.tolerations = fields->tolerations;
  request.gang.queue = fields->queue;
  const std::string master_port = cluster_ ? "" : absl::StrCat(FreeLoopbackPort());
  for (int64_t r = 0; !cluster_ && r < world; ++r) {
    RankSpec rank;
    rank.argv = {options_.worker_path, "train", "--job", job_file};
    rank.env = {
        {"CUDA_VISIBLE_DEVICES", absl::StrJoin(placement.gpu_ids, ",")},
        {"RANK", absl::StrCat(r)},
        {"LOCAL_RANK", absl::StrCat(r)},
        {"WORLD_SIZE", absl::StrCat(world)},
        {"LOCAL_WORLD_SIZE", absl::StrCat(world)},
        {"GROUP_RANK", "0"},  // the node's rank: one host
        {"MASTER_ADDR", options_.master_addr},
        {"MASTER_PORT", master_port},
    };
    rank.env.insert(rank.env.end(), job_env.begin(), job_env.end());
    rank.log_path =
        JoinPath(JoinPath(dir, "logs"), absl::StrCat("attempt-", attempt, "-rank-", r, ".log"));
    request.ranks.push_back(std::move(rank));
  }
  // Tracked before it starts: a worker that exits at once then finds its
  // entry there to remove.
  TrackLaunch(job.id, attempt, fields->stall_timeout_s, fields->start_timeout_s);
  absl::Status launched = launcher_->Launch(request);
  if (!launched.ok()) {
    ForgetLaunch(job.id);
    return fail("LaunchFailed", launched);
  }
}

absl::Status JobManager::DeleteFile(const std::string& id) {
  ASSIGN_OR_RETURN(std::vector<JobRecord> live,
                   store_->JobsInStates({JobState::kQueued, JobState::kStarting, JobState::kRunning,
                                         JobState::kCancelling}));
  for (const JobRecord& job : live) {
    if (job.spec_json.find(absl::StrCat("\"", id, "\"")) != std::string::npos) {
      return absl::FailedPreconditionError(absl::StrCat(
          "file ", id, " is used by job ", job.id, " (", JobStateName(job.state),
          "); delete it after the job ends or cancel the job"));
    }
  }
  return files_->Delete(id);
}

}  // namespace foak

// What foakd checks in a submitted job spec, and the job file it hands the
// worker. The spec arrives as JSON with the job file's field names (the
// transport converts foak.v1.JobSpec), so the worker's own strict parser
// (worker/train/job.h, torch-free) validates everything it will later read:
// one parser, one set of error messages naming the field path. On top of it
// foakd checks what only the coordinator knows:
//   - its own fields: resources.gpus (>= 0 and at most the host's GPUs, else
//     RESOURCE_EXHAUSTED), resources.processes (the ranks of a CPU job, 1 to
//     64; a GPU job runs one rank per GPU, so there it may only repeat gpus),
//     and, with the Kubernetes launcher only, resources.nodes, node_selector,
//     tolerations and queue (Kubernetes' own syntax rules, so the API server
//     never refuses what foakd accepted); priority, max_restarts, labels;
//   - paths on its host: `model` must be an absolute folder with config.json,
//     the dataset files absolute and readable, or ids of uploaded files
//     ("file-..."), which it resolves; a relative path is refused because it
//     would be relative to foakd's folder, not the user's;
//   - `device` is its choice (from resources.gpus), so a spec may only leave
//     it empty or "auto";
//   - a benchmark job (a `bench` object) has no dataset, and its `model`
//     folder needs only config.json (the weights are random); the worker's
//     parser refuses one that names a dataset.
//   - the operator's policy (job_spec_policy.h): with roots configured, the
//     model, dataset, output_dir and resume_from_checkpoint paths must
//     resolve inside them (path_confinement.h), and the job's GPUs, nodes,
//     sequence length and steps must be within the limits.
// The stored spec keeps the user's values (file ids stay ids); WorkerJobJson
// makes the worker's file for one launch: ids replaced by paths, output_dir
// filled in, device set, and resume_from_checkpoint "latest" on restarts so a
// relaunched worker continues from the newest complete checkpoint. A launch
// checks the paths again (the folders may have changed since the job was
// queued), and where roots confine a path the worker gets its resolved form.
#ifndef FOAK_SERVER_DOMAIN_JOB_SPEC_H_
#define FOAK_SERVER_DOMAIN_JOB_SPEC_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/domain/job_spec_policy.h"
#include "server/launch/launcher.h"

namespace foak {

// Limits on the coordinator's fields.
inline constexpr int64_t kMaxPriority = 1000;     // priority in [-1000, 1000]
inline constexpr int64_t kMaxRestartsLimit = 100; // max_restarts in [0, 100]
inline constexpr size_t kMaxLabels = 32;
inline constexpr int64_t kMaxProcesses = 64;      // resources.processes in [1, 64]
inline constexpr int64_t kMaxNodes = 1024;        // resources.nodes in [1, 1024]
inline constexpr int64_t kMaxStallTimeoutS = 7 * 24 * 3600;  // stall_timeout_s: a week
inline constexpr int64_t kMaxStartTimeoutS = 7 * 24 * 3600;  // start_timeout_s: a week

struct JobSpecContext {
  int64_t total_gpus = 0;  // GPUs this foakd schedules (its own host's)
  // The cluster places jobs (Kubernetes launcher): resources.nodes,
  // node_selector, tolerations and queue are allowed, and total_gpus does not
  // bound resources.gpus. Without it those fields are refused.
  bool cluster = false;
  // The path of an uploaded file ("file-..."), or NOT_FOUND.
  std::function<absl::StatusOr<std::string>(const std::string& file_id)> resolve_file;
  // Path roots (resolved) and size limits; the default allows everything.
  JobSpecPolicy policy;
  // foakd's jobs folder (<shared_dir>/jobs): with output_roots set,
  // resume_from_checkpoint may still name a checkpoint of an earlier job here.
  std::string jobs_dir;
};

struct PreparedJobSpec {
  std::string spec_json;  // the spec as stored (canonical JSON, user's values)
  int64_t gpus = 0;
  // Worker processes (ranks) per launch: one per GPU for a GPU job, else
  // resources.processes (1 when unset).
  int64_t processes = 1;
  int64_t nodes = 1;  // hosts; processes ranks on each
  std::map<std::string, std::string> node_selector;
  std::vector<Toleration> tolerations;
  std::string queue;  // Kueue LocalQueue
  int64_t priority = 0;
  int64_t max_restarts = 0;
  // Seconds without a worker report before foakd stops the attempt
  // (JobManager): 0 = foakd's default, -1 = never.
  int64_t stall_timeout_s = 0;
  // Seconds from an attempt's launch to its first worker report before foakd
  // stops it (JobManager): 0 = foakd's default, -1 = never.
  int64_t start_timeout_s = 0;
  std::map<std::string, std::string> labels;
  std::string output_dir;             // as given (absolute), or empty: foakd picks one
  std::string resolved_output_dir;    // output_dir's real path where output_roots confine it
  std::vector<std::string> file_ids;  // uploaded files the spec names
};

// INVALID_ARGUMENT naming the field path ("spec: dataset.train ..."),
// RESOURCE_EXHAUSTED for more GPUs than the host has.
absl::StatusOr<PreparedJobSpec> PrepareJobSpec(const std::string& spec_json,
                                               const JobSpecContext& context);

struct WorkerLaunchSettings {
  std::string output_dir;  // absolute
  std::string device;      // "cpu" or "cuda"
  bool restart = false;    // resume from the newest checkpoint in output_dir when there is one
};

// The coordinator's fields of a stored spec, checked as PrepareJobSpec checks
// them, without the worker's parser or any file access (spec_json, file_ids
// and output_dir stay empty): what a launch needs to know beyond the job file.
absl::StatusOr<PreparedJobSpec> CoordinatorFields(const std::string& spec_json,
                                                  const JobSpecContext& context);

// The worker's job file (JSON) for one launch of a stored spec.
absl::StatusOr<std::string> WorkerJobJson(const std::string& spec_json,
                                          const WorkerLaunchSettings& settings,
                                          const JobSpecContext& context);

// True when `value` has the form of an uploaded file's id ("file-" + 16 hex).
bool IsFileId(const std::string& value);

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_JOB_SPEC_H_

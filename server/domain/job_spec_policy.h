// What an operator allows a job spec to ask for, beyond what is well formed:
// where its paths may point (foakd --model_roots, --data_roots,
// --output_roots; see path_confinement.h) and how big a job may be
// (--max_gpus_per_job, --max_nodes_per_job, --max_seq_len, --max_steps,
// --max_epochs). Every setting defaults to "no limit", as the local demo
// wants; an empty root list leaves that kind of path unconfined.
//
// Which path goes with which roots:
//   model                              model_roots (and every entry directly in
//                                      the model folder, so a symlinked weight
//                                      file cannot point outside)
//   dataset.train, dataset.validation  data_roots when given as paths; an
//                                      uploaded file's id is always allowed
//                                      (foakd keeps those files itself)
//   output_dir                         output_roots when given; left empty,
//                                      foakd's own jobs/<id>/output is used
//                                      and always allowed
//   resume_from_checkpoint (a path)    output_roots or foakd's jobs folder (a
//                                      checkpoint of an earlier job there), and
//                                      every entry directly in it
// The worker reads no other path from the spec: chat templates are inline
// (a built-in name or a JSON object) and tokenizer files come from the model
// folder.
//
// Several tenants (foakd --auth_tokens_file): every root is split per tenant,
// so a tenant's paths must lie under <root>/<tenant>/ (the folder need not
// exist yet for an output_dir; the operator creates it for models and data).
// Without the split, tenant B could name tenant A's output_dir (B's job would
// resume A's newest checkpoint and its save_total_limit delete A's) or A's
// final/ folder as its model. --shared_model_roots are the exception: models
// every tenant may read, never split; they may not overlap an output root, so
// no job writes there. Without tenants they simply add to --model_roots.
// PolicyForTenant makes the roots one tenant's jobs are checked against.
//
// Size, checked when a job is submitted (a job accepted before a limit was
// lowered still runs):
//   max_gpus_per_job   resources.gpus x resources.nodes (every GPU of the job)
//   max_nodes_per_job  resources.nodes
//   max_seq_len        hyperparameters.max_seq_len, and each bench.seq_lens
//   max_steps          hyperparameters.max_steps. A job that leaves it 0 runs
//                      for `epochs` over its dataset, a step count foakd cannot
//                      know before the worker has tokenized the data, so with
//                      this limit set such a job is refused and asked for an
//                      explicit max_steps. A benchmark job counts the steps it
//                      plans: rows x (bench.warmup_steps + bench.steps).
//   max_epochs         hyperparameters.epochs of a job that leaves max_steps 0
#ifndef FOAK_SERVER_DOMAIN_JOB_SPEC_POLICY_H_
#define FOAK_SERVER_DOMAIN_JOB_SPEC_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/train/job.h"

namespace foak {

struct JobSpecPolicy {
  // Folders as given (foakd's flags); ResolveJobSpecPolicy makes them real.
  // Empty = that kind of path may be anywhere foakd can read.
  std::vector<std::string> model_roots;
  std::vector<std::string> data_roots;
  std::vector<std::string> output_roots;
  // Model folders every tenant may read (--shared_model_roots): not split per
  // tenant, and no output root may overlap them.
  std::vector<std::string> shared_model_roots;
  // 0 = no limit.
  int64_t max_gpus_per_job = 0;
  int64_t max_nodes_per_job = 0;
  int64_t max_seq_len = 0;
  int64_t max_steps = 0;
  double max_epochs = 0;
  // foakd's own folders (--data_dir, --shared_dir; set by foakd, not a flag):
  // with roots set, no spec path may resolve into them, even when a root
  // holds them -- uploads go by file id, outputs to the default folder --
  // except resume_from_checkpoint under <shared_dir>/jobs.
  std::vector<std::string> own_dirs;
  // Several tenants (foakd's --auth_tokens_file): a checkpoint under foakd's
  // jobs folder may be another tenant's, so resume_from_checkpoint may not
  // name one there (a job resumes its own through "latest").
  bool tenants = false;
};

// The policy with every root and own folder resolved (ResolveRoots) and the limits checked
// (>= 0); INVALID_ARGUMENT naming the foakd flag otherwise.
absl::StatusOr<JobSpecPolicy> ResolveJobSpecPolicy(JobSpecPolicy given);

// The roots one submitter's specs are checked against: with `policy.tenants`
// each of model_roots, data_roots and output_roots becomes <root>/<tenant>
// (resolved; it may not exist yet) and shared_model_roots join model_roots;
// without tenants only the latter. INVALID_ARGUMENT when tenants are on and
// `tenant` is empty (a job stored before --auth_tokens_file was set has no
// tenant whose folders it could use).
absl::StatusOr<JobSpecPolicy> PolicyForTenant(const JobSpecPolicy& policy, const std::string& tenant);

// With `roots` set, the absolute path `*value` at spec field `field` must
// resolve inside one of them (path_confinement.h) and outside
// policy.own_dirs; *value becomes the resolved path (no symlink left for the
// worker to follow) and `resolved`, when given, receives it. Without roots
// nothing changes. INVALID_ARGUMENT "spec: <field> = '<path>' ..." otherwise.
absl::Status ConfineSpecPath(nlohmann::json* value, const std::string& field, bool may_not_exist,
                             const std::vector<std::string>& roots, const std::string& roots_flag,
                             const JobSpecPolicy& policy, std::string* resolved = nullptr);

// resume_from_checkpoint of `spec` when it is a path (not true/false/
// "latest"/"none"): with output_roots set it must be absolute and resolve
// inside them or `jobs_dir` (foakd's jobs folder: a checkpoint of an earlier
// job; not with tenants), and so must every entry directly in it. The field
// becomes the resolved path.
absl::Status ConfineResumePath(nlohmann::json& spec, const JobSpecPolicy& policy,
                               const std::string& jobs_dir);

// The size limits against a parsed spec: INVALID_ARGUMENT naming the field,
// its value and the limit ("spec: hyperparameters.max_steps = 50000 is above
// this foakd's limit of 10000 (--max_steps)").
absl::Status CheckJobSize(const JobConfig& job, int64_t gpus, int64_t nodes,
                          const JobSpecPolicy& policy);

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_JOB_SPEC_POLICY_H_

#include "server/domain/job_spec_policy.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "server/domain/path_confinement.h"

// The path half of the policy (where a spec's paths may point) lives here
// with the size half, so job_spec.cc only says which field goes with which
// roots.

namespace foak {
namespace {

using Json = nlohmann::json;


absl::Status AboveLimit(const std::string& field, const std::string& value, const std::string& limit,
                        const std::string& flag, const std::string& what_to_do) {
  return absl::InvalidArgumentError(absl::StrCat("spec: ", field, " = ", value,
                                                 " is above this foakd's limit of ", limit, " (",
                                                 flag, "); ", what_to_do));
}

absl::Status FieldError(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec: ", path, " ", what));
}

// A confined path may still not point into foakd's own folders (its
// database, token key, job files, uploads), even when a root holds them.
absl::Status OutsideOwnDirs(const std::string& field, const std::string& given,
                            const std::string& real, const JobSpecPolicy& policy) {
  for (const std::string& own : policy.own_dirs) {
    if (PathWithin(real, own)) {
      return FieldError(field, absl::StrCat(
          "= '", given, "' resolves to '", real, "', inside foakd's own folder '", own,
          "' (its database, job files and uploads), which a spec may not name; upload a dataset "
          "(foakctl upload) and give its file id, or leave output_dir empty for foakd's own "
          "output folder"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// With `roots` set, the absolute path `*value` at `field` must resolve inside
// one of them and outside foakd's own folders, and the worker gets the
// resolved path (no symlink left to swap); `resolved` receives it. Without
// roots nothing changes.
absl::Status ConfineSpecPath(Json* value, const std::string& field, bool may_not_exist,
                             const std::vector<std::string>& roots, const std::string& roots_flag,
                             const JobSpecPolicy& policy, std::string* resolved) {
  if (roots.empty()) return absl::OkStatus();
  const std::string given = value->get<std::string>();
  absl::StatusOr<std::string> real = ConfinePath(given, may_not_exist, roots, roots_flag);
  if (!real.ok()) return FieldError(field, absl::StrCat("= '", given, "' ", real.status().message()));
  RETURN_IF_ERROR(OutsideOwnDirs(field, given, *real, policy));
  *value = *real;
  if (resolved != nullptr) *resolved = *real;
  return absl::OkStatus();
}

// resume_from_checkpoint as a path (not true/false/"latest"): with
// output_roots set it must be absolute and inside them or foakd's jobs folder
// (a checkpoint of an earlier job).
absl::Status ConfineResumePath(Json& root, const JobSpecPolicy& policy, const std::string& jobs_dir) {
  auto it = root.find("resume_from_checkpoint");
  if (policy.output_roots.empty() || it == root.end() || !it->is_string()) {
    return absl::OkStatus();
  }
  const std::string value = it->get<std::string>();
  if (value.empty() || value == "latest" || value == "true" || value == "false" || value == "none") {
    return absl::OkStatus();
  }
  if (value[0] != '/') {
    return FieldError("resume_from_checkpoint", absl::StrCat(
        "= '", value, "' is not an absolute path; give the absolute path of a checkpoint-<step> "
        "folder, or \"latest\""));
  }
  std::vector<std::string> roots = policy.output_roots;
  std::string jobs;
  if (!jobs_dir.empty() && !policy.tenants) {
    absl::StatusOr<std::string> real = ResolvePath(jobs_dir, /*may_not_exist=*/false);
    if (real.ok()) roots.push_back(jobs = *real);
  }
  absl::StatusOr<std::string> real =
      ConfinePath(value, /*may_not_exist=*/true, roots, "--output_roots, and foakd's jobs folder");
  if (!real.ok()) {
    return FieldError("resume_from_checkpoint", absl::StrCat("= '", value, "' ", real.status().message()));
  }
  // foakd's jobs folder is its own, but its checkpoints may be resumed.
  if (jobs.empty() || !PathWithin(*real, jobs)) {
    RETURN_IF_ERROR(OutsideOwnDirs("resume_from_checkpoint", value, *real, policy));
  }
  // The worker reads the checkpoint's files as it reads a model's.
  if (PathExists(*real)) {
    absl::Status entries = ConfineFolderEntries(*real, roots, "--output_roots, and foakd's jobs folder");
    if (!entries.ok()) {
      return FieldError("resume_from_checkpoint", absl::StrCat("= '", value, "' ", entries.message()));
    }
  }
  *it = *real;
  return absl::OkStatus();
}

absl::StatusOr<JobSpecPolicy> ResolveJobSpecPolicy(JobSpecPolicy given) {
  JobSpecPolicy p = std::move(given);
  ASSIGN_OR_RETURN(p.model_roots, ResolveRoots(p.model_roots, "--model_roots"));
  ASSIGN_OR_RETURN(p.data_roots, ResolveRoots(p.data_roots, "--data_roots"));
  ASSIGN_OR_RETURN(p.output_roots, ResolveRoots(p.output_roots, "--output_roots"));
  ASSIGN_OR_RETURN(p.shared_model_roots, ResolveRoots(p.shared_model_roots, "--shared_model_roots"));
  ASSIGN_OR_RETURN(p.own_dirs, ResolveRoots(p.own_dirs, "--data_dir or --shared_dir"));
  // A shared model root is read by every tenant: no job may write into it.
  for (const std::string& shared : p.shared_model_roots) {
    for (const std::string& out : p.output_roots) {
      if (PathWithin(shared, out) || PathWithin(out, shared)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--shared_model_roots: '", shared, "' overlaps --output_roots '", out,
            "'; every tenant reads a shared model root, so no job may write there: give folders "
            "that neither holds the other"));
      }
    }
  }
  const std::pair<const char*, int64_t> limits[] = {{"--max_gpus_per_job", p.max_gpus_per_job},
                                                    {"--max_nodes_per_job", p.max_nodes_per_job},
                                                    {"--max_seq_len", p.max_seq_len},
                                                    {"--max_steps", p.max_steps}};
  for (const auto& [flag, value] : limits) {
    if (value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " = ", value, "; expected 0 (no limit) or a positive limit"));
    }
  }
  if (!(p.max_epochs >= 0)) {  // also refuses NaN
    return absl::InvalidArgumentError(
        absl::StrCat("--max_epochs = ", p.max_epochs, "; expected 0 (no limit) or a positive limit"));
  }
  return p;
}

absl::StatusOr<JobSpecPolicy> PolicyForTenant(const JobSpecPolicy& policy, const std::string& tenant) {
  JobSpecPolicy p = policy;
  if (policy.tenants) {
    if (tenant.empty()) {
      return absl::InvalidArgumentError(
          "the job has no tenant, but this foakd splits its path roots per tenant "
          "(--auth_tokens_file); submit it again with a tenant's token");
    }
    // The tenant's name is [A-Za-z0-9._-] and begins with a letter or digit
    // (api_tokens.h): one path component, never "." or "..".
    for (std::vector<std::string>* roots : {&p.model_roots, &p.data_roots, &p.output_roots}) {
      for (std::string& root : *roots) {
        absl::StatusOr<std::string> real = ResolvePath(JoinPath(root, tenant), /*may_not_exist=*/true);
        if (!real.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("tenant folder '", JoinPath(root, tenant),
                                                         "' ", real.status().message()));
        }
        root = *real;
      }
    }
  }
  p.model_roots.insert(p.model_roots.end(), policy.shared_model_roots.begin(),
                       policy.shared_model_roots.end());
  return p;
}

absl::Status CheckJobSize(const JobConfig& job, int64_t gpus, int64_t nodes,
                          const JobSpecPolicy& policy) {
  if (policy.max_nodes_per_job > 0 && nodes > policy.max_nodes_per_job) {
    return AboveLimit("resources.nodes", absl::StrCat(nodes), absl::StrCat(policy.max_nodes_per_job),
                      "--max_nodes_per_job",
                      absl::StrCat("ask for at most ", policy.max_nodes_per_job, " nodes"));
  }
  // gpus <= 1024 and nodes <= 1024 (job_spec.cc), so the product fits.
  if (policy.max_gpus_per_job > 0 && gpus * nodes > policy.max_gpus_per_job) {
    const std::string value =
        nodes > 1 ? absl::StrCat(gpus, " on each of resources.nodes = ", nodes, ", ", gpus * nodes,
                                 " GPUs in all,")
                  : absl::StrCat(gpus);
    return AboveLimit("resources.gpus", value, absl::StrCat(policy.max_gpus_per_job, " GPUs per job"),
                      "--max_gpus_per_job",
                      absl::StrCat("ask for at most ", policy.max_gpus_per_job, " GPUs in all"));
  }
  const Hyperparameters& h = job.hyperparameters;
  if (policy.max_seq_len > 0) {
    if (h.max_seq_len > policy.max_seq_len) {
      return AboveLimit("hyperparameters.max_seq_len", absl::StrCat(h.max_seq_len),
                        absl::StrCat(policy.max_seq_len), "--max_seq_len",
                        absl::StrCat("set it to at most ", policy.max_seq_len));
    }
    for (size_t i = 0; i < job.bench.seq_lens.size(); ++i) {
      if (job.bench.seq_lens[i] > policy.max_seq_len) {
        return AboveLimit(absl::StrCat("bench.seq_lens[", i, "]"), absl::StrCat(job.bench.seq_lens[i]),
                          absl::StrCat(policy.max_seq_len), "--max_seq_len",
                          absl::StrCat("benchmark sequences of at most ", policy.max_seq_len));
      }
    }
  }
  if (job.bench.enabled) {
    if (policy.max_steps > 0) {
      // Every planned row runs warmup_steps + steps optimizer steps. The
      // parser bounds neither, so the arithmetic saturates instead of wrapping.
      int64_t per_row = 0, total = 0;
      const bool overflow =
          __builtin_add_overflow(job.bench.warmup_steps, job.bench.steps, &per_row) ||
          __builtin_mul_overflow(per_row, job.bench.PlannedRows(), &total);
      if (overflow || total > policy.max_steps) {
        return AboveLimit(
            "bench", absl::StrCat(job.bench.PlannedRows(), " rows x (warmup_steps ",
                                  job.bench.warmup_steps, " + steps ", job.bench.steps, ") = ",
                                  overflow ? std::string("more than 2^63") : absl::StrCat(total),
                                  " optimizer steps"),
            absl::StrCat(policy.max_steps, " steps"), "--max_steps",
            "plan fewer rows (seq_lens x batch_sizes x kernel_sets) or fewer steps per row");
      }
    }
    return absl::OkStatus();
  }
  if (policy.max_steps > 0) {
    if (h.max_steps == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec: hyperparameters.max_steps is 0 (train for epochs = ", h.epochs,
          "), but this foakd limits a job to ", policy.max_steps,
          " optimizer steps (--max_steps) and cannot count an epoch's steps before the data is "
          "tokenized; set hyperparameters.max_steps to at most ", policy.max_steps));
    }
    if (h.max_steps > policy.max_steps) {
      return AboveLimit("hyperparameters.max_steps", absl::StrCat(h.max_steps),
                        absl::StrCat(policy.max_steps), "--max_steps",
                        absl::StrCat("set it to at most ", policy.max_steps));
    }
  }
  if (policy.max_epochs > 0 && h.max_steps == 0 && h.epochs > policy.max_epochs) {
    return AboveLimit("hyperparameters.epochs", absl::StrCat(h.epochs), absl::StrCat(policy.max_epochs),
                      "--max_epochs",
                      absl::StrCat("set it to at most ", policy.max_epochs,
                                   " or give hyperparameters.max_steps instead"));
  }
  return absl::OkStatus();
}

}  // namespace foak

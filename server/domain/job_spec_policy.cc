#include "server/domain/job_spec_policy.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/domain/path_confinement.h"

namespace foak {
namespace {

absl::Status AboveLimit(const std::string& field, const std::string& value, const std::string& limit,
                        const std::string& flag, const std::string& what_to_do) {
  return absl::InvalidArgumentError(absl::StrCat("spec: ", field, " = ", value,
                                                 " is above this foakd's limit of ", limit, " (",
                                                 flag, "); ", what_to_do));
}

}  // namespace

absl::StatusOr<JobSpecPolicy> ResolveJobSpecPolicy(JobSpecPolicy given) {
  JobSpecPolicy p = std::move(given);
  ASSIGN_OR_RETURN(p.model_roots, ResolveRoots(p.model_roots, "--model_roots"));
  ASSIGN_OR_RETURN(p.data_roots, ResolveRoots(p.data_roots, "--data_roots"));
  ASSIGN_OR_RETURN(p.output_roots, ResolveRoots(p.output_roots, "--output_roots"));
  ASSIGN_OR_RETURN(p.own_dirs, ResolveRoots(p.own_dirs, "--data_dir or --shared_dir"));
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

// `foakctl bench`: a benchmark job (JobSpec.bench) from flags and/or a job
// file, submitted, followed to its end, and its rows printed.
//
// The spec is built with submit's machinery (job_spec_file.h for -f,
// job_spec_flags.h for the flags the two commands share) plus bench's own
// flags. Flags override the file; what neither sets takes the benchmark
// regime's defaults where they differ from a fine-tune's: pure bf16 and one
// GPU. Everything else (kernel sets none/foak/all, 3 warm-up and 10 timed
// steps, batch and sequence length from the hyperparameters) is left to the
// worker's defaults (worker/train/job.h), so there is one source of them.
//
// Where things go: stdout gets the results only, so that `foakctl bench ...
// > results.md` or `-o json | jq` work: -o table / markdown print the table
// once the job is over (also when it failed: the rows it finished are
// results), -o json one bench.jsonl line per row as it arrives. The running
// commentary (states, one line per row, reconnects) goes to stderr.
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/bench_format.h"
#include "common/file_util.h"
#include "client/command.h"
#include "client/errors.h"
#include "client/job_spec_file.h"
#include "client/job_spec_flags.h"
#include "client/table_writer.h"
#include "client/watch_commands.h"
#include "common/status_macros.h"

namespace foak::client {
namespace {

using foak::v1::BenchResult;
using foak::v1::JobSpec;

// Flags bench shares with submit, declared in two groups for the help's order.
const std::vector<std::string>& ModelFlags() {
  static const std::vector<std::string> names = {
      "model", "method", "lora-r", "lora-alpha", "lora-dropout", "lora-target-modules",
      "double-quant"};
  return names;
}
const std::vector<std::string>& JobFlags() {
  static const std::vector<std::string> names = {"name", "priority", "label"};
  return names;
}
// What ApplyJobSpecFlags applies: the above, and --precision and --gpus,
// which bench declares itself (its defaults differ).
std::vector<std::string> AppliedSpecFlags() {
  std::vector<std::string> names = ModelFlags();
  names.insert(names.end(), JobFlags().begin(), JobFlags().end());
  names.push_back("precision");
  names.push_back("gpus");
  return names;
}

constexpr char kDefaultPrecision[] = "bf16";
constexpr int32_t kDefaultGpus = 1;

void BenchFlags(FlagSet* flags) {
  flags->AddValue("file", 'f', "JOB.json|JOB.yaml",
                  "a job spec to start from, as submit takes (flags override its fields)");
  AddJobSpecFlags(flags, ModelFlags());
  flags->AddRepeated("kernels", 0, "SET",
                     "a kernel set to time: none, foak, all, or op names joined by ',' "
                     "(default: none, foak, all; the first is the baseline of % change)");
  flags->AddValue("batch", 0, "N,N,...", "batch sizes (default: hyperparameters.batch_size, 8)");
  flags->AddValue("seq", 0, "N,N,...",
                  "sequence lengths in tokens (default: hyperparameters.max_seq_len, 512)");
  flags->AddValue("steps", 0, "N", "timed optimizer steps per row (default 10)");
  flags->AddValue("warmup", 0, "N", "untimed warm-up steps per row (default 3)");
  flags->AddBool("find-max-batch", 0,
                 "also find the largest batch each kernel set fits at each sequence length, "
                 "and time it");
  flags->AddValue("max-batch-limit", 0, "N",
                  "with --find-max-batch: the largest batch tried (default 1024)");
  flags->AddValue("precision", 0, "bf16|bf16-mixed|fp32",
                  "default bf16: pure bf16, as published kernel benchmarks run");
  flags->AddBool("activation-checkpointing", 0, "recompute each decoder layer in backward");
  flags->AddValue("gpus", 0, "N", "GPUs of one host (default 1; 0 = a CPU job)");
  AddJobSpecFlags(flags, JobFlags());
}

// An integer flag's value (given), which must be at least `min`.
absl::StatusOr<int64_t> IntAtLeast(const FlagSet& flags, const std::string& name, int64_t min) {
  ASSIGN_OR_RETURN(const int64_t v, flags.GetInt(name, min));
  if (v < min) return UsageError(absl::StrCat("--", name, ": must be >= ", min, ", got ", v));
  return v;
}


absl::Status ApplyBenchFlags(const FlagSet& flags, foak::v1::BenchSpec* bench) {
  const std::vector<std::string> sets = flags.GetAll("kernels");
  if (!sets.empty()) bench->clear_kernel_sets();
  for (const std::string& set : sets) {
    const std::string trimmed(absl::StripAsciiWhitespace(set));
    if (trimmed.empty() || trimmed.find_first_not_of(", ") == std::string::npos) {
      return UsageError("--kernels: an empty kernel set; give none for plain LibTorch, foak, "
                        "all, or op names joined by ',' (e.g. --kernels rms_norm,rope)");
    }
    bench->add_kernel_sets(trimmed);
  }
  ASSIGN_OR_RETURN(const std::vector<int64_t> batches, flags.GetIntList("batch", 1));
  if (!batches.empty()) bench->clear_batch_sizes();
  for (const int64_t b : batches) bench->add_batch_sizes(b);
  ASSIGN_OR_RETURN(const std::vector<int64_t> seqs, flags.GetIntList("seq", 2));
  if (!seqs.empty()) bench->clear_seq_lens();
  for (const int64_t s : seqs) bench->add_seq_lens(s);
  if (flags.IsSet("steps")) {
    ASSIGN_OR_RETURN(const int64_t steps, IntAtLeast(flags, "steps", 1));
    bench->set_steps(steps);
  }
  if (flags.IsSet("warmup")) {
    ASSIGN_OR_RETURN(const int64_t warmup, IntAtLeast(flags, "warmup", 0));
    bench->set_warmup_steps(warmup);
  }
  if (flags.IsSet("find-max-batch")) bench->set_find_max_batch(flags.GetBool("find-max-batch"));
  if (flags.IsSet("max-batch-limit")) {
    if (!bench->find_max_batch()) {
      return UsageError("--max-batch-limit: only with --find-max-batch (it bounds that search)");
    }
    ASSIGN_OR_RETURN(const int64_t limit, IntAtLeast(flags, "max-batch-limit", 1));
    bench->set_max_batch_limit(limit);
  }
  return absl::OkStatus();
}

absl::StatusOr<JobSpec> BenchJobSpec(const CommandContext& ctx) {
  const FlagSet& flags = ctx.flags;
  JobSpec spec;
  if (flags.IsSet("file")) {
    ASSIGN_OR_RETURN(spec, LoadJobSpecFile(flags.Get("file")));
    if (spec.has_dataset()) {
      return UsageError(absl::StrCat(
          flags.Get("file"), ": dataset is set, but a benchmark job trains on random tokens; "
                             "remove dataset (or use foakctl submit to fine-tune)"));
    }
  }
  RETURN_IF_ERROR(ApplyJobSpecFlags(flags, AppliedSpecFlags(), &spec));
  if (spec.model().empty()) {
    return UsageError("--model is required: the model folder (its config.json is enough) on "
                      "foakd's host");
  }
  if (spec.method().empty()) spec.set_method("full");
  RETURN_IF_ERROR(ApplyBenchFlags(flags, spec.mutable_bench()));
  foak::v1::Hyperparameters* h = spec.mutable_hyperparameters();
  if (flags.GetBool("activation-checkpointing")) h->set_gradient_checkpointing(true);
  if (!h->has_precision()) h->set_precision(kDefaultPrecision);
  if (!spec.has_resources()) spec.mutable_resources()->set_gpus(kDefaultGpus);
  MakeLocalPathsAbsolute(ctx.cwd, &spec);
  if (spec.name().empty()) spec.set_name(absl::StrCat("bench-", BaseName(spec.model())));
  return spec;
}

void PrintResults(CommandContext& ctx, const std::map<int32_t, BenchResult>& by_index) {
  if (by_index.empty()) {
    ctx.err << "No benchmark rows.\n";
    return;
  }
  std::vector<BenchResult> rows;
  for (const auto& [index, row] : by_index) rows.push_back(row);
  if (ctx.output == OutputFormat::kMarkdown) {
    ctx.out << BenchMarkdownTable(rows);
  } else {
    TableWriter table(BenchTableHeader());
    for (const BenchResult& row : rows) table.AddRow(BenchTableRow(row));
    table.Print(ctx.out);
  }
  ctx.out.flush();
}

absl::StatusOr<int> RunBench(CommandContext& ctx) {
  if (!ctx.flags.positional().empty()) {
    return UsageError(absl::StrCat("bench takes no arguments, got '", ctx.flags.positional()[0],
                                   "'; give the model with --model DIR"));
  }
  foak::v1::CreateJobRequest request;
  ASSIGN_OR_RETURN(*request.mutable_spec(), BenchJobSpec(ctx));
  request.set_request_id(NewRequestId());
  foak::v1::Job job;
  RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/true, [&](grpc::ClientContext* c) {
    return ctx.connection.jobs()->CreateJob(c, request, &job);
  }));
  ctx.err << "benchmark job " << job.id() << " submitted; interrupting foakctl leaves it running "
          << "(foakctl watch " << job.id() << " follows it again)\n";
  ctx.err.flush();

  // By row index: a relaunched job reports its rows again, the newest wins.
  std::map<int32_t, BenchResult> rows;
  FollowOptions follow;
  follow.lines = &ctx.err;
  follow.on_bench = [&ctx, &rows](const BenchResult& row) {
    rows[row.index()] = row;
    if (ctx.json()) {
      ctx.out << BenchRowJson(row) << "\n";
      ctx.out.flush();
    }
  };
  absl::StatusOr<int> code = FollowJob(ctx, job.id(), 0, follow);
  if (!ctx.json()) PrintResults(ctx, rows);
  return code;
}

}  // namespace

std::vector<Command> BenchCommands() {
  Command bench{
      "bench", "benchmark kernel sets on a model's shapes, as a job on foakd",
      "bench --model DIR [--kernels SET]... [--batch N,N] [--seq N,N] [flags]",
      "Submits a benchmark job (JobSpec.bench) and follows it to its end. The worker\n"
      "trains the architecture of --model (only its config.json is read; the weights\n"
      "and tokens are random) for every combination of --seq x --batch x --kernels:\n"
      "--warmup untimed and --steps timed optimizer steps each, with the job's method,\n"
      "precision and activation checkpointing, and reports tokens/s and peak memory.\n"
      "--model is a folder on foakd's host (relative paths are made absolute against\n"
      "the current directory). Flags override the fields of -f.\n\n"
      "Each row prints on stderr as it arrives:\n"
      "  18:45:40  bench 2/9  foak  4 x 2048  67,890 tok/s  +34.2%  peak 12.34 GiB\n"
      "and when the job ends the results go to stdout (-o table, the default):\n"
      "  model          method   kernels   GPUs   batch   seq    tokens/s   % change   peak GiB\n"
      "  llama-3.2-1b   full     none      1      4       2048   50,321     -          22.10\n"
      "  llama-3.2-1b   full     foak      1      4       2048   67,890     +34.9%     11.05\n"
      "-o markdown prints the same table as GitHub markdown; -o json prints one JSON\n"
      "object per row as it arrives, with the field names of the worker's bench.jsonl.\n"
      "A row that did not run shows its status (out of memory) under tokens/s; a\n"
      "--find-max-batch row shows its batch as \"24 (max)\". Interrupting foakctl\n"
      "leaves the job running (foakctl cancel ID stops it). Exit code: 0 when the job\n"
      "SUCCEEDED (rows that ran out of memory are results too), 4 FAILED, 5 CANCELLED.\n\n"
      "Examples:\n"
      "  foakctl bench --model /models/llama-3.2-1b --batch 4 --seq 2048\n"
      "  foakctl bench --model /models/llama-3-8b --method lora --lora-r 16 \\\n"
      "      --kernels none --kernels all --seq 1024,4096 --find-max-batch -o markdown",
      BenchFlags, RunBench};
  bench.markdown = true;
  return {bench};
}

}  // namespace foak::client

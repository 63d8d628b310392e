// submit, list, get, cancel, checkpoints: the JobService calls of foakctl.
//
// submit picks a random UUIDv4 request_id once per invocation (unless given),
// so CreateJob can be retried on UNAVAILABLE / DEADLINE_EXCEEDED without ever
// creating the job twice: foakd answers a repeated request_id with the job it
// created the first time. Reads are retried the same way; cancel is sent once
// (a repeat would fail with FAILED_PRECONDITION after the first succeeded).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/command.h"
#include "client/errors.h"
#include "client/format.h"
#include "client/job_spec_file.h"
#include "client/job_spec_flags.h"
#include "client/job_view.h"
#include "client/table_writer.h"
#include "client/watch_commands.h"
#include "common/status_macros.h"

namespace foak::client {
namespace {

using foak::v1::Job;

// The single positional argument `what` (e.g. "ID") of a command.
absl::StatusOr<std::string> OneArgument(const CommandContext& ctx, const std::string& what) {
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 1) {
    return UsageError(args.empty() ? absl::StrCat("missing ", what)
                                   : absl::StrCat("expected one ", what, ", got ", args.size(),
                                                  " arguments"));
  }
  return args[0];
}

// --- submit ------------------------------------------------------------------

void SubmitFlags(FlagSet* flags) {
  flags->AddValue("file", 'f', "JOB.json|JOB.yaml", "the job spec file (\"-\" reads stdin)");
  flags->AddBool("watch", 'w', "then watch the job until it is final (exit codes as watch)");
  flags->AddValue("request-id", 0, "ID", "idempotency key (default: a fresh random UUID)");
  flags->AddBool("validate-only", 0, "let foakd check the spec without creating a job");
  AddJobSpecFlags(flags);
}

absl::StatusOr<int> RunSubmit(CommandContext& ctx) {
  if (!ctx.flags.positional().empty()) {
    return UsageError(absl::StrCat("submit takes no arguments, got '", ctx.flags.positional()[0],
                                   "'; give the job file with -f"));
  }
  const bool validate_only = ctx.flags.GetBool("validate-only");
  if (validate_only && ctx.flags.GetBool("watch")) {
    return UsageError("--watch and --validate-only exclude each other: nothing is created to watch");
  }
  foak::v1::CreateJobRequest request;
  if (ctx.flags.IsSet("file")) {
    ASSIGN_OR_RETURN(*request.mutable_spec(), LoadJobSpecFile(ctx.flags.Get("file")));
  } else if (!AnyJobSpecFlagSet(ctx.flags)) {
    return UsageError("submit needs a job: -f JOB.yaml, or flags such as --model DIR --train DATA");
  }
  RETURN_IF_ERROR(ApplyJobSpecFlags(ctx.flags, request.mutable_spec()));
  MakeLocalPathsAbsolute(ctx.cwd, request.mutable_spec());
  request.set_request_id(ctx.flags.IsSet("request-id") ? ctx.flags.Get("request-id") : NewRequestId());
  request.set_validate_only(validate_only);

  Job job;
  RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/true, [&](grpc::ClientContext* c) {
    return ctx.connection.jobs()->CreateJob(c, request, &job);
  }));
  if (ctx.json()) {
    ctx.out << ToJson(job, /*pretty=*/true) << "\n";
  } else if (validate_only) {
    ctx.out << "job spec is valid (nothing was created)\n";
  } else {
    ctx.out << job.id() << "\n";
  }
  ctx.out.flush();
  if (!ctx.flags.GetBool("watch")) return kExitOk;
  return WatchJobToEnd(ctx, job.id(), 0);
}

// --- list --------------------------------------------------------------------

void ListFlags(FlagSet* flags) {
  flags->AddValue("state", 0, "STATE", "only jobs in this state (queued, running, failed, ...)");
  flags->AddValue("limit", 0, "N", "at most N jobs, newest first (default: all)");
}

absl::StatusOr<int> RunList(CommandContext& ctx) {
  if (!ctx.flags.positional().empty()) return UsageError("list takes no arguments");
  foak::v1::ListJobsRequest request;
  if (ctx.flags.IsSet("state")) {
    ASSIGN_OR_RETURN(const Job::State state, ParseStateName(ctx.flags.Get("state")));
    request.set_state(state);
  }
  ASSIGN_OR_RETURN(const int64_t limit, ctx.flags.GetInt("limit", 0));
  if (limit < 0) return UsageError("--limit: must be >= 0 (0 = all)");
  request.set_page_size(static_cast<int32_t>(limit > 0 ? std::min<int64_t>(limit, 1000) : 100));

  foak::v1::ListJobsResponse all;
  while (true) {
    foak::v1::ListJobsResponse page;
    RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/true, [&](grpc::ClientContext* c) {
      return ctx.connection.jobs()->ListJobs(c, request, &page);
    }));
    for (Job& job : *page.mutable_jobs()) {
      if (limit > 0 && all.jobs_size() >= limit) break;
      *all.add_jobs() = std::move(job);
    }
    if (page.next_page_token().empty() || (limit > 0 && all.jobs_size() >= limit)) break;
    if (page.next_page_token() == request.page_token()) {
      return absl::InternalError("foakd returned the same page token twice; stopping");
    }
    request.set_page_token(page.next_page_token());
  }
  if (ctx.json()) {
    ctx.out << ToJson(all, /*pretty=*/true) << "\n";
    return kExitOk;
  }
  if (all.jobs().empty()) {
    ctx.err << "No jobs" << (ctx.flags.IsSet("state") ? " in that state" : "") << ".\n";
    return kExitOk;
  }
  TableWriter table(JobTableHeader());
  const absl::Time now = absl::Now();
  for (const Job& job : all.jobs()) table.AddRow(JobTableRow(job, now));
  table.Print(ctx.out);
  return kExitOk;
}

// --- get / cancel ------------------------------------------------------------

absl::StatusOr<int> RunGet(CommandContext& ctx) {
  ASSIGN_OR_RETURN(const std::string id, OneArgument(ctx, "job ID"));
  foak::v1::GetJobRequest request;
  request.set_id(id);
  Job job;
  RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/true, [&](grpc::ClientContext* c) {
    return ctx.connection.jobs()->GetJob(c, request, &job);
  }));
  if (ctx.json()) {
    ctx.out << ToJson(job, /*pretty=*/true) << "\n";
  } else {
    ctx.out << JobDetails(job, absl::Now(), ctx.time_zone);
  }
  return kExitOk;
}

absl::StatusOr<int> RunCancel(CommandContext& ctx) {
  ASSIGN_OR_RETURN(const std::string id, OneArgument(ctx, "job ID"));
  foak::v1::CancelJobRequest request;
  request.set_id(id);
  Job job;
  RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/false, [&](grpc::ClientContext* c) {
    return ctx.connection.jobs()->CancelJob(c, request, &job);
  }));
  if (ctx.json()) {
    ctx.out << ToJson(job, /*pretty=*/true) << "\n";
  } else {
    ctx.out << job.id() << " " << StateName(job.state()) << "\n";
  }
  return kExitOk;
}

// --- checkpoints -------------------------------------------------------------

absl::StatusOr<int> RunCheckpoints(CommandContext& ctx) {
  ASSIGN_OR_RETURN(const std::string id, OneArgument(ctx, "job ID"));
  foak::v1::ListCheckpointsRequest request;
  request.set_id(id);
  foak::v1::ListCheckpointsResponse response;
  RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/true, [&](grpc::ClientContext* c) {
    return ctx.connection.jobs()->ListCheckpoints(c, request, &response);
  }));
  if (ctx.json()) {
    ctx.out << ToJson(response, /*pretty=*/true) << "\n";
    return kExitOk;
  }
  if (response.checkpoints().empty()) {
    ctx.err << "No checkpoints yet.\n";
    return kExitOk;
  }
  TableWriter table({"STEP", "TIME", "PATH"});
  for (const foak::v1::Checkpoint& c : response.checkpoints()) {
    table.AddRow({absl::StrCat(c.step()), FormatTimestamp(c.time(), ctx.time_zone), c.path()});
  }
  table.Print(ctx.out);
  return kExitOk;
}

void NoFlags(FlagSet*) {}

}  // namespace

std::vector<Command> JobCommands() {
  return {
      {"submit", "create a fine-tuning job from a job file and/or flags",
       "submit (-f JOB.json|JOB.yaml | --model DIR --train DATA ...) [flags]",
       "Creates a job on foakd and prints its id (-o json: the Job). Flags override the\n"
       "fields of -f. Relative paths (model, dataset.train, dataset.validation,\n"
       "output_dir) are made absolute against the current directory; uploaded file ids\n"
       "(file-...) are kept. A job file that does not parse, or names an unknown field,\n"
       "is a usage error (exit 2); a spec foakd refuses exits 7 with foakd's message.\n\n"
       "Examples:\n"
       "  foakctl submit -f examples/tiny_lora.yaml --watch\n"
       "  foakctl submit --name demo --model ./models/tiny --train file-0123456789abcdef \\\n"
       "      --method lora --lora-r 16 --max-steps 200 --label team=nlp",
       SubmitFlags, RunSubmit},
      {"list", "list jobs, newest first", "list [--state STATE] [--limit N] [flags]",
       "Columns: ID, NAME, STATE, STEP (step/max), LOSS, TOKENS/S, AGE, REASON.", ListFlags,
       RunList},
      {"get", "show one job", "get ID [flags]",
       "Shows the job's spec, state, times and progress (-o json: the Job in proto JSON).",
       NoFlags, RunGet},
      {"cancel", "cancel a job", "cancel ID [flags]",
       "A queued job is cancelled at once; a running one becomes CANCELLING until its\n"
       "workers have stopped. Prints the job's new state. Cancelling a finished job\n"
       "exits 7 (FAILED_PRECONDITION).",
       NoFlags, RunCancel},
      {"checkpoints", "list a job's checkpoints", "checkpoints ID [flags]",
       "Columns: STEP, TIME, PATH (on foakd's host).", NoFlags, RunCheckpoints},
  };
}

}  // namespace foak::client

#include "client/watch_commands.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "client/bench_format.h"
#include "client/errors.h"
#include "client/event_stream.h"
#include "client/format.h"
#include "client/progress_line.h"
#include "common/status_macros.h"

namespace foak::client {
namespace {

using foak::v1::Job;
using foak::v1::JobEvent;

// ANSI: erase from the cursor to the end of the line.
constexpr char kClearToEol[] = "\033[K";

int ExitCodeForFinalState(Job::State state) {
  switch (state) {
    case Job::SUCCEEDED:
      return kExitOk;
    case Job::FAILED:
      return kExitJobFailed;
    case Job::CANCELLED:
      return kExitJobCancelled;
    default:
      return kExitError;
  }
}

// "STATE  Reason: message", leaving out what is empty.
std::string StateText(Job::State state, const std::string& reason, const std::string& message) {
  std::string line = StateName(state);
  if (!reason.empty() || !message.empty()) absl::StrAppend(&line, "  ");
  absl::StrAppend(&line, reason, !reason.empty() && !message.empty() ? ": " : "", message);
  return line;
}

// Prints the events of one watch as lines, keeping the live progress line
// (on a terminal) below the other lines.
class WatchPrinter {
 public:
  WatchPrinter(std::ostream& out, bool tty, absl::TimeZone time_zone)
      : out_(out), tty_(tty), time_zone_(time_zone) {}

  void Print(const JobEvent& event) {
    const std::string clock = FormatClock(event.time(), time_zone_);
    const std::string prefix = clock.empty() ? "" : clock + "  ";
    switch (event.event_case()) {
      case JobEvent::kState: {
        const foak::v1::StateChange& s = event.state();
        progress_.SetState(s.state());
        if (IsFinalState(s.state())) EndLiveLine();
        PrintLine(prefix + StateText(s.state(), s.reason(), s.message()), !IsFinalState(s.state()));
        break;
      }
      case JobEvent::kMetrics:
        if (event.metrics().rank() != 0) break;
        progress_.AddMetrics(event.metrics());
        if (tty_) {
          out_ << "\r" << progress_.Text() << kClearToEol;
          live_shown_ = true;
        } else {
          out_ << progress_.Text() << "\n";
        }
        break;
      case JobEvent::kEval: {
        const foak::v1::EvalMetrics& e = event.eval();
        std::string line = absl::StrCat(prefix, "eval  step ", e.step(), "  eval_loss ",
                                        FormatLoss(e.eval_loss()));
        if (e.eval_tokens() > 0) absl::StrAppend(&line, "  ", FormatThousands(e.eval_tokens()), " tokens");
        PrintLine(line, true);
        break;
      }
      case JobEvent::kCheckpoint:
        PrintLine(absl::StrCat(prefix, "checkpoint  step ", event.checkpoint().step(), "  ",
                               event.checkpoint().path()),
                  true);
        break;
      case JobEvent::kBench: {
        const foak::v1::BenchResult& b = event.bench();
        PrintLine(absl::StrCat(prefix, "bench ", b.index() + 1, "/", b.total(), "  ",
                               BenchRowText(b)),
                  true);
        break;
      }
      default:
        break;
    }
    out_.flush();
  }

  // Leaves the live line on screen and moves below it.
  void EndLiveLine() {
    if (live_shown_) out_ << "\n";
    live_shown_ = false;
  }

  // A whole line, e.g. the final state when the stream did not bring it.
  void PrintLine(const std::string& line) { PrintLine(line, false); }

 private:
  // Prints a whole line above the live one: clear it, print, redraw it.
  void PrintLine(const std::string& line, bool redraw) {
    if (live_shown_) out_ << "\r" << kClearToEol;
    live_shown_ = false;
    out_ << line << "\n";
    if (redraw && tty_ && progress_.has_metrics()) {
      out_ << progress_.Text() << kClearToEol;
      live_shown_ = true;
    }
  }

  std::ostream& out_;
  const bool tty_;
  const absl::TimeZone time_zone_;
  ProgressLine progress_;
  bool live_shown_ = false;
};

absl::StatusOr<std::string> JobIdArgument(const CommandContext& ctx) {
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 1) {
    return UsageError(args.empty() ? "missing job ID" : "expected one job ID");
  }
  return args[0];
}

// --- watch -------------------------------------------------------------------

void WatchFlags(FlagSet* flags) {
  flags->AddValue("after-seq", 0, "N", "start after event N (default 0: the whole history)");
}

absl::StatusOr<int> RunWatch(CommandContext& ctx) {
  ASSIGN_OR_RETURN(const std::string id, JobIdArgument(ctx));
  ASSIGN_OR_RETURN(const int64_t after_seq, ctx.flags.GetInt("after-seq", 0));
  if (after_seq < 0) return UsageError("--after-seq: must be >= 0");
  return WatchJobToEnd(ctx, id, after_seq);
}

// --- logs --------------------------------------------------------------------

void LogsFlags(FlagSet* flags) {
  flags->AddBool("follow", 'f', "keep printing new lines until the job is final");
}

// Prints one log line; the rank prefix only once more than one rank spoke.
void PrintLog(CommandContext& ctx, const JobEvent& event, bool multi_rank) {
  if (ctx.json()) {
    ctx.out << ToJson(event, /*pretty=*/false) << "\n";
    return;
  }
  std::string text = event.log().text();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (multi_rank) ctx.out << "[rank " << event.log().rank() << "] ";
  ctx.out << text << "\n";
}

absl::StatusOr<int> RunLogs(CommandContext& ctx) {
  ASSIGN_OR_RETURN(const std::string id, JobIdArgument(ctx));
  EventStream::Options options;
  options.kinds = {"log"};
  options.history_only = true;
  options.reconnect_budget = ctx.reconnect_budget;
  options.reconnect_backoff = ctx.reconnect_backoff;
  // The history first, whole, so that every line gets the same prefix rule.
  std::vector<JobEvent> history;
  EventStream past(ctx.connection, id, options, ctx.err);
  RETURN_IF_ERROR(past.Run([&](const JobEvent& e) {
    if (e.has_log()) history.push_back(e);
    return absl::OkStatus();
  }));
  bool multi_rank = false;
  for (const JobEvent& e : history) multi_rank = multi_rank || e.log().rank() > 0;
  for (const JobEvent& e : history) PrintLog(ctx, e, multi_rank);
  ctx.out.flush();
  if (!ctx.flags.GetBool("follow")) return kExitOk;

  options.history_only = false;
  options.after_seq = past.last_seq();
  EventStream live(ctx.connection, id, options, ctx.err);
  RETURN_IF_ERROR(live.Run([&](const JobEvent& e) {
    if (!e.has_log()) return absl::OkStatus();
    multi_rank = multi_rank || e.log().rank() > 0;
    PrintLog(ctx, e, multi_rank);
    ctx.out.flush();
    return absl::OkStatus();
  }));
  return kExitOk;
}

}  // namespace

absl::StatusOr<int> WatchJobToEnd(CommandContext& ctx, const std::string& job_id, int64_t after_seq) {
  FollowOptions options;
  options.lines = &ctx.out;
  options.lines_tty = ctx.out_is_tty;
  options.json_events = ctx.json();
  return FollowJob(ctx, job_id, after_seq, options);
}

absl::StatusOr<int> FollowJob(CommandContext& ctx, const std::string& job_id, int64_t after_seq,
                              const FollowOptions& follow) {
  EventStream::Options options;
  options.kinds = {"state", "metrics", "eval", "checkpoint", "bench"};
  options.after_seq = after_seq;
  options.reconnect_budget = ctx.reconnect_budget;
  options.reconnect_backoff = ctx.reconnect_backoff;
  EventStream stream(ctx.connection, job_id, options, ctx.err);
  std::ostream& lines = follow.lines != nullptr ? *follow.lines : ctx.out;
  WatchPrinter printer(lines, follow.lines_tty, ctx.time_zone);
  Job::State final_state = Job::STATE_UNSPECIFIED;
  absl::Status status = stream.Run([&](const JobEvent& event) {
    if (event.has_state() && IsFinalState(event.state().state())) final_state = event.state().state();
    if (follow.json_events) {
      ctx.out << ToJson(event, /*pretty=*/false) << "\n";
      ctx.out.flush();
    } else {
      printer.Print(event);
    }
    if (event.has_bench() && follow.on_bench) follow.on_bench(event.bench());
    return absl::OkStatus();
  });
  printer.EndLiveLine();
  RETURN_IF_ERROR(status);
  if (final_state == Job::STATE_UNSPECIFIED) {
    // The stream ended without a final state among the events we were sent
    // (e.g. --after-seq past it): ask for the job.
    foak::v1::GetJobRequest request;
    request.set_id(job_id);
    Job job;
    RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/true, [&](grpc::ClientContext* c) {
      return ctx.connection.jobs()->GetJob(c, request, &job);
    }));
    if (!IsFinalState(job.state())) {
      return absl::InternalError(absl::StrCat("the watch of ", job_id, " ended while the job is ",
                                              StateName(job.state()), "; watch it again"));
    }
    final_state = job.state();
    if (!follow.json_events) printer.PrintLine(StateText(job.state(), job.reason(), job.message()));
  }
  return ExitCodeForFinalState(final_state);
}

std::vector<Command> WatchCommands() {
  return {
      {"watch", "follow a job's progress until it ends", "watch ID [--after-seq N] [flags]",
       "Prints state changes, evaluations, checkpoints and benchmark rows as lines and\n"
       "the training progress as a live line (rewritten in place on a terminal):\n"
       "  RUNNING  step 40/160  loss 2.013  1,234 tok/s  mem 1.2 GiB  ETA 1m12s\n"
       "  18:45:40  bench 2/9  foak  4 x 2048  67,890 tok/s  +34.2%  peak 12.34 GiB\n"
       "-o json prints one JSON object per event. Survives foakd restarts (reconnects\n"
       "for up to 60 s). Exit code: 0 SUCCEEDED, 4 FAILED, 5 CANCELLED.",
       WatchFlags, RunWatch},
      {"logs", "print a job's worker log lines", "logs ID [-f] [flags]",
       "Prints the lines the job's workers wrote so far; -f keeps following until the\n"
       "job ends. Lines are prefixed \"[rank N] \" when the job has more than one rank.",
       LogsFlags, RunLogs},
  };
}

}  // namespace foak::client

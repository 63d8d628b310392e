// `foakctl watch` and `foakctl logs`: a job's events as they happen.
//
// watch prints state changes, evaluations and checkpoints as lines and the
// training progress as one live line (rewritten in place with \r on a
// terminal, one line per logged step otherwise); with -o json every event is
// one JSON object per line. A benchmark job's rows print as they arrive, one
// line each (bench_format.h). It ends when the job is final and its exit code
// says how: 0 SUCCEEDED, 4 FAILED, 5 CANCELLED. logs prints the workers' log
// lines. Both reconnect after a foakd restart (event_stream.h).
#ifndef FOAK_CLIENT_WATCH_COMMANDS_H_
#define FOAK_CLIENT_WATCH_COMMANDS_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "client/command.h"

namespace foak::client {

// Watches `job_id` from the event after `after_seq` until the job is final;
// returns the exit code of its final state. Used by watch and submit --watch.
absl::StatusOr<int> WatchJobToEnd(CommandContext& ctx, const std::string& job_id, int64_t after_seq);

// How FollowJob prints what happens.
struct FollowOptions {
  // The readable lines (states, evaluations, checkpoints, benchmark rows, the
  // live progress line) go here; `lines_tty` rewrites the live line in place.
  std::ostream* lines = nullptr;
  bool lines_tty = false;
  // Instead of the lines: every event as one proto JSON object on ctx.out.
  bool json_events = false;
  // Called with each benchmark row as it arrives (after its line is printed).
  std::function<void(const foak::v1::BenchResult&)> on_bench;
};

// WatchJobToEnd with the output chosen by `options` (bench: the lines on
// stderr, the rows collected for its table).
absl::StatusOr<int> FollowJob(CommandContext& ctx, const std::string& job_id, int64_t after_seq,
                              const FollowOptions& options);

}  // namespace foak::client

#endif  // FOAK_CLIENT_WATCH_COMMANDS_H_

// `foakctl watch` and `foakctl logs`: a job's events as they happen.
//
// watch prints state changes, evaluations and checkpoints as lines and the
// training progress as one live line (rewritten in place with \r on a
// terminal, one line per logged step otherwise); with -o json every event is
// one JSON object per line. It ends when the job is final and its exit code
// says how: 0 SUCCEEDED, 4 FAILED, 5 CANCELLED. logs prints the workers' log
// lines. Both reconnect after a foakd restart (event_stream.h).
#ifndef FOAK_CLIENT_WATCH_COMMANDS_H_
#define FOAK_CLIENT_WATCH_COMMANDS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "client/command.h"

namespace foak::client {

// Watches `job_id` from the event after `after_seq` until the job is final;
// returns the exit code of its final state. Used by watch and submit --watch.
absl::StatusOr<int> WatchJobToEnd(CommandContext& ctx, const std::string& job_id, int64_t after_seq);

}  // namespace foak::client

#endif  // FOAK_CLIENT_WATCH_COMMANDS_H_

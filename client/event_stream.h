// Reads a job's events through JobService.WatchJob and survives foakd
// restarts.
//
// foakd ends a watch with UNAVAILABLE when it shuts down, and events carry a
// per-job seq (1, 2, 3, ... without gaps), so a broken stream is reopened with
// after_seq = the last seq handed out: the handler sees every event once and
// in order, and events at or below that seq (should a server resend them) are
// dropped. Reconnecting backs off (doubling, capped at 8x the first wait) for
// at most `reconnect_budget` per outage. When the very first attempt cannot
// reach foakd at all, only the connection's unary retry count applies, so a
// wrong --server fails in seconds rather than a minute.
#ifndef FOAK_CLIENT_EVENT_STREAM_H_
#define FOAK_CLIENT_EVENT_STREAM_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "foak/v1/job_service.pb.h"

namespace foak::client {

class EventStream {
 public:
  struct Options {
    // Event kinds to receive ("state", "metrics", ...); empty = all.
    std::vector<std::string> kinds;
    // Only the events recorded so far, then end.
    bool history_only = false;
    // Start after this seq (0 = from the first event).
    int64_t after_seq = 0;
    absl::Duration reconnect_budget = absl::Seconds(60);
    absl::Duration reconnect_backoff = absl::Milliseconds(500);
  };
  // Called for each new event; an error stops the stream and is returned.
  using Handler = std::function<absl::Status(const foak::v1::JobEvent&)>;

  // Notices about reconnecting go to `err`.
  EventStream(Connection& connection, std::string job_id, Options options, std::ostream& err);

  // Streams until foakd ends the stream (OK: the job is final, or the
  // history was sent), the handler fails, or the server answers an error.
  absl::Status Run(const Handler& on_event);

  // The seq of the last event handed to the handler.
  int64_t last_seq() const { return last_seq_; }

 private:
  Connection& connection_;
  std::string job_id_;
  Options options_;
  std::ostream& err_;
  int64_t last_seq_ = 0;
};

}  // namespace foak::client

#endif  // FOAK_CLIENT_EVENT_STREAM_H_

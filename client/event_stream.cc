#include "client/event_stream.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/errors.h"
#include "grpcpp/client_context.h"

namespace foak::client {

EventStream::EventStream(Connection& connection, std::string job_id, Options options,
                         std::ostream& err)
    : connection_(connection),
      job_id_(std::move(job_id)),
      options_(std::move(options)),
      err_(err),
      last_seq_(options_.after_seq) {}

absl::Status EventStream::Run(const Handler& on_event) {
  bool received_any = false;
  int failed_first_attempts = 0;
  absl::Time outage_start = absl::InfinitePast();  // InfinitePast: connected
  absl::Duration backoff = options_.reconnect_backoff;
  while (true) {
    foak::v1::WatchJobRequest request;
    request.set_id(job_id_);
    request.set_after_seq(last_seq_);
    request.set_history_only(options_.history_only);
    for (const std::string& kind : options_.kinds) request.add_kinds(kind);

    const absl::Time attempt_start = absl::Now();
    grpc::ClientContext context;  // no deadline: a watch lasts as long as the job
    connection_.Prepare(&context);
    std::unique_ptr<grpc::ClientReader<foak::v1::JobEvent>> reader =
        connection_.jobs()->WatchJob(&context, request);
    foak::v1::JobEvent event;
    bool received_now = false;
    absl::Status handler_status;
    while (reader->Read(&event)) {
      received_now = true;
      if (event.seq() > 0 && event.seq() <= last_seq_) continue;  // never twice
      last_seq_ = std::max(last_seq_, event.seq());
      handler_status = on_event(event);
      if (!handler_status.ok()) {
        context.TryCancel();
        break;
      }
    }
    const grpc::Status status = reader->Finish();
    if (!handler_status.ok()) return handler_status;
    if (status.ok()) return absl::OkStatus();
    // UNAVAILABLE: foakd restarted, or was never there. CANCELLED (we did not
    // cancel: the handler said go on): foakd cut the call while shutting down.
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
        status.error_code() != grpc::StatusCode::CANCELLED) {
      return ServerError(status);
    }

    received_any = received_any || received_now;
    if (!received_any) {
      // Nothing has come through yet: likely a wrong address; retry as a
      // unary call would.
      if (failed_first_attempts++ >= connection_.options().max_retries) return ServerError(status);
      absl::SleepFor(connection_.options().retry_backoff * (1 << std::min(failed_first_attempts - 1, 4)));
      continue;
    }
    const absl::Time now = absl::Now();
    // A stream that delivered events, or stayed open a while, was connected:
    // this is a new outage with a fresh budget.
    const bool was_up = received_now || now - attempt_start > absl::Seconds(5);
    if (was_up || outage_start == absl::InfinitePast()) {
      outage_start = now;
      backoff = options_.reconnect_backoff;
      err_ << "foakctl: lost the stream from foakd (" << status.error_message()
           << "); reconnecting after event " << last_seq_ << "\n";
    }
    const absl::Duration left = options_.reconnect_budget - (now - outage_start);
    if (left <= absl::ZeroDuration()) {
      return absl::UnavailableError(
          absl::StrCat("lost the connection to foakd at ", connection_.target(),
                       " and could not reconnect within ", absl::FormatDuration(options_.reconnect_budget),
                       ": ", status.error_message()));
    }
    absl::SleepFor(std::min(backoff, left));
    backoff = std::min(backoff * 2, options_.reconnect_backoff * 8);
  }
}

}  // namespace foak::client

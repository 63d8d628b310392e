// The live progress line of `foakctl watch`:
//   RUNNING  step 40/160  loss 2.013  1,234 tok/s  mem 1.2 GiB  ETA 1m12s
//
// The ETA comes from the recent step rate, measured on the worker's own clock
// (StepMetrics.elapsed_s) over the last few logged steps, not on foakctl's: a
// watch that replays history, or reconnects after a foakd restart, then still
// sees the true training speed instead of events arriving in a burst. The
// window restarts when elapsed_s goes backwards (the worker was relaunched).
#ifndef FOAK_CLIENT_PROGRESS_LINE_H_
#define FOAK_CLIENT_PROGRESS_LINE_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "foak/v1/job_service.pb.h"

namespace foak::client {

class ProgressLine {
 public:
  // Steps over which the rate is measured.
  static constexpr size_t kWindow = 8;

  void SetState(foak::v1::Job::State state) { state_ = state; }
  foak::v1::Job::State state() const { return state_; }

  // Records a logged step. Only rank 0's metrics drive the line.
  void AddMetrics(const foak::v1::StepMetrics& metrics);
  bool has_metrics() const { return has_metrics_; }

  // Time to max_steps at the recent rate; nullopt while unknown.
  std::optional<absl::Duration> Eta() const;

  // The line for the latest metrics (no newline).
  std::string Text() const;

 private:
  foak::v1::Job::State state_ = foak::v1::Job::RUNNING;
  foak::v1::StepMetrics last_;
  bool has_metrics_ = false;
  std::deque<std::pair<double, int64_t>> window_;  // (elapsed_s, step)
};

}  // namespace foak::client

#endif  // FOAK_CLIENT_PROGRESS_LINE_H_

#include "client/progress_line.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "client/format.h"

namespace foak::client {

void ProgressLine::AddMetrics(const foak::v1::StepMetrics& metrics) {
  if (metrics.rank() != 0) return;
  if (!window_.empty() && metrics.elapsed_s() < window_.back().first) window_.clear();
  window_.emplace_back(metrics.elapsed_s(), metrics.step());
  while (window_.size() > kWindow) window_.pop_front();
  last_ = metrics;
  has_metrics_ = true;
}

std::optional<absl::Duration> ProgressLine::Eta() const {
  if (!has_metrics_ || last_.max_steps() <= 0 || window_.empty()) return std::nullopt;
  const int64_t remaining = last_.max_steps() - last_.step();
  if (remaining <= 0) return absl::ZeroDuration();
  double steps = 0;
  double seconds = 0;
  if (window_.size() >= 2) {
    steps = static_cast<double>(window_.back().second - window_.front().second);
    seconds = window_.back().first - window_.front().first;
  } else {
    // One sample: the average since the start of this run.
    steps = static_cast<double>(window_.back().second);
    seconds = window_.back().first;
  }
  if (steps <= 0 || seconds <= 0 || !std::isfinite(seconds)) return std::nullopt;
  return absl::Seconds(static_cast<double>(remaining) * seconds / steps);
}

std::string ProgressLine::Text() const {
  std::string line = StateName(state_);
  absl::StrAppend(&line, "  step ", last_.step());
  if (last_.max_steps() > 0) absl::StrAppend(&line, "/", last_.max_steps());
  absl::StrAppend(&line, "  loss ", FormatLoss(last_.loss()));
  if (last_.tokens_per_second() > 0) {
    absl::StrAppend(&line, "  ", FormatThousands(std::llround(last_.tokens_per_second())), " tok/s");
  }
  if (last_.peak_memory_bytes() > 0) {
    absl::StrAppend(&line, "  mem ", FormatBytes(last_.peak_memory_bytes()));
  }
  // No "ETA 0s" on the last step: the job is finishing, not waiting.
  if (std::optional<absl::Duration> eta = Eta(); eta.has_value() && *eta > absl::ZeroDuration()) {
    absl::StrAppend(&line, "  ETA ", FormatEta(*eta));
  }
  return line;
}

}  // namespace foak::client

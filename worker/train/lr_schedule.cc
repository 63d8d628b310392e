#include "worker/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace foak {

absl::StatusOr<LrSchedulerType> LrSchedulerTypeFromName(std::string_view name) {
  if (name == "cosine") return LrSchedulerType::kCosine;
  if (name == "linear") return LrSchedulerType::kLinear;
  if (name == "constant") return LrSchedulerType::kConstant;
  return absl::InvalidArgumentError(
      absl::StrCat("'", std::string(name), "'; expected one of cosine, linear, constant"));
}

std::string LrSchedulerTypeName(LrSchedulerType type) {
  switch (type) {
    case LrSchedulerType::kCosine:
      return "cosine";
    case LrSchedulerType::kLinear:
      return "linear";
    case LrSchedulerType::kConstant:
      return "constant";
  }
  return "?";
}

double LrSchedule::Factor(int64_t step) const {
  const double s = static_cast<double>(step);
  const int64_t warmup = options_.warmup_steps;
  if (step < warmup) return s / static_cast<double>(std::max<int64_t>(1, warmup));
  const double m = options_.min_lr_ratio;
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, options_.max_steps - warmup));
  switch (options_.type) {
    case LrSchedulerType::kConstant:
      return 1.0;
    case LrSchedulerType::kCosine: {
      const double progress = static_cast<double>(step - warmup) / decay_steps;
      // transformers: cos(pi * num_cycles * 2 * progress) with num_cycles = 0.5.
      double f = 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress));
      f = f * (1.0 - m) + m;
      return std::max(0.0, f);
    }
    case LrSchedulerType::kLinear: {
      const double f =
          std::max(0.0, static_cast<double>(options_.max_steps - step) / decay_steps);
      return f * (1.0 - m) + m;
    }
  }
  return 1.0;
}

}  // namespace foak

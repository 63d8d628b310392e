// Learning-rate schedules, exactly as transformers' LambdaLR lambdas
// (get_cosine_schedule_with_warmup, get_cosine_with_min_lr_schedule_with_warmup,
// get_linear_schedule_with_warmup, get_constant_schedule_with_warmup), so a
// job reproduces a Hugging Face Trainer run step for step.
//
// Indexing follows the Trainer: optimizer step s (0-based) uses
// base_lr * Factor(s) and the scheduler advances after it. So with warm-up the
// very first update has learning rate 0, as in transformers.
//   warm-up (s < W):  s / max(1, W)
//   cosine:           p = (s - W) / max(1, S - W);
//                     f = 0.5 (1 + cos(pi p)); f = f (1 - m) + m;  max(0, f)
//   linear:           max(0, (S - s) / max(1, S - W)), then f (1 - m) + m
//                     (m = min_lr_ratio; transformers' linear has no floor, m = 0 matches it)
//   constant:         1 after warm-up (m unused)
// where S = max_steps. No torch here.
#ifndef FOAK_WORKER_TRAIN_LR_SCHEDULE_H_
#define FOAK_WORKER_TRAIN_LR_SCHEDULE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace foak {

enum class LrSchedulerType { kCosine, kLinear, kConstant };

// "cosine" | "linear" | "constant"; INVALID_ARGUMENT listing them otherwise.
absl::StatusOr<LrSchedulerType> LrSchedulerTypeFromName(std::string_view name);
std::string LrSchedulerTypeName(LrSchedulerType type);

struct LrScheduleOptions {
  LrSchedulerType type = LrSchedulerType::kCosine;
  double base_lr = 2e-5;
  int64_t warmup_steps = 0;
  int64_t max_steps = 1;
  double min_lr_ratio = 0.0;  // cosine and linear decay to base_lr * min_lr_ratio
};

class LrSchedule {
 public:
  explicit LrSchedule(const LrScheduleOptions& options) : options_(options) {}
  // Multiplier of base_lr for 0-based optimizer step `step`.
  double Factor(int64_t step) const;
  double LearningRate(int64_t step) const { return options_.base_lr * Factor(step); }
  const LrScheduleOptions& options() const { return options_; }

 private:
  LrScheduleOptions options_;
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_LR_SCHEDULE_H_

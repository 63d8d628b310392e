// A training step whose loss or gradient norm is NaN or infinite.
//
// By default such a step ends the job before the optimizer touches the
// weights (so the newest checkpoint and the weights in memory are the last
// good ones), and the error names the step. The status carries a payload so
// that foak-worker's main() can exit with its own code (3), which foakd
// reads as reason "NonFinite" and does not retry: the same data from the
// same checkpoint would give the same NaN again.
#ifndef FOAK_WORKER_TRAIN_NONFINITE_H_
#define FOAK_WORKER_TRAIN_NONFINITE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace foak {

inline constexpr char kNonFinitePayloadUrl[] = "type.foak.dev/NonFiniteStep";

// A FailedPrecondition status with `message`, marked as a non-finite step.
inline absl::Status NonFiniteStepError(absl::string_view message) {
  absl::Status status = absl::FailedPreconditionError(message);
  status.SetPayload(kNonFinitePayloadUrl, absl::Cord("1"));
  return status;
}

inline bool IsNonFiniteStepError(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kNonFinitePayloadUrl).has_value();
}

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_NONFINITE_H_

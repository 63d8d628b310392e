// Precision: how parameters, gradients and optimizer state are stored.
//   kFp32       parameters, gradients, moments: fp32.
//   kBf16Mixed  (default) the model computes with bf16 parameters; the
//               optimizer keeps fp32 master weights and fp32 moments, upcasts
//               the bf16 gradients, updates the masters and copies them back
//               into the bf16 parameters. Checkpoints write the fp32 masters,
//               as Hugging Face's Trainer saves fp32 weights after bf16 training.
//   kBf16       pure bf16: parameters, gradients and moments in bf16, the
//               update computed in bf16 (as published kernel benchmarks run);
//               cheapest, least accurate.
#ifndef FOAK_WORKER_TRAIN_PRECISION_H_
#define FOAK_WORKER_TRAIN_PRECISION_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace foak {

enum class Precision { kFp32, kBf16Mixed, kBf16 };

inline absl::StatusOr<Precision> PrecisionFromName(std::string_view name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16-mixed") return Precision::kBf16Mixed;
  if (name == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("'", std::string(name), "'; expected one of bf16-mixed, bf16, fp32"));
}

inline std::string PrecisionName(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kBf16Mixed:
      return "bf16-mixed";
    case Precision::kBf16:
      return "bf16";
  }
  return "?";
}

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_PRECISION_H_

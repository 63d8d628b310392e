// The names a job's `kernels` field takes and the set of fused ops they turn
// on. Torch-free, so the job parser and the coordinator validate names without
// LibTorch. The model reads a KernelSet when it is built and calls the chosen
// ops (kernels/<op>/<op>_op.h); an empty set means plain LibTorch.
//
//   rms_norm, rope, swiglu, cross_entropy, fused_linear_cross_entropy,
//   fused_lora (LoRA and QLoRA jobs only: base and adapter in one op; a full
//   fine-tuning job has no adapter, so the flag changes nothing there)
//   foak = rms_norm + rope + swiglu + cross_entropy
//   all  = every op
// When both cross_entropy and fused_linear_cross_entropy are on, the fused
// linear one computes the loss (the logits are never materialised).
#ifndef FOAK_KERNELS_REGISTRY_H_
#define FOAK_KERNELS_REGISTRY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

struct KernelSet {
  bool rms_norm = false;
  bool rope = false;
  bool swiglu = false;
  bool cross_entropy = false;
  bool fused_linear_cross_entropy = false;
  bool fused_lora = false;

  bool empty() const {
    return !rms_norm && !rope && !swiglu && !cross_entropy && !fused_linear_cross_entropy &&
           !fused_lora;
  }
  // Canonical op names, in registry order ("[]" when empty).
  std::vector<std::string> Names() const;
  bool operator==(const KernelSet& o) const { return Names() == o.Names(); }
};

struct KernelInfo {
  const char* name;
  const char* summary;
  bool KernelSet::*flag;
};

// Every op in registry order.
const std::vector<KernelInfo>& RegisteredKernels();

// Names (ops, "foak" or "all", repeats allowed) -> set. An unknown name is an
// InvalidArgument error that lists the valid ones.
absl::StatusOr<KernelSet> ParseKernelSet(const std::vector<std::string>& names);

// "rms_norm, rope, ..." or "none".
std::string KernelSetString(const KernelSet& set);

// A short label for tables: "none", "foak", "all", "foak+" and the other ops
// ("foak+fused_linear_cross_entropy"), or the op names joined by '+'
// ("rms_norm+rope").
std::string KernelSetLabel(const KernelSet& set);

}  // namespace foak

#endif  // FOAK_KERNELS_REGISTRY_H_

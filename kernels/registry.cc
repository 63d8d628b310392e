#include "kernels/registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace foak {

const std::vector<KernelInfo>& RegisteredKernels() {
  static const std::vector<KernelInfo> kKernels = {
      {"rms_norm", "RMSNorm forward and backward with the weight gradient", &KernelSet::rms_norm},
      {"rope", "rotary embedding of q and k in place, by position id", &KernelSet::rope},
      {"swiglu", "silu(gate) * up; backward recomputes the activation", &KernelSet::swiglu},
      {"cross_entropy", "loss and gradient over the logits, gradient in place",
       &KernelSet::cross_entropy},
      {"fused_linear_cross_entropy", "lm_head matmul and loss without materialising the logits",
       &KernelSet::fused_linear_cross_entropy},
      {"fused_lora", "LoRA projections and the LoRA MLP as one op each (LoRA and QLoRA jobs)",
       &KernelSet::fused_lora},
  };
  return kKernels;
}

std::vector<std::string> KernelSet::Names() const {
  std::vector<std::string> names;
  for (const KernelInfo& k : RegisteredKernels()) {
    if (this->*k.flag) names.push_back(k.name);
  }
  return names;
}

absl::StatusOr<KernelSet> ParseKernelSet(const std::vector<std::string>& names) {
  KernelSet set;
  for (const std::string& name : names) {
    if (name == "all") {
      for (const KernelInfo& k : RegisteredKernels()) set.*k.flag = true;
      continue;
    }
    if (name == "foak") {
      set.rms_norm = set.rope = set.swiglu = set.cross_entropy = true;
      continue;
    }
    bool found = false;
    for (const KernelInfo& k : RegisteredKernels()) {
      if (name == k.name) {
        set.*k.flag = true;
        found = true;
      }
    }
    if (!found) {
      std::vector<std::string> valid;
      for (const KernelInfo& k : RegisteredKernels()) valid.push_back(k.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown kernel '", name, "'; valid names are ", absl::StrJoin(valid, ", "),
          ", or 'foak' (rms_norm, rope, swiglu, cross_entropy) or 'all'"));
    }
  }
  return set;
}

std::string KernelSetLabel(const KernelSet& set) {
  if (set.empty()) return "none";
  KernelSet foak;
  foak.rms_norm = foak.rope = foak.swiglu = foak.cross_entropy = true;
  if (set == foak) return "foak";
  KernelSet all = foak;
  all.fused_linear_cross_entropy = true;
  all.fused_lora = true;
  if (set == all) return "all";
  if (set.rms_norm && set.rope && set.swiglu && set.cross_entropy) {
    // "foak" and the rest: "foak+fused_linear_cross_entropy".
    std::vector<std::string> names = {"foak"};
    for (const std::string& name : set.Names()) {
      if (name != "rms_norm" && name != "rope" && name != "swiglu" && name != "cross_entropy") {
        names.push_back(name);
      }
    }
    return absl::StrJoin(names, "+");
  }
  return absl::StrJoin(set.Names(), "+");
}

std::string KernelSetString(const KernelSet& set) {
  return set.empty() ? "none" : absl::StrJoin(set.Names(), ", ");
}

}  // namespace foak

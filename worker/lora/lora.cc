// Applying, merging and removing LoRA on a whole model (see lora.h).
#include "worker/lora/lora.h"

#include <torch/utils.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/lora/lora_fusion.h"
#include "worker/lora/lora_layer.h"

namespace foak {
namespace {

// The last component of a dotted module name.
std::string LastComponent(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

}  // namespace

std::vector<NamedLinear> FindTargetLinears(LlamaForCausalLM& model,
                                           const std::vector<std::string>& targets) {
  std::vector<NamedLinear> found;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (linear == nullptr || item.key() == "lm_head") continue;
    const std::string leaf = LastComponent(item.key());
    if (std::find(targets.begin(), targets.end(), leaf) != targets.end()) {
      found.push_back(NamedLinear{item.key(), Linear(linear)});
    }
  }
  return found;
}

absl::StatusOr<std::vector<torch::Tensor>> ApplyLora(LlamaForCausalLM& model,
                                                     const LoraConfig& config) {
  ASSIGN_OR_RETURN(std::vector<std::string> targets, ResolveLoraTargets(config));
  if (const int64_t n = CountLoraAdapters(model); n > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ApplyLora: the model already has ", n,
        " LoRA adapters; MergeLora or RemoveLora them before applying another"));
  }
  std::vector<NamedLinear> linears = FindTargetLinears(model, targets);
  if (linears.empty()) {
    return absl::InvalidArgumentError("ApplyLora: the model has no layer named by target_modules");
  }
  for (torch::Tensor& p : model->parameters(/*recurse=*/true)) p.requires_grad_(false);
  std::vector<torch::Tensor> trainable;
  try {
    for (NamedLinear& target : linears) {
      AttachLoraAdapter(*target.linear, config.r, config.Scale(), config.dropout);
      const LoraAdapter* adapter = FindLoraAdapter(*target.linear);
      trainable.push_back(adapter->lora_A->weight);
      trainable.push_back(adapter->lora_B->weight);
    }
  } catch (const c10::Error& e) {
    RemoveLora(model);
    return absl::InternalError(absl::StrCat("ApplyLora: creating the adapters failed: ",
                                            e.what_without_backtrace()));
  }
  if (model->kernels().fused_lora) FuseLora(model);
  return trainable;
}

std::vector<std::pair<std::string, torch::Tensor>> LoraNamedParameters(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    if (item.key().find(".lora_A.") != std::string::npos ||
        item.key().find(".lora_B.") != std::string::npos) {
      params.emplace_back(item.key(), item.value());
    }
  }
  return params;
}

int64_t CountLoraAdapters(LlamaForCausalLM& model) {
  int64_t n = 0;
  for (const NamedLinear& l : FindTargetLinears(model, LoraTargetModuleNames())) {
    if (FindLoraAdapter(*l.linear) != nullptr) ++n;
  }
  return n;
}

absl::Status MergeLora(LlamaForCausalLM& model) {
  if (CountLoraAdapters(model) == 0) {
    return absl::FailedPreconditionError("MergeLora: the model has no LoRA adapters to merge");
  }
  // Checked for every layer first, so a refusal leaves the model unchanged.
  for (NamedLinear& l : FindTargetLinears(model, LoraTargetModuleNames())) {
    if (FindLoraAdapter(*l.linear) != nullptr && l.linear->weight_released()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "MergeLora: ", l.name, " holds its frozen weight in another form (a quantised base, "
          "method qlora), which B @ A cannot be folded into; make the base dense first "
          "(DequantizeDecoderLinears, worker/quant/nf4_linears.h), as PEFT dequantises a 4-bit "
          "base to merge"));
    }
  }
  UnfuseLora(model);
  try {
    for (NamedLinear& l : FindTargetLinears(model, LoraTargetModuleNames())) {
      DetachLoraAdapter(*l.linear, /*merge=*/true);
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("MergeLora: folding B @ A into the weights failed: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

void RemoveLora(LlamaForCausalLM& model) {
  UnfuseLora(model);
  for (NamedLinear& l : FindTargetLinears(model, LoraTargetModuleNames())) {
    DetachLoraAdapter(*l.linear, /*merge=*/false);
  }
}

}  // namespace foak

// LoRA settings and their on-disk form, PEFT's adapter_config.json. No torch:
// the job parser and the coordinator can validate LoRA settings with it.
//
// foak supports the subset of PEFT's LoRA that plain LoRA fine-tuning of the
// Llama family uses: one adapter of rank r on any of the seven projections of
// each decoder layer, scale alpha/r (or alpha/sqrt(r) with rsLoRA), dropout on
// the adapter's input. lm_head is never a target, as in PEFT's "all-linear".
// Parsing a PEFT config that asks for more (DoRA, trained biases, per-layer
// ranks, regex targets, modules_to_save, ...) is an error that names the key,
// not a silent approximation.
#ifndef FOAK_WORKER_LORA_LORA_CONFIG_H_
#define FOAK_WORKER_LORA_LORA_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace foak {

// The projections LoRA can target, in decoder order. "all-linear" means all of
// them (never lm_head: PEFT's all-linear also leaves the output layer alone).
const std::vector<std::string>& LoraTargetModuleNames();
inline constexpr char kLoraAllLinear[] = "all-linear";

struct LoraConfig {
  int64_t r = 8;         // rank, >= 1
  double alpha = 8.0;    // lora_alpha (PEFT's default 8)
  double dropout = 0.0;  // lora_dropout in [0, 1), on the adapter input only
  // Names from LoraTargetModuleNames(), or the single entry "all-linear".
  std::vector<std::string> target_modules = {kLoraAllLinear};
  bool use_rslora = false;  // scale alpha/sqrt(r) instead of alpha/r

  // alpha / r, or alpha / sqrt(r) with use_rslora.
  double Scale() const;
};

// INVALID_ARGUMENT naming the field and the accepted values: r < 1, alpha <= 0
// or not finite, dropout outside [0, 1), empty target_modules, an unknown or
// duplicated module name (the message lists the valid names; lm_head gets its
// own explanation), or "all-linear" mixed with other names.
absl::Status ValidateLoraConfig(const LoraConfig& config);

// The targeted projections in decoder order, "all-linear" expanded. Validates.
absl::StatusOr<std::vector<std::string>> ResolveLoraTargets(const LoraConfig& config);

// adapter_config.json as PEFT 0.21 writes it for this config (every key of
// its LoraConfig, the unsupported features at their off values), with
// target_modules expanded. Validates.
absl::StatusOr<std::string> LoraAdapterConfigJson(const LoraConfig& config,
                                                  const std::string& base_model_name_or_path);

// Parses adapter_config.json (written by PEFT or foak). `source` names the
// file in errors. Accepts target_modules as a list or "all-linear"; rejects a
// peft_type other than LORA and every enabled feature foak does not implement.
absl::StatusOr<LoraConfig> ParseLoraAdapterConfig(const std::string& json,
                                                  const std::string& source);

}  // namespace foak

#endif  // FOAK_WORKER_LORA_LORA_CONFIG_H_

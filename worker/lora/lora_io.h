// LoRA adapters on disk in PEFT's format, so PEFT (PeftModel.from_pretrained)
// loads what foak trains and foak loads what PEFT trains:
//
//   DIR/adapter_config.json        LoraConfig (see lora_config.h)
//   DIR/adapter_model.safetensors  base_model.model.<foak parameter name>, e.g.
//                                  base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
//
// Saving writes both files into a temp folder beside DIR and renames it into
// place (an existing DIR is swapped out and removed), so DIR never holds half
// an adapter. Loading checks everything before touching the model: the
// config, then every expected tensor's presence and shape, then no tensor in
// the file is left unused; only then are adapters attached and filled.
#ifndef FOAK_WORKER_LORA_LORA_IO_H_
#define FOAK_WORKER_LORA_LORA_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/lora/lora_config.h"
#include "worker/model/llama.h"

namespace foak {

inline constexpr char kLoraAdapterConfigFile[] = "adapter_config.json";
inline constexpr char kLoraAdapterWeightsFile[] = "adapter_model.safetensors";
inline constexpr char kPeftNamePrefix[] = "base_model.model.";

// Writes the model's LoRA weights (in their dtype, fp32 as trained) and
// `config`. INVALID_ARGUMENT when the attached adapters disagree with
// `config` (a target without adapter, an adapter on a module not targeted, a
// different rank); FAILED_PRECONDITION when no adapter is attached.
absl::Status SaveLoraAdapter(LlamaForCausalLM& model, const LoraConfig& config,
                             const std::string& adapter_dir,
                             const std::string& base_model_name_or_path);

// Reads adapter_dir's config and weights, attaches adapters to `model`
// (freezing the base, as ApplyLora) and loads them, converting dtype. Errors
// name the file and tensor: NOT_FOUND for a missing file or tensor,
// INVALID_ARGUMENT for a wrong shape (with the rank and shape expected from
// adapter_config.json and the model), an unexpected tensor or an unsupported
// config; FAILED_PRECONDITION when the model already has adapters. On error
// the model is unchanged. Returns the adapter's config.
absl::StatusOr<LoraConfig> LoadLoraAdapter(LlamaForCausalLM& model, const std::string& adapter_dir);

}  // namespace foak

#endif  // FOAK_WORKER_LORA_LORA_IO_H_

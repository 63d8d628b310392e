// The model as `forward` and `generate` run it: built uninitialised directly
// on the target device and dtype (no random init to throw away, no fp32 copy
// on the CPU first), the folder's weights loaded, optionally a PEFT-format
// LoRA adapter attached (kept unmerged: the base weights stay as saved, the
// adapter adds scale * B @ A x in fp32 as in training), eval mode.
#ifndef FOAK_WORKER_CLI_INFERENCE_MODEL_H_
#define FOAK_WORKER_CLI_INFERENCE_MODEL_H_

#include <torch/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"

namespace foak {

struct InferenceModelOptions {
  std::string model_dir;
  std::string adapter_dir;        // "" = none
  std::string dtype = "float32";  // "float32" | "bfloat16"
  torch::Device device = torch::kCPU;
};

// `config` is model_dir's config.json (callers need it earlier for checks).
// Errors name the folder and what is wrong (weights.h, lora_io.h).
absl::StatusOr<LlamaForCausalLM> LoadInferenceModel(const ModelConfig& config,
                                                    const InferenceModelOptions& options);

}  // namespace foak

#endif  // FOAK_WORKER_CLI_INFERENCE_MODEL_H_

// LoRA on a LlamaForCausalLM, applied from outside the model (the model code
// knows nothing of LoRA; see lora_layer.h for one layer's numerics).
//
// ApplyLora freezes the whole base model (every parameter, embeddings, norms,
// lm_head and biases included: none of them ever receives a gradient) and
// attaches an adapter to each targeted projection of every decoder layer. The
// trainable parameters are then exactly the lora_A / lora_B weights, named
// "model.layers.N.<self_attn|mlp>.<proj>.lora_{A,B}.weight".
//
// Order of use: build the model, LoadWeights (the base checkpoint has no LoRA
// tensors), then ApplyLora or LoadLoraAdapter (lora_io.h). SaveModel on a
// model with adapters attached would write the LoRA tensors into the
// checkpoint; call MergeLora first to save a plain merged model.
#ifndef FOAK_WORKER_LORA_LORA_H_
#define FOAK_WORKER_LORA_LORA_H_

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/lora/lora_config.h"
#include "worker/model/llama.h"

namespace foak {

// A targeted projection of the model: "model.layers.3.mlp.down_proj" and it.
struct NamedLinear {
  std::string name;
  Linear linear;
};

// The model's projections whose last name component is in `targets` (names
// from LoraTargetModuleNames()), in named_modules() order. lm_head is never
// included.
std::vector<NamedLinear> FindTargetLinears(LlamaForCausalLM& model,
                                           const std::vector<std::string>& targets);

// Validates `config`, freezes every base parameter and attaches adapters.
// Returns the trainable parameters (lora_A, lora_B of each target, in model
// order). FAILED_PRECONDITION when the model already has LoRA adapters.
absl::StatusOr<std::vector<torch::Tensor>> ApplyLora(LlamaForCausalLM& model,
                                                     const LoraConfig& config);

// The LoRA parameters with their full names, in named_parameters() order.
std::vector<std::pair<std::string, torch::Tensor>> LoraNamedParameters(LlamaForCausalLM& model);

// Number of Linears that carry a LoRA adapter.
int64_t CountLoraAdapters(LlamaForCausalLM& model);

// Folds scale * B @ A into each adapted weight and removes the adapters, so
// SaveModel writes a plain Hugging Face checkpoint. The base parameters stay
// frozen (requires_grad false). FAILED_PRECONDITION when no adapter is
// attached, or when an adapted layer's weight was released for another form
// (a quantised base: make it dense first, worker/quant/nf4_linears.h); the
// model is then unchanged.
absl::Status MergeLora(LlamaForCausalLM& model);

// Removes the adapters without merging (the base model is as it was loaded,
// still frozen). No-op without adapters.
void RemoveLora(LlamaForCausalLM& model);

}  // namespace foak

#endif  // FOAK_WORKER_LORA_LORA_H_

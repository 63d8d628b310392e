// The LoRA adapter of one foak::Linear, installed from outside through the
// Linear's generic `adapter` hook (the model knows nothing of LoRA):
//
//   y = x W^T + b + scale * B (A dropout(x))        A: (r, in), B: (out, r)
//
// A and B are registered as submodules "lora_A" and "lora_B" of the Linear,
// each holding one parameter "weight", so named_parameters() yields
// "model.layers.0.self_attn.q_proj.lora_A.weight": PEFT's names after its
// "base_model.model." prefix (and without its adapter name "default").
//
// Numerics follow PEFT 0.21: A starts as kaiming_uniform(a=sqrt(5)) (uniform
// in +-1/sqrt(in)), B as zeros, so a fresh adapter leaves the model unchanged.
// A and B are fp32 when the base weight is bf16/fp16 (PEFT's default
// autocast_adapter_dtype=True; tests/testdata/peft/*/reference.json records
// it), else the base weight's dtype; they live on the base weight's device. A
// base whose weight was released for another form (NF4, worker/quant/) keeps
// a zero-element placeholder with the original dtype and device, so QLoRA
// adapters follow the same rule (fp32 over a bf16 base, as PEFT's adapters
// over a 4-bit base).
// The input is cast to A's dtype, the low-rank product is added to the base
// output (promoting to fp32 for a bf16 base) and the sum cast back to the base
// output's dtype, as PEFT's lora.Linear.forward does. Dropout applies to the
// adapter's input only, and only in training mode (the Linear's train()/eval()
// reaches lora_A, whose flag the adapter reads).
#ifndef FOAK_WORKER_LORA_LORA_LAYER_H_
#define FOAK_WORKER_LORA_LORA_LAYER_H_

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "worker/model/llama.h"

namespace foak {

// One low-rank factor: a module with the single parameter "weight".
class LoraWeightImpl : public torch::nn::Module {
 public:
  explicit LoraWeightImpl(torch::Tensor w) { weight = register_parameter("weight", std::move(w)); }
  torch::Tensor weight;
};
TORCH_MODULE(LoraWeight);

// What LinearImpl::adapter holds for a LoRA layer (callable as the hook).
struct LoraAdapter {
  LoraWeight lora_A{nullptr};  // weight (r, in)
  LoraWeight lora_B{nullptr};  // weight (out, r)
  double scale = 1.0;
  double dropout = 0.0;
  // x (..., in), base_out (..., out) -> (..., out) in base_out's dtype.
  torch::Tensor operator()(const torch::Tensor& x, const torch::Tensor& base_out) const;
};

// The dtype LoRA factors get for a base weight of dtype `base` (see above).
torch::Dtype LoraParamDtype(torch::Dtype base);

// Registers lora_A (PEFT's init) and lora_B (zeros) on `linear` and installs
// the adapter. The caller checks that `linear` has no adapter yet.
void AttachLoraAdapter(LinearImpl& linear, int64_t r, double scale, double dropout);

// The LoRA adapter installed on `linear`, or nullptr (none, or another kind).
const LoraAdapter* FindLoraAdapter(const LinearImpl& linear);

// Removes lora_A / lora_B and the hook, leaving `linear` a plain layer; with
// `merge`, first folds scale * B @ A into its weight (computed in fp32, added
// in the weight's dtype); merging into a released weight (a base held in
// another form, LinearImpl::ReleaseWeight) throws c10::Error and changes
// nothing. No-op when no LoRA adapter is installed.
void DetachLoraAdapter(LinearImpl& linear, bool merge);

}  // namespace foak

#endif  // FOAK_WORKER_LORA_LORA_LAYER_H_

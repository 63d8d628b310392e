// The fused_lora kernel choice (kernels/fused_lora/) applied to a model's LoRA
// adapters from outside the model: each adapted projection computes base and
// adapter in one autograd node (LinearImpl::fused), and an MLP whose gate, up
// and down all carry adapters runs as one node (MlpImpl::runner). The base is
// read at call time: the dense weight, or an NF4 base (worker/quant/)
// dequantised for the one GEMM that needs it, so fusing works for LoRA and
// QLoRA alike and survives DequantizeDecoderLinears.
//
// Layers whose adapter has lora_dropout > 0 keep the composite path (the
// fused op has no dropout); FuseLora reports how many it fused.
#ifndef FOAK_WORKER_LORA_LORA_FUSION_H_
#define FOAK_WORKER_LORA_LORA_FUSION_H_

#include <cstdint>

#include "worker/model/llama.h"

namespace foak {

struct LoraFusionStats {
  int64_t projections = 0;  // adapted projections computed by FusedLoraLinear
  int64_t mlps = 0;         // MLPs computed by FusedLoraMlp
};

// Installs the fused ops on every adapted projection and MLP of `model`.
// Idempotent. Called by ApplyLora when the model was built with
// kernels.fused_lora.
LoraFusionStats FuseLora(LlamaForCausalLM& model);

// Removes what FuseLora installed (the adapters stay).
void UnfuseLora(LlamaForCausalLM& model);

}  // namespace foak

#endif  // FOAK_WORKER_LORA_LORA_FUSION_H_

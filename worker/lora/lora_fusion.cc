// Installing the fused_lora ops on a model's adapters (see lora_fusion.h).
#include "worker/lora/lora_fusion.h"

#include <torch/nn/module.h>

#include <memory>

#include "kernels/fused_lora/fused_lora_op.h"
#include "kernels/nf4/nf4_op.h"
#include "worker/lora/lora_layer.h"
#include "worker/quant/nf4_linears.h"

namespace foak {
namespace {

// A LoRA adapter the fused op can compute: attached, without dropout.
const LoraAdapter* FusableAdapter(const LinearImpl& linear) {
  const LoraAdapter* adapter = FindLoraAdapter(linear);
  return adapter != nullptr && adapter->dropout == 0.0 ? adapter : nullptr;
}

// The op's view of one adapted projection. `linear` owns (through its hooks)
// every closure made here, so the raw pointer outlives them.
ops::LoraProjection Projection(LinearImpl* linear) {
  const LoraAdapter* adapter = FindLoraAdapter(*linear);
  TORCH_CHECK(adapter != nullptr,
              "fused LoRA: a projection lost its adapter while fused; call UnfuseLora (or "
              "RemoveLora / MergeLora) rather than detaching one layer");
  ops::LoraProjection p;
  p.base_weight = [linear](at::ScalarType dtype) -> at::Tensor {
    if (const ops::Nf4Weight* nf4 = FindNf4Weight(*linear)) return ops::Nf4Dequantize(*nf4, dtype);
    return linear->weight.scalar_type() == dtype ? linear->weight : linear->weight.to(dtype);
  };
  p.bias = linear->bias;
  p.lora_a = adapter->lora_A->weight;
  p.lora_b = adapter->lora_B->weight;
  p.scale = adapter->scale;
  return p;
}

}  // namespace

LoraFusionStats FuseLora(LlamaForCausalLM& model) {
  LoraFusionStats stats;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    if (auto mlp = std::dynamic_pointer_cast<MlpImpl>(item.value())) {
      mlp->runner = nullptr;
      if (FusableAdapter(*mlp->gate_proj) && FusableAdapter(*mlp->up_proj) &&
          FusableAdapter(*mlp->down_proj)) {
        mlp->runner = [](MlpImpl& m, const torch::Tensor& x) {
          return ops::FusedLoraMlp(x, Projection(m.gate_proj.get()), Projection(m.up_proj.get()),
                                   Projection(m.down_proj.get()));
        };
        ++stats.mlps;
      }
      continue;
    }
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (linear == nullptr) continue;
    linear->fused = nullptr;
    if (FusableAdapter(*linear) == nullptr) continue;
    LinearImpl* raw = linear.get();
    linear->fused = [raw](const torch::Tensor& x) {
      return ops::FusedLoraLinear(x, Projection(raw));
    };
    ++stats.projections;
  }
  return stats;
}

void UnfuseLora(LlamaForCausalLM& model) {
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    if (auto mlp = std::dynamic_pointer_cast<MlpImpl>(item.value())) mlp->runner = nullptr;
    if (auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value())) linear->fused = nullptr;
  }
}

}  // namespace foak

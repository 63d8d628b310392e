// LoRA on one Linear (see lora_layer.h for the numerics).
#include "worker/lora/lora_layer.h"

#include <torch/nn/functional/dropout.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>

namespace foak {

namespace F = torch::nn::functional;

torch::Tensor LoraAdapter::operator()(const torch::Tensor& x, const torch::Tensor& base_out) const {
  torch::Tensor h = x.to(lora_A->weight.scalar_type());  // (..., in)
  if (dropout > 0.0 && lora_A->is_training()) {
    h = F::dropout(h, F::DropoutFuncOptions().p(dropout).training(true));
  }
  torch::Tensor delta = F::linear(F::linear(h, lora_A->weight), lora_B->weight);  // (..., out)
  return (base_out + delta * scale).to(base_out.scalar_type());
}

torch::Dtype LoraParamDtype(torch::Dtype base) {
  return (base == torch::kBFloat16 || base == torch::kFloat16) ? torch::kFloat32 : base;
}

void AttachLoraAdapter(LinearImpl& linear, int64_t r, double scale, double dropout) {
  // The weight's dtype and device; its shape from the layer, since a base held
  // in another form (worker/quant/) leaves only a zero-element placeholder.
  const torch::Tensor& w = linear.weight;
  const auto options = w.options().dtype(LoraParamDtype(w.scalar_type())).requires_grad(false);
  torch::Tensor a = torch::empty({r, linear.in_features()}, options);
  {
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(a, /*a=*/std::sqrt(5.0));
  }
  torch::Tensor b = torch::zeros({linear.out_features(), r}, options);
  LoraAdapter adapter;
  adapter.lora_A = linear.register_module("lora_A", LoraWeight(a.requires_grad_(true)));
  adapter.lora_B = linear.register_module("lora_B", LoraWeight(b.requires_grad_(true)));
  adapter.scale = scale;
  adapter.dropout = dropout;
  // Follow the Linear's current mode (a model already in eval() stays so).
  adapter.lora_A->train(linear.is_training());
  adapter.lora_B->train(linear.is_training());
  linear.adapter = adapter;
}

const LoraAdapter* FindLoraAdapter(const LinearImpl& linear) {
  return linear.adapter ? linear.adapter.target<LoraAdapter>() : nullptr;
}

void DetachLoraAdapter(LinearImpl& linear, bool merge) {
  const LoraAdapter* adapter = FindLoraAdapter(linear);
  if (adapter == nullptr) return;
  if (merge) {
    TORCH_CHECK(!linear.weight_released(),
                "DetachLoraAdapter: cannot merge into a weight held in another form "
                "(quantised); make it dense first");
    torch::NoGradGuard no_grad;
    // fp32 at least (fp64 for an fp64 base), rounded once into the weight.
    const torch::Dtype compute = torch::promote_types(linear.weight.scalar_type(), torch::kFloat);
    torch::Tensor delta = torch::matmul(adapter->lora_B->weight.to(compute),
                                        adapter->lora_A->weight.to(compute)) *
                          adapter->scale;  // (out, in)
    linear.weight.add_(delta.to(linear.weight.scalar_type()));
  }
  linear.adapter = nullptr;  // drops the adapter's references to A and B
  linear.fused = nullptr;    // a fused LoRA op (lora_fusion.h) read them too
  linear.unregister_module("lora_A");
  linear.unregister_module("lora_B");
}

}  // namespace foak

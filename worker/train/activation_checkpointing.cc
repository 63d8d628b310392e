#include "worker/train/activation_checkpointing.h"

#include <ATen/Context.h>
#include <torch/autograd.h>

#include <functional>
#include <utility>

namespace foak {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the recomputation needs besides the saved input: the layer call (with
// its rope tables and mask) and the random state it started from.
struct LayerCall : torch::CustomClassHolder {
  std::function<torch::Tensor(const torch::Tensor&)> run;
  torch::Device device = torch::kCPU;
  torch::Tensor cpu_rng_state;
  torch::Tensor device_rng_state;  // undefined on the CPU
};

torch::Tensor RngState(torch::Device device) {
  return at::globalContext().defaultGenerator(device).get_state();
}
void SetRngState(torch::Device device, const torch::Tensor& state) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               c10::intrusive_ptr<LayerCall> call) {
    call->cpu_rng_state = RngState(torch::kCPU);
    if (!x.device().is_cpu()) call->device_rng_state = RngState(x.device());
    call->device = x.device();
    ctx->save_for_backward({x});
    torch::Tensor y = call->run(x);  // grad mode is off here: no graph, no saved intermediates
    ctx->saved_data["call"] = c10::IValue::make_capsule(std::move(call));
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto call = c10::static_intrusive_pointer_cast<LayerCall>(ctx->saved_data["call"].toCapsule());
    torch::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    // Recompute from the forward's random state, then give the caller's back.
    const torch::Tensor cpu_now = RngState(torch::kCPU);
    const torch::Tensor device_now =
        call->device_rng_state.defined() ? RngState(call->device) : torch::Tensor();
    SetRngState(torch::kCPU, call->cpu_rng_state);
    if (device_now.defined()) SetRngState(call->device, call->device_rng_state);
    torch::Tensor y;
    {
      torch::AutoGradMode grad(true);
      y = call->run(x);
    }
    SetRngState(torch::kCPU, cpu_now);
    if (device_now.defined()) SetRngState(call->device, device_now);
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor()};
  }
};

torch::Tensor RunCheckpointed(DecoderLayerImpl& layer, const torch::Tensor& x,
                              const RopeTables& rope, const torch::Tensor& mask) {
  if (!torch::GradMode::is_enabled()) return layer.forward(x, rope, mask);  // eval: nothing to save
  auto call = c10::make_intrusive<LayerCall>();
  call->run = [&layer, rope, mask](const torch::Tensor& in) { return layer.forward(in, rope, mask); };
  // An input that needs no gradient would cut backward off from the layer.
  torch::Tensor input = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return CheckpointedLayer::apply(input, std::move(call));
}

}  // namespace

void SetActivationCheckpointing(LlamaForCausalLM& model, bool enabled) {
  model->model->layer_runner = enabled ? LlamaBackboneImpl::LayerRunner(RunCheckpointed)
                                       : LlamaBackboneImpl::LayerRunner();
}

}  // namespace foak

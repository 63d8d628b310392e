// LibTorch binding of swiglu: shape and dtype checks, the autograd Function,
// and the choice between the CUDA kernel and the CPU reference. Saved for
// backward: gate and up (contiguous; the inputs themselves when they already
// are), nothing else; the composite keeps silu(gate) as well. Backward writes
// fresh dg and du tensors and never the saved inputs or the incoming gradient,
// which autograd may share with other consumers.
#include "kernels/swiglu/swiglu_op.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include <utility>

#include "kernels/common/op_util.h"
#include "kernels/swiglu/swiglu.h"

namespace foak {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

SwiGluParams ParamsFor(const at::Tensor& g) {
  SwiGluParams p;
  p.numel = g.numel();
  p.kind = KindOf(g, "swiglu gate");
  return p;
}

// A fresh contiguous tensor of t's shape, dtype and device.
at::Tensor EmptyLike(const at::Tensor& t) { return at::empty(t.sizes(), t.options()); }

// g (..., I), u (..., I) contiguous -> y (..., I).
at::Tensor Forward(const at::Tensor& g, const at::Tensor& u) {
  const SwiGluParams p = ParamsFor(g);
  if (g.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    at::Tensor y = EmptyLike(g);
    SwiGluForwardCuda(p, g.data_ptr(), u.data_ptr(), y.data_ptr(), CurrentStream(g));
    CheckLaunch("swiglu forward");
    return y;
#else
    CurrentStream(g);  // throws: no CUDA in this build
#endif
  }
  at::Tensor gf = CpuFloat(g), uf = CpuFloat(u);
  at::Tensor y = EmptyLike(gf);
  SwiGluForwardRef(p, gf.data_ptr<float>(), uf.data_ptr<float>(), y.data_ptr<float>());
  return Restore(y, g);
}

// dy (..., I) contiguous -> {dg or undefined, du or undefined}.
std::pair<at::Tensor, at::Tensor> Backward(const at::Tensor& g, const at::Tensor& u,
                                           const at::Tensor& dy, bool gate_grad,
                                           bool up_grad) {
  if (!gate_grad && !up_grad) return {at::Tensor(), at::Tensor()};
  const SwiGluParams p = ParamsFor(g);
  if (g.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    at::Tensor dg = gate_grad ? EmptyLike(g) : at::Tensor();
    at::Tensor du = up_grad ? EmptyLike(u) : at::Tensor();
    SwiGluBackwardCuda(p, g.data_ptr(), u.data_ptr(), dy.data_ptr(),
                       gate_grad ? dg.data_ptr() : nullptr, up_grad ? du.data_ptr() : nullptr,
                       CurrentStream(g));
    CheckLaunch("swiglu backward");
    return {dg, du};
#else
    CurrentStream(g);  // throws: no CUDA in this build
#endif
  }
  at::Tensor gf = CpuFloat(g), uf = CpuFloat(u), dyf = CpuFloat(dy);
  at::Tensor dg = gate_grad ? EmptyLike(gf) : at::Tensor();
  at::Tensor du = up_grad ? EmptyLike(uf) : at::Tensor();
  SwiGluBackwardRef(p, gf.data_ptr<float>(), uf.data_ptr<float>(), dyf.data_ptr<float>(),
                    gate_grad ? dg.data_ptr<float>() : nullptr,
                    up_grad ? du.data_ptr<float>() : nullptr);
  return {gate_grad ? Restore(dg, g) : at::Tensor(), up_grad ? Restore(du, u) : at::Tensor()};
}

class SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    at::Tensor g = gate.contiguous(), u = up.contiguous();
    at::Tensor y = Forward(g, u);
    ctx->save_for_backward({g, u});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = saved[0];
    const at::Tensor& u = saved[1];
    // The incoming gradient may be expanded (sum().backward()) or strided.
    at::Tensor dy = grads[0].to(g.scalar_type()).contiguous();
    TORCH_CHECK(dy.sizes() == g.sizes(), "swiglu backward: gradient has shape ", dy.sizes(),
                " but the output has shape ", g.sizes());
    auto [dg, du] = Backward(g, u, dy, ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {dg, du};
  }
};

}  // namespace

at::Tensor SwiGluForward(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.is_contiguous() && up.is_contiguous() && gate.sizes() == up.sizes(),
              "SwiGluForward: gate and up must be contiguous and of one shape, got ",
              gate.sizes(), " and ", up.sizes());
  c10::DeviceGuard device_guard(gate.device());
  return Forward(gate, up);
}

std::pair<at::Tensor, at::Tensor> SwiGluBackward(const at::Tensor& gate, const at::Tensor& up,
                                                 const at::Tensor& dy) {
  TORCH_CHECK(gate.is_contiguous() && up.is_contiguous() && dy.is_contiguous() &&
                  gate.sizes() == up.sizes() && dy.sizes() == gate.sizes(),
              "SwiGluBackward: gate, up and dy must be contiguous and of one shape, got ",
              gate.sizes(), ", ", up.sizes(), " and ", dy.sizes());
  c10::DeviceGuard device_guard(gate.device());
  return Backward(gate, up, dy, /*gate_grad=*/true, /*up_grad=*/true);
}

at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.defined(), "swiglu gate is undefined");
  TORCH_CHECK(gate.dim() >= 1,
              "swiglu gate must have an intermediate dimension (..., I), got a 0-dim tensor");
  KindOf(gate, "swiglu gate");
  CheckLike(up, gate, "swiglu up");
  TORCH_CHECK(up.sizes() == gate.sizes(), "swiglu up has shape ", up.sizes(),
              " but gate has shape ", gate.sizes(),
              "; pass gate_proj(x) and up_proj(x) of one shape (..., I)");
  c10::DeviceGuard device_guard(gate.device());  // launches go to the tensors' GPU
  return SwiGluFunction::apply(gate, up);
}

}  // namespace ops
}  // namespace foak

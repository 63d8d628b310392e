// LibTorch binding of fused_lora (see fused_lora_op.h for the math and what is
// saved). Both nodes are autograd Functions whose tensor inputs are x and the
// adapters' factors; the frozen bases (a callback that materialises the
// weight, the bias, the scale) ride along as a capsule in saved_data, so
// autograd never sees the base weight and never keeps it for backward.
//
// All GEMMs are at::mm / at::addmm on 2-D views (cuBLAS on CUDA, the CPU BLAS
// otherwise), so the op runs on every device the model does.
#include "kernels/fused_lora/fused_lora_op.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>
#include <ATen/core/ivalue.h>

#include <utility>
#include <vector>

#include "kernels/swiglu/swiglu_op.h"

namespace foak {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The non-tensor part of the projections of one node, kept for backward.
struct Bases : torch::CustomClassHolder {
  std::vector<LoraProjection> projections;
};

c10::IValue Capsule(std::vector<LoraProjection> projections) {
  auto bases = c10::make_intrusive<Bases>();
  bases->projections = std::move(projections);
  return c10::IValue::make_capsule(std::move(bases));
}

const std::vector<LoraProjection>& FromCapsule(AutogradContext* ctx) {
  return static_cast<const Bases*>(ctx->saved_data["bases"].toCapsule().get())->projections;
}

void CheckProjection(const LoraProjection& p, const at::Tensor& x, int64_t in, const char* what) {
  TORCH_CHECK(p.base_weight, "fused_lora ", what, ": no base weight callback");
  TORCH_CHECK(p.lora_a.defined() && p.lora_a.dim() == 2 && p.lora_a.size(1) == in,
              "fused_lora ", what, ": lora_A must be (r, ", in, "), got ",
              p.lora_a.defined() ? p.lora_a.sizes() : at::IntArrayRef{});
  TORCH_CHECK(p.lora_b.defined() && p.lora_b.dim() == 2 && p.lora_b.size(1) == p.lora_a.size(0),
              "fused_lora ", what, ": lora_B must be (out, ", p.lora_a.size(0), "), got ",
              p.lora_b.defined() ? p.lora_b.sizes() : at::IntArrayRef{});
  TORCH_CHECK(p.lora_a.device() == x.device() && p.lora_b.device() == x.device(),
              "fused_lora ", what, ": the adapter is on ", p.lora_a.device(), " but x is on ",
              x.device());
  TORCH_CHECK(!p.bias.defined() || (p.bias.dim() == 1 && p.bias.size(0) == p.lora_b.size(0)),
              "fused_lora ", what, ": bias must be (", p.lora_b.size(0), ")");
}

// The frozen base weight (out, in) in `dtype`, checked against the adapter.
at::Tensor BaseWeight(const LoraProjection& p, at::ScalarType dtype) {
  at::Tensor w = p.base_weight(dtype);
  TORCH_CHECK(w.defined() && w.dim() == 2 && w.size(0) == p.lora_b.size(0) &&
                  w.size(1) == p.lora_a.size(1),
              "fused_lora: the base weight must be (", p.lora_b.size(0), ", ", p.lora_a.size(1),
              "), got ", w.defined() ? w.sizes() : at::IntArrayRef{});
  return w.scalar_type() == dtype ? w : w.to(dtype);
}

// Forward of one projection on x2 (N, in) into y (N, out), which may be a 2-D
// view of the node's output; returns xa (N, r).
at::Tensor ProjectionForward(const LoraProjection& p, const at::Tensor& x2, at::Tensor& y) {
  const at::ScalarType dtype = x2.scalar_type();
  at::Tensor xa = at::mm(x2, p.lora_a.to(dtype).t());  // (N, r)
  {
    at::Tensor w = BaseWeight(p, dtype);
    if (p.bias.defined()) {
      at::addmm_out(y, p.bias.to(dtype), x2, w.t());
    } else {
      at::mm_out(y, x2, w.t());
    }
  }  // the materialised base is dropped here
  y.addmm_(xa, p.lora_b.to(dtype).t(), /*beta=*/1, /*alpha=*/p.scale);
  return xa;
}

// The node's output: allocated in x's leading shape with `out` features, so
// what forward returns is not a view of a tensor made inside it (autograd
// forbids in-place changes to such views, and the rope kernel rotates the
// q and k projections in place).
at::Tensor NewOutput(const at::Tensor& x, int64_t out) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  return at::empty(shape, x.options());
}

// The gradients of one projection from dy (N, out), given its input x2 (N, in)
// and xa = x2 A^T: {dx (N, in) or undefined, dA, dB (each in its parameter's
// dtype, or undefined)}.
struct ProjectionGrads {
  at::Tensor dx, da, db;
};
ProjectionGrads ProjectionBackward(const LoraProjection& p, const at::Tensor& x2,
                                   const at::Tensor& xa, const at::Tensor& dy, bool need_dx,
                                   bool need_da, bool need_db) {
  const at::ScalarType dtype = x2.scalar_type();
  ProjectionGrads g;
  at::Tensor b = p.lora_b.to(dtype);
  at::Tensor dyb;  // (N, r)
  if (need_dx || need_da) dyb = at::mm(dy, b);
  if (need_dx) {
    g.dx = at::mm(dy, BaseWeight(p, dtype));  // the base is dropped right after
    g.dx.addmm_(dyb, p.lora_a.to(dtype), /*beta=*/1, /*alpha=*/p.scale);
  }
  if (need_da) g.da = at::mm(dyb.t(), x2).mul_(p.scale).to(p.lora_a.scalar_type());
  if (need_db) g.db = at::mm(dy.t(), xa).mul_(p.scale).to(p.lora_b.scalar_type());
  return g;
}

// x2 viewed as (N, features); the incoming gradient as the same.
at::Tensor Flat(const at::Tensor& t) { return t.reshape({-1, t.size(-1)}).contiguous(); }


class FusedLoraLinearFunction : public torch::autograd::Function<FusedLoraLinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& lora_a,
                            const at::Tensor& lora_b, const LoraProjection& proj) {
    at::Tensor x2 = Flat(x);
    at::Tensor out = NewOutput(x, proj.lora_b.size(0));
    at::Tensor y = out.view({-1, out.size(-1)});
    at::Tensor xa = ProjectionForward(proj, x2, y);
    ctx->save_for_backward({x2, xa});
    ctx->saved_data["bases"] = Capsule({proj});
    ctx->saved_data["shape"] = x.sizes().vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const LoraProjection& p = FromCapsule(ctx).front();
    at::Tensor dy = Flat(grads[0].to(saved[0].scalar_type()));
    ProjectionGrads g = ProjectionBackward(p, saved[0], saved[1], dy, ctx->needs_input_grad(0),
                                           ctx->needs_input_grad(1), ctx->needs_input_grad(2));
    if (g.dx.defined()) g.dx = g.dx.view(ctx->saved_data["shape"].toIntVector());
    return {g.dx, g.da, g.db, at::Tensor()};
  }
};

class FusedLoraMlpFunction : public torch::autograd::Function<FusedLoraMlpFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gate_a,
                            const at::Tensor& gate_b, const at::Tensor& up_a,
                            const at::Tensor& up_b, const at::Tensor& down_a,
                            const at::Tensor& down_b, const LoraProjection& gate,
                            const LoraProjection& up, const LoraProjection& down) {
    at::Tensor x2 = Flat(x);
    const int64_t inter = gate.lora_b.size(0);
    at::Tensor g = at::empty({x2.size(0), inter}, x2.options());
    at::Tensor u = at::empty({x2.size(0), inter}, x2.options());
    at::Tensor xa_g = ProjectionForward(gate, x2, g);
    at::Tensor xa_u = ProjectionForward(up, x2, u);
    at::Tensor out = NewOutput(x, down.lora_b.size(0));
    at::Tensor y = out.view({-1, out.size(-1)});
    at::Tensor ha;
    {
      at::Tensor h = SwiGluForward(g, u);  // (N, I), not kept
      ha = ProjectionForward(down, h, y);
    }
    ctx->save_for_backward({x2, g, u, xa_g, xa_u, ha});
    ctx->saved_data["bases"] = Capsule({gate, up, down});
    ctx->saved_data["shape"] = x.sizes().vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x2 = saved[0];
    const at::Tensor& g = saved[1];
    const at::Tensor& u = saved[2];
    const std::vector<LoraProjection>& p = FromCapsule(ctx);
    at::Tensor dy = Flat(grads[0].to(x2.scalar_type()));
    // down: its input h is recomputed from g and u (one (N, I) temporary).
    ProjectionGrads down;
    {
      at::Tensor h = SwiGluForward(g, u);
      down = ProjectionBackward(p[2], h, saved[5], dy, /*need_dx=*/true, ctx->needs_input_grad(5),
                                ctx->needs_input_grad(6));
    }
    auto [dg, du] = SwiGluBackward(g, u, down.dx);
    down.dx = at::Tensor();
    const bool need_dx = ctx->needs_input_grad(0);
    ProjectionGrads gate = ProjectionBackward(p[0], x2, saved[3], dg, need_dx,
                                              ctx->needs_input_grad(1), ctx->needs_input_grad(2));
    ProjectionGrads upg = ProjectionBackward(p[1], x2, saved[4], du, need_dx,
                                             ctx->needs_input_grad(3), ctx->needs_input_grad(4));
    at::Tensor dx;
    if (need_dx) dx = gate.dx.add_(upg.dx).view(ctx->saved_data["shape"].toIntVector());
    return {dx,      gate.da, gate.db, upg.da,      upg.db,
            down.da, down.db, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor FusedLoraLinear(const at::Tensor& x, const LoraProjection& proj) {
  TORCH_CHECK(x.defined() && x.dim() >= 1, "fused_lora: x must be (..., in)");
  CheckProjection(proj, x, x.size(-1), "projection");
  c10::DeviceGuard device_guard(x.device());
  return FusedLoraLinearFunction::apply(x, proj.lora_a, proj.lora_b, proj);
}

at::Tensor FusedLoraMlp(const at::Tensor& x, const LoraProjection& gate, const LoraProjection& up,
                        const LoraProjection& down) {
  TORCH_CHECK(x.defined() && x.dim() >= 1, "fused_lora mlp: x must be (..., H)");
  const int64_t hidden = x.size(-1);
  CheckProjection(gate, x, hidden, "gate_proj");
  CheckProjection(up, x, hidden, "up_proj");
  TORCH_CHECK(gate.lora_b.size(0) == up.lora_b.size(0), "fused_lora mlp: gate_proj has ",
              gate.lora_b.size(0), " outputs but up_proj has ", up.lora_b.size(0));
  CheckProjection(down, x, gate.lora_b.size(0), "down_proj");
  c10::DeviceGuard device_guard(x.device());
  return FusedLoraMlpFunction::apply(x, gate.lora_a, gate.lora_b, up.lora_a, up.lora_b,
                                     down.lora_a, down.lora_b, gate, up, down);
}

}  // namespace ops
}  // namespace foak

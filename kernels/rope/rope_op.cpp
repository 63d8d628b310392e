// LibTorch binding of rope: shape and dtype checks, the autograd Functions,
// and the choice between the CUDA kernel and the CPU reference.
//
// In place under autograd: the Function marks q and k dirty, so autograd
// moves their history onto it and bumps their version counters (anything
// that saved the un-rotated q or k for its backward then fails loudly instead
// of reading rotated values). Saved for backward: position_ids and inv_freq
// only; cos/sin are recomputed. Backward writes fresh dq, dk: the incoming
// gradient may be shared with other consumers.
//
// Views. Autograd refuses a Function with several outputs that modifies a view
// in place ("If your Function modifies inplace an input that is a view ...",
// torch/csrc/autograd/custom_function.cpp), even a view that does not require
// grad, and the model's q is always one (q_proj(x).view(B, T, H, d); linear on
// a 3-D input may itself return a view). So:
//  - a view that covers its whole base (same dtype, storage offset and numel,
//    both contiguous) is replaced by its base: the same bytes and the same
//    rotation, and autograd regenerates the view's history from the base's
//    when the view is next used. q and k then go through one Function and one
//    kernel launch, which shares the cos/sin table between them;
//  - a view of part of a larger tensor is rotated by a one-output Function
//    (autograd rewrites its base's history through CopySlices), q and k each
//    in their own launch.
#include "kernels/rope/rope_op.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include "kernels/common/op_util.h"
#include "kernels/rope/rope.h"

namespace foak {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

#ifdef FOAK_WITH_CUDA
void* PtrOrNull(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
#endif
float* FloatPtrOrNull(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// Heads of x seen as (tokens, heads, head_dim); 0 when x is undefined or empty.
int64_t HeadsOf(const at::Tensor& x, int64_t tokens, int64_t head_dim) {
  if (!x.defined() || tokens == 0) return 0;
  return x.numel() / (tokens * head_dim);
}

// q, k: contiguous or undefined; position_ids (B, T) contiguous int64.
RopeParams ParamsFor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& position_ids,
                     int64_t head_dim) {
  RopeParams p;
  p.batch = position_ids.size(0);
  p.seq = position_ids.size(1);
  p.q_heads = HeadsOf(q, p.batch * p.seq, head_dim);
  p.kv_heads = HeadsOf(k, p.batch * p.seq, head_dim);
  p.head_dim = head_dim;
  p.kind = KindOf(q.defined() ? q : k, "rope input");
  return p;
}

// Rotates q (B, T, q_heads, d) and k (B, T, kv_heads, d) in place; either may
// be undefined. inv_freq (d / 2) fp32 on their device.
void RotateInPlace(const at::Tensor& q, const at::Tensor& k, const at::Tensor& position_ids,
                   const at::Tensor& inv_freq, int64_t head_dim) {
  const at::Tensor& like = q.defined() ? q : k;
  const RopeParams p = ParamsFor(q, k, position_ids, head_dim);
  if (like.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    const c10::DeviceGuard device_guard(like.device());  // launch on the tensors' GPU
    RopeForwardCuda(p, PtrOrNull(q), PtrOrNull(k), position_ids.data_ptr<int64_t>(),
                    inv_freq.data_ptr<float>(), CurrentStream(like));
    CheckLaunch("rope forward");
    return;
#else
    CurrentStream(like);  // throws: no CUDA in this build
#endif
  }
  // fp32 tensors are rotated where they are (CpuFloat returns them as is);
  // the others through an fp32 copy that is copied back.
  at::Tensor qf = q.defined() ? CpuFloat(q) : at::Tensor();
  at::Tensor kf = k.defined() ? CpuFloat(k) : at::Tensor();
  RopeForwardRef(p, FloatPtrOrNull(qf), FloatPtrOrNull(kf), position_ids.data_ptr<int64_t>(),
                 inv_freq.data_ptr<float>());
  if (q.defined() && !qf.is_same(q)) q.copy_(qf);
  if (k.defined() && !kf.is_same(k)) k.copy_(kf);
}

// dy_q, dy_k (contiguous or undefined) -> fresh dq, dk (undefined where dy is).
std::pair<at::Tensor, at::Tensor> RotateBack(const at::Tensor& dy_q, const at::Tensor& dy_k,
                                             const at::Tensor& position_ids,
                                             const at::Tensor& inv_freq, int64_t head_dim) {
  const at::Tensor& like = dy_q.defined() ? dy_q : dy_k;
  if (!like.defined()) return {};
  const RopeParams p = ParamsFor(dy_q, dy_k, position_ids, head_dim);
  if (like.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    const c10::DeviceGuard device_guard(like.device());
    at::Tensor dq = dy_q.defined() ? at::empty(dy_q.sizes(), dy_q.options()) : at::Tensor();
    at::Tensor dk = dy_k.defined() ? at::empty(dy_k.sizes(), dy_k.options()) : at::Tensor();
    RopeBackwardCuda(p, PtrOrNull(dy_q), PtrOrNull(dy_k), position_ids.data_ptr<int64_t>(),
                     inv_freq.data_ptr<float>(), PtrOrNull(dq), PtrOrNull(dk),
                     CurrentStream(like));
    CheckLaunch("rope backward");
    return {dq, dk};
#else
    CurrentStream(like);  // throws: no CUDA in this build
#endif
  }
  at::Tensor dyqf = dy_q.defined() ? CpuFloat(dy_q) : at::Tensor();
  at::Tensor dykf = dy_k.defined() ? CpuFloat(dy_k) : at::Tensor();
  at::Tensor dqf = dyqf.defined() ? at::empty_like(dyqf) : at::Tensor();
  at::Tensor dkf = dykf.defined() ? at::empty_like(dykf) : at::Tensor();
  RopeBackwardRef(p, FloatPtrOrNull(dyqf), FloatPtrOrNull(dykf), position_ids.data_ptr<int64_t>(),
                  inv_freq.data_ptr<float>(), FloatPtrOrNull(dqf), FloatPtrOrNull(dkf));
  return {dqf.defined() ? Restore(dqf, dy_q) : at::Tensor(),
          dkf.defined() ? Restore(dkf, dy_k) : at::Tensor()};
}

void SaveForBackward(AutogradContext* ctx, const at::Tensor& position_ids,
                     const at::Tensor& inv_freq, int64_t head_dim) {
  ctx->set_materialize_grads(false);  // an unused output's gradient stays undefined
  ctx->save_for_backward({position_ids, inv_freq});
  ctx->saved_data["head_dim"] = head_dim;
}

// Gradients of the Function's inputs from those of its outputs, computed only
// where an output got a gradient and the input needs one.
std::pair<at::Tensor, at::Tensor> GradientsOf(AutogradContext* ctx, const at::Tensor& dy_q,
                                              bool need_q, const at::Tensor& dy_k, bool need_k) {
  const auto saved = ctx->get_saved_variables();
  const int64_t head_dim = ctx->saved_data["head_dim"].toInt();
  at::Tensor gq = need_q && dy_q.defined() ? dy_q.contiguous() : at::Tensor();
  at::Tensor gk = need_k && dy_k.defined() ? dy_k.contiguous() : at::Tensor();
  return RotateBack(gq, gk, saved[0], saved[1], head_dim);
}

// q and k in one launch; neither may be a view (see the top of the file).
class RopePairFunction : public torch::autograd::Function<RopePairFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& position_ids, const at::Tensor& inv_freq,
                               int64_t head_dim) {
    RotateInPlace(q, k, position_ids, inv_freq, head_dim);
    ctx->mark_dirty({q, k});
    SaveForBackward(ctx, position_ids, inv_freq, head_dim);
    return {q, k};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto [dq, dk] =
        GradientsOf(ctx, grads[0], ctx->needs_input_grad(0), grads[1], ctx->needs_input_grad(1));
    return {dq, dk, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// One tensor (q or k), which may be a view of part of a larger tensor.
class RopeOneFunction : public torch::autograd::Function<RopeOneFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& position_ids, const at::Tensor& inv_freq,
                            int64_t head_dim) {
    RotateInPlace(x, at::Tensor(), position_ids, inv_freq, head_dim);
    ctx->mark_dirty({x});
    SaveForBackward(ctx, position_ids, inv_freq, head_dim);
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor dx = GradientsOf(ctx, grads[0], ctx->needs_input_grad(0), at::Tensor(), false).first;
    return {dx, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Checks q or k against (B, T, heads * d) / (B, T, heads, d); returns heads.
int64_t CheckHeads(const at::Tensor& x, const char* what, int64_t head_dim) {
  TORCH_CHECK(x.dim() == 3 || x.dim() == 4, what,
              " must be (B, T, heads * head_dim) or (B, T, heads, head_dim), got ", x.sizes());
  if (x.dim() == 4) {
    TORCH_CHECK(x.size(3) == head_dim, what, " has last dimension ", x.size(3),
                " but head_dim is ", head_dim);
  } else {
    TORCH_CHECK(x.size(2) % head_dim == 0, what, " has last dimension ", x.size(2),
                ", which is not a multiple of head_dim ", head_dim);
  }
  TORCH_CHECK(x.is_contiguous(), what, " must be contiguous (it is rotated in place), got sizes ",
              x.sizes(), " strides ", x.strides());
  return x.dim() == 4 ? x.size(2) : x.size(2) / head_dim;
}

// `t`, or its base when t is a view of exactly the base's bytes.
at::Tensor InplaceTarget(const at::Tensor& t) {
  if (!t.is_view()) return t;
  at::Tensor base(t._base());
  const bool whole = base.is_contiguous() && base.scalar_type() == t.scalar_type() &&
                     base.numel() == t.numel() && base.storage_offset() == t.storage_offset();
  return whole ? base : t;
}

// In-place autograd cannot rewrite a leaf that requires grad; say so before
// the data is touched (autograd itself would only fail after the rotation).
void CheckNotGradLeaf(const at::Tensor& t, const char* what) {
  if (!at::GradMode::is_enabled()) return;
  const at::Tensor root = t.is_view() ? at::Tensor(t._base()) : t;
  TORCH_CHECK(!(root.is_leaf() && root.requires_grad()), what,
              " is (a view of) a leaf tensor that requires grad; rope rotates it in place, so "
              "pass the output of an op (e.g. the q_proj / k_proj output) or a clone");
}

}  // namespace

std::pair<at::Tensor, at::Tensor> ApplyRope(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& position_ids,
                                            const at::Tensor& inv_freq, int64_t head_dim) {
  TORCH_CHECK(head_dim > 0 && head_dim % 2 == 0,
              "rope head_dim must be a positive even number, got ", head_dim);
  TORCH_CHECK(head_dim <= kRopeMaxHeadDim, "rope head_dim is ", head_dim,
              "; the kernel takes at most ", kRopeMaxHeadDim);
  TORCH_CHECK(q.defined(), "rope q is undefined");
  KindOf(q, "rope q");
  CheckLike(k, q, "rope k");
  const int64_t q_heads = CheckHeads(q, "rope q", head_dim);
  const int64_t kv_heads = CheckHeads(k, "rope k", head_dim);
  const int64_t b = q.size(0), t = q.size(1);
  TORCH_CHECK(k.size(0) == b && k.size(1) == t, "rope k is ", k.sizes(), " but q is ", q.sizes(),
              "; their (B, T) must match");
  TORCH_CHECK((q_heads + kv_heads) * head_dim <= kRopeMaxTokenElements, "rope: ", q_heads,
              " q heads + ", kv_heads, " kv heads of ", head_dim,
              " values per token is more than the kernel takes (", kRopeMaxTokenElements, ")");
  TORCH_CHECK(!q.is_same(k) && (q.numel() == 0 || q.data_ptr() != k.data_ptr()),
              "rope q and k must be different tensors (both are rotated in place)");

  TORCH_CHECK(position_ids.defined(), "rope position_ids is undefined");
  TORCH_CHECK(position_ids.scalar_type() == at::kLong, "rope position_ids must be int64, got ",
              position_ids.scalar_type());
  TORCH_CHECK(position_ids.dim() == 2 && position_ids.size(1) == t &&
                  (position_ids.size(0) == b || position_ids.size(0) == 1),
              "rope position_ids must be (B, T) = (", b, ", ", t, ") or (1, T), got ",
              position_ids.sizes());
  TORCH_CHECK(position_ids.device() == q.device(), "rope position_ids is on ",
              position_ids.device(), " but q is on ", q.device());
  TORCH_CHECK(inv_freq.defined(), "rope inv_freq is undefined");
  TORCH_CHECK(inv_freq.is_floating_point(), "rope inv_freq must be floating point, got ",
              inv_freq.scalar_type());
  TORCH_CHECK(inv_freq.dim() == 1 && inv_freq.size(0) == head_dim / 2,
              "rope inv_freq must have head_dim / 2 = ", head_dim / 2, " elements, got ",
              inv_freq.sizes());

  // Each of these is a no-op for the model's (B, T) positions and fp32 table
  // on q's device (host time counts: the kernel itself takes tens of us).
  at::Tensor positions =
      (position_ids.size(0) == b ? position_ids : position_ids.expand({b, t})).contiguous();
  at::Tensor freqs = inv_freq.requires_grad() ? inv_freq.detach() : inv_freq;
  freqs = freqs.to(q.device(), at::kFloat).contiguous();
  at::Tensor qt = InplaceTarget(q), kt = InplaceTarget(k);
  CheckNotGradLeaf(q, "rope q");
  CheckNotGradLeaf(k, "rope k");
  if (!qt.is_view() && !kt.is_view() && !qt.is_same(kt)) {
    RopePairFunction::apply(qt, kt, positions, freqs, head_dim);
  } else {
    RopeOneFunction::apply(qt, positions, freqs, head_dim);
    RopeOneFunction::apply(kt, positions, freqs, head_dim);
  }
  return {q, k};
}

}  // namespace ops
}  // namespace foak

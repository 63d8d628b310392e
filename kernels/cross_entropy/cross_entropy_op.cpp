// LibTorch binding of cross_entropy: checks, the autograd Function and the
// CUDA-or-reference dispatch. Saved for backward: the gradient itself (it sits
// in the logits' storage when inplace_grad), nothing else.
#include "kernels/cross_entropy/cross_entropy_op.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include "kernels/common/op_util.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/cross_entropy/loss_parts.h"

namespace foak {
namespace ops {
namespace internal {

CrossEntropyParams ToParams(const LossOptions& o, int64_t rows, int64_t vocab) {
  CrossEntropyParams p;
  p.rows = rows;
  p.vocab = vocab;
  p.ignore_index = o.ignore_index;
  p.label_smoothing = static_cast<float>(o.label_smoothing);
  p.z_loss = static_cast<float>(o.z_loss);
  p.softcap = static_cast<float>(o.softcap);
  p.logit_scale = static_cast<float>(o.logit_scale);
  return p;
}

at::Tensor GradScale(const LossOptions& o, const at::Tensor& labels, int64_t known_count) {
  auto opts = labels.options().dtype(at::kFloat);
  if (o.normalizer > 0) return at::full({}, 1.0 / o.normalizer, opts);
  if (o.reduction != LossReduction::kMean) return at::Tensor();
  if (known_count >= 0) {
    return at::full({}, 1.0 / static_cast<double>(known_count > 0 ? known_count : 1), opts);
  }
  at::Tensor count = labels.ne(o.ignore_index).sum().to(at::kFloat).clamp_min(1.0);
  return count.reciprocal();
}

at::Tensor ReduceRows(const LossOptions& o, const at::Tensor& rows, const at::Tensor& grad_scale,
                      int64_t n, const at::Tensor& index) {
  if (o.reduction == LossReduction::kNone && o.normalizer <= 0) {
    if (!index.defined()) return rows;
    return at::zeros({n}, rows.options()).index_copy_(0, index, rows);
  }
  at::Tensor sum = rows.sum();
  return grad_scale.defined() ? sum * grad_scale : sum;
}

}  // namespace internal

void CheckLossOptions(const LossOptions& o) {
  TORCH_CHECK(o.label_smoothing >= 0.0 && o.label_smoothing < 1.0,
              "label_smoothing must be in [0, 1), got ", o.label_smoothing);
  TORCH_CHECK(o.z_loss >= 0.0, "z_loss must be >= 0, got ", o.z_loss);
  TORCH_CHECK(o.softcap >= 0.0, "softcap must be >= 0 (0 = off), got ", o.softcap);
  TORCH_CHECK(o.logit_scale > 0.0, "logit_scale must be > 0, got ", o.logit_scale);
  TORCH_CHECK(o.normalizer >= 0.0, "normalizer must be >= 0 (0 = use the reduction), got ",
              o.normalizer);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// logits2d (N, V), labels1d (N) -> {loss rows, z rows}; writes the gradient
// into `grad` (N, V) when it is defined.
std::pair<at::Tensor, at::Tensor> RowsForward(const LossOptions& o, const at::Tensor& logits2d,
                                              const at::Tensor& labels1d,
                                              const at::Tensor& grad_scale, at::Tensor grad) {
  const CrossEntropyParams p = internal::ToParams(o, logits2d.size(0), logits2d.size(1));
  if (logits2d.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    auto fopts = logits2d.options().dtype(at::kFloat);
    at::Tensor loss_rows = at::empty({p.rows}, fopts), z_rows = at::empty({p.rows}, fopts);
    const ScalarKind kind = KindOf(logits2d, "cross_entropy logits");
    CrossEntropyForwardCuda(p, kind, logits2d.data_ptr(), p.vocab, labels1d.data_ptr<int64_t>(),
                            grad_scale.defined() ? grad_scale.data_ptr<float>() : nullptr,
                            nullptr, loss_rows.data_ptr<float>(), z_rows.data_ptr<float>(),
                            nullptr, grad.defined() ? grad.data_ptr() : nullptr,
                            CurrentStream(logits2d));
    CheckLaunch("cross_entropy");
    return {loss_rows, z_rows};
#else
    CurrentStream(logits2d);  // throws: no CUDA in this build
#endif
  }
  at::Tensor zf = CpuFloat(logits2d);
  at::Tensor labels = labels1d.to(at::kCPU).contiguous();
  at::Tensor loss_rows = at::empty({p.rows}, zf.options()), z_rows = at::empty({p.rows}, zf.options());
  const float gs = grad_scale.defined() ? grad_scale.item<float>() : 1.0f;
  // zf may be the caller's own fp32 tensor: the gradient goes to a new buffer.
  at::Tensor gf = grad.defined() ? at::empty_like(zf) : at::Tensor();
  CrossEntropyRef(p, zf.data_ptr<float>(), p.vocab, labels.data_ptr<int64_t>(), gs,
                  loss_rows.data_ptr<float>(), z_rows.data_ptr<float>(),
                  grad.defined() ? gf.data_ptr<float>() : nullptr);
  if (grad.defined()) grad.copy_(gf);
  return {loss_rows, z_rows};
}

class CrossEntropyFunction : public torch::autograd::Function<CrossEntropyFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits,
                               const at::Tensor& labels, LossOptions o, bool needs_grad,
                               bool inplace_grad) {
    const int64_t v = logits.size(-1);
    at::Tensor logits2d = logits.reshape({-1, v}).contiguous();
    at::Tensor labels1d = labels.reshape({-1}).contiguous();
    at::Tensor grad;
    if (needs_grad) grad = inplace_grad ? logits2d : at::empty_like(logits2d);
    at::Tensor grad_scale = internal::GradScale(o, labels1d, -1);
    auto [loss_rows, z_rows] = RowsForward(o, logits2d, labels1d, grad_scale, grad);
    at::Tensor loss = internal::ReduceRows(o, loss_rows, grad_scale, labels1d.size(0), {});
    at::Tensor z = internal::ReduceRows(o, z_rows, grad_scale, labels1d.size(0), {});
    if (o.reduction == LossReduction::kNone && o.normalizer <= 0) {
      loss = loss.view(labels.sizes());
      z = z.view(labels.sizes());
    }
    ctx->mark_non_differentiable({z});
    if (needs_grad) {
      ctx->saved_data["grad"] = grad;
      ctx->saved_data["shape"] = logits.sizes().vec();
    }
    return {loss, z};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(ctx->saved_data.count("grad"),
                "cross_entropy: a second backward through the same loss is not supported (the "
                "gradient, kept in the logits' storage, was handed over by the first); recompute "
                "the loss instead of retain_graph=True");
    at::Tensor grad = ctx->saved_data["grad"].toTensor();  // (N, V), ours to scale
    const auto shape = ctx->saved_data["shape"].toIntVector();
    at::Tensor go = grads[0].to(at::kFloat).contiguous();
    const bool per_row = go.numel() > 1 || go.dim() > 0;
    if (grad.is_cuda()) {
#ifdef FOAK_WITH_CUDA
      ScaleByDeviceScalarCuda(KindOf(grad, "cross_entropy gradient"), grad.data_ptr(),
                              grad.numel(), go.data_ptr<float>(), per_row ? grad.size(1) : 0,
                              CurrentStream(grad));
      CheckLaunch("cross_entropy backward");
#endif
    } else {
      // In fp32, as the kernel does, then rounded once.
      grad.copy_(grad.to(at::kFloat) * (per_row ? go.reshape({-1, 1}) : go));
    }
    ctx->saved_data.erase("grad");
    return {grad.view(shape), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

LossResult CrossEntropy(const at::Tensor& logits, const at::Tensor& labels,
                        const LossOptions& options, bool inplace_grad) {
  CheckLossOptions(options);
  TORCH_CHECK(logits.dim() >= 1, "cross_entropy logits must be (..., V), got ", logits.sizes());
  KindOf(logits, "cross_entropy logits");
  TORCH_CHECK(labels.scalar_type() == at::kLong, "cross_entropy labels must be int64, got ",
              labels.scalar_type());
  TORCH_CHECK(labels.device() == logits.device(), "cross_entropy labels are on ", labels.device(),
              " but the logits are on ", logits.device());
  TORCH_CHECK(labels.numel() * logits.size(-1) == logits.numel(),
              "cross_entropy labels ", labels.sizes(), " do not match logits ", logits.sizes(),
              "; expected one label per row of V = ", logits.size(-1), " logits");
  const bool needs_grad = at::GradMode::is_enabled() && logits.requires_grad();
  c10::DeviceGuard device_guard(logits.device());  // launches go to the tensors' GPU
  variable_list out =
      CrossEntropyFunction::apply(logits, labels, options, needs_grad, inplace_grad);
  return LossResult{out[0], out[1]};
}

}  // namespace ops
}  // namespace foak

// LibTorch binding of the fused linear cross-entropy: checks, compaction of
// ignored rows, the autograd Function and the CUDA-or-reference dispatch.
//
// Saved for backward (reductions mean/sum/normaliser): the compacted dx
// (M, H), the fp32 dW accumulator (V, H) and the compaction index, all
// computed in forward for grad_output = 1. Reduction 'none': x, W, labels and
// the index, and backward runs the chunk loop again with per-row scales.
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy_op.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#ifdef FOAK_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>

#include "kernels/common/op_util.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/cross_entropy/loss_parts.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy.h"

namespace foak {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kChunkBudgetBytes = int64_t{464} << 20;
// fp16 gradients are stored times this power of two (see the header).
constexpr float kFp16GradMultiplier = 4096.0f;
// The gradients computed in forward are handed over (scaled in place) by the
// first backward.
constexpr const char* kSecondBackward =
    "fused_linear_cross_entropy: a second backward through the same loss is not supported "
    "(its gradients were handed over by the first); recompute the loss instead of "
    "retain_graph=True";

// Indices (m) of the rows whose label is not ignore_index, in order, built on
// the labels' device without synchronising (m is known on the host).
at::Tensor CompactIndex(const at::Tensor& labels, int64_t ignore_index, int64_t m) {
  const int64_t n = labels.size(0);
  auto long_opts = labels.options().dtype(at::kLong);
  at::Tensor valid = labels.ne(ignore_index);
  at::Tensor pos = valid.to(at::kLong).cumsum(0) - 1;
  // Rows past m (only with a wrong hint) and ignored rows go to the spare slot m.
  at::Tensor keep = valid.logical_and(pos.lt(m));
  at::Tensor target = at::where(keep, pos, at::full_like(pos, m));
  at::Tensor index = at::zeros({m + 1}, long_opts);
  index.scatter_(0, target, at::arange(n, long_opts));
  return index.slice(0, 0, m);
}

[[maybe_unused]] int64_t ChunkRows(const FusedLinearCrossEntropyOptions& o, const at::Tensor& x, int64_t rows,
                  int64_t vocab) {
  if (o.chunk_rows > 0) return o.chunk_rows;
  int64_t budget = kChunkBudgetBytes;
#ifdef FOAK_WITH_CUDA
  if (x.is_cuda()) {
    int64_t free_bytes = FreeDeviceBytes();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(x.device().index());
    free_bytes += stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;
    if (free_bytes > 0) budget = std::min(budget, free_bytes / 4);
  }
#endif
  return FusedLinearCrossEntropyChunkRows(rows, vocab, x.element_size(), budget);
}

struct Outputs {
  at::Tensor loss_rows, z_rows;  // (M) fp32
  at::Tensor dx;                 // (M, H) x's dtype, or undefined
  at::Tensor dw;                 // (V, H) fp32 accumulator, or undefined
  // When defined, dx and dw still need this factor (fp16 applies the
  // gradient scale after its GEMMs).
  at::Tensor post_scale;
};

// The chunk loop on M rows (CUDA) or the reference (CPU).
Outputs Run(const FusedLinearCrossEntropyOptions& o, const at::Tensor& x2d, const at::Tensor& w,
            const at::Tensor& labels, const at::Tensor& grad_scale, const at::Tensor& row_scale,
            bool want_dx, bool want_dw) {
  FusedLinearCrossEntropyParams p;
  p.ce = internal::ToParams(o.loss, x2d.size(0), w.size(0));
  p.hidden = x2d.size(1);
  p.kind = KindOf(x2d, "fused_linear_cross_entropy hidden states");
  p.compute_dx = want_dx;
  p.compute_dw = want_dw;
  const int64_t m = p.ce.rows, v = p.ce.vocab, h = p.hidden;
  Outputs out;
  if (x2d.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    auto fopts = x2d.options().dtype(at::kFloat);
    p.chunk_rows = ChunkRows(o, x2d, m, v);
    at::Tensor kernel_scale = grad_scale, kernel_rows = row_scale;
    if (p.kind == ScalarKind::kF16 && (want_dx || want_dw)) {
      // The stored gradient is at most about multiplier * logit_scale *
      // max|row scale|: halve the multiplier for a large logit_scale, and
      // move the rows' common magnitude (reduction 'none' backward) into the
      // post-GEMM scale, so nothing overflows fp16's 65504.
      float multiplier = kFp16GradMultiplier;
      while (multiplier > 1.0f && multiplier * o.loss.logit_scale > kFp16GradMultiplier) {
        multiplier /= 2.0f;
      }
      p.ce.grad_multiplier = multiplier;
      p.gemm_alpha = 1.0f / multiplier;
      out.post_scale = grad_scale;
      kernel_scale = at::Tensor();
      if (row_scale.defined()) {
        at::Tensor peak = row_scale.abs().max().clamp_min(1e-30);
        kernel_rows = (row_scale / peak).contiguous();
        out.post_scale = out.post_scale.defined() ? out.post_scale * peak : peak;
      }
    }
    out.loss_rows = at::empty({m}, fopts);
    out.z_rows = at::empty({m}, fopts);
    if (want_dx) out.dx = at::empty({m, h}, x2d.options());
    if (want_dw) out.dw = at::empty({v, h}, fopts);
    at::Tensor logits =
        at::empty({std::min(p.chunk_rows, std::max<int64_t>(m, 1)), v}, x2d.options());
    FusedLinearCrossEntropyCuda(
        p, x2d.data_ptr(), w.data_ptr(), labels.data_ptr<int64_t>(),
        kernel_scale.defined() ? kernel_scale.data_ptr<float>() : nullptr,
        kernel_rows.defined() ? kernel_rows.data_ptr<float>() : nullptr,
        out.loss_rows.data_ptr<float>(),
        out.z_rows.data_ptr<float>(), want_dx ? out.dx.data_ptr() : nullptr,
        want_dw ? out.dw.data_ptr<float>() : nullptr, logits.data_ptr(), CurrentBlasHandle(),
        CurrentStream(x2d));
    CheckLaunch("fused_linear_cross_entropy");
    return out;
#else
    CurrentStream(x2d);  // throws: no CUDA in this build
#endif
  }
  at::Tensor xf = CpuFloat(x2d), wf = CpuFloat(w);
  at::Tensor lab = labels.to(at::kCPU).contiguous();
  at::Tensor rs = row_scale.defined() ? CpuFloat(row_scale) : at::Tensor();
  out.loss_rows = at::empty({m}, xf.options());
  out.z_rows = at::empty({m}, xf.options());
  at::Tensor dxf = want_dx ? at::empty({m, h}, xf.options()) : at::Tensor();
  if (want_dw) out.dw = at::empty({v, h}, xf.options());
  FusedLinearCrossEntropyRef(p, xf.data_ptr<float>(), wf.data_ptr<float>(), lab.data_ptr<int64_t>(),
                             grad_scale.defined() ? grad_scale.item<float>() : 1.0f,
                             rs.defined() ? rs.data_ptr<float>() : nullptr,
                             out.loss_rows.data_ptr<float>(), out.z_rows.data_ptr<float>(),
                             want_dx ? dxf.data_ptr<float>() : nullptr,
                             want_dw ? out.dw.data_ptr<float>() : nullptr);
  if (want_dx) out.dx = Restore(dxf, x2d);
  return out;
}

// dW accumulator (fp32) times *scale (null: 1), as w's dtype.
at::Tensor FinishWeightGrad(const at::Tensor& acc, const at::Tensor& scale, at::ScalarType dtype) {
  if (acc.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    NarrowInPlaceCuda(acc.data_ptr<float>(), acc.numel(), scale.defined() ? scale.data_ptr<float>() : nullptr,
                      KindOf(at::empty({0}, acc.options().dtype(dtype)), "lm_head weight"),
                      CurrentStream(acc));
    CheckLaunch("fused_linear_cross_entropy dW");
    if (dtype == at::kFloat) return acc;
    // The narrowed values fill the front half of the accumulator's storage;
    // the view keeps the whole block alive until the gradient is freed.
    at::Tensor keep = acc;
    return at::from_blob(
        acc.data_ptr(), acc.sizes(), [keep](void*) mutable { keep.reset(); },
        acc.options().dtype(dtype));
#endif
  }
  at::Tensor d = scale.defined() ? acc * scale.to(acc.device()) : acc;
  return d.to(dtype);
}

at::Tensor FinishInputGrad(at::Tensor dxc, const at::Tensor& scale, const at::Tensor& index,
                           int64_t n) {
  if (scale.defined()) {
    if (dxc.is_cuda()) {
#ifdef FOAK_WITH_CUDA
      ScaleByDeviceScalarCuda(KindOf(dxc, "dx"), dxc.data_ptr(), dxc.numel(),
                              scale.data_ptr<float>(), 0, CurrentStream(dxc));
      CheckLaunch("fused_linear_cross_entropy dx");
#endif
    } else {
      dxc.mul_(scale.to(dxc.scalar_type()));
    }
  }
  if (!index.defined()) return dxc;
  return at::zeros({n, dxc.size(1)}, dxc.options()).index_copy_(0, index, dxc);
}

bool IsNone(const LossOptions& o) {
  return o.reduction == LossReduction::kNone && o.normalizer <= 0;
}

class FusedLinearCrossEntropyFunction
    : public torch::autograd::Function<FusedLinearCrossEntropyFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                               const at::Tensor& labels, FusedLinearCrossEntropyOptions o,
                               bool want_dx, bool want_dw) {
    const int64_t h = x.size(-1);
    at::Tensor x2d = x.reshape({-1, h}).contiguous();
    at::Tensor wc = w.contiguous();
    at::Tensor labels1d = labels.reshape({-1}).contiguous();
    const int64_t n = x2d.size(0);
    at::Tensor index, xc = x2d, yc = labels1d;
    if (o.num_valid >= 0 && o.num_valid < n) {
      index = CompactIndex(labels1d, o.loss.ignore_index, o.num_valid);
      xc = x2d.index_select(0, index);
      yc = labels1d.index_select(0, index);
    }
    at::Tensor grad_scale = internal::GradScale(o.loss, labels1d, o.num_valid);
    const bool none = IsNone(o.loss);
    const bool grads_now = !none && (want_dx || want_dw);
    Outputs out = Run(o, xc, wc, yc, grad_scale, at::Tensor(), grads_now && want_dx,
                      grads_now && want_dw);
    at::Tensor loss = internal::ReduceRows(o.loss, out.loss_rows, grad_scale, n, index);
    at::Tensor z = internal::ReduceRows(o.loss, out.z_rows, grad_scale, n, index);
    if (none) {
      loss = loss.view(labels.sizes());
      z = z.view(labels.sizes());
    }
    ctx->mark_non_differentiable({z});
    ctx->saved_data["n"] = n;
    ctx->saved_data["x_shape"] = x.sizes().vec();
    if (index.defined()) ctx->saved_data["index"] = index;
    if (grads_now) {
      if (out.dx.defined()) ctx->saved_data["dx"] = out.dx;
      if (out.dw.defined()) ctx->saved_data["dw"] = out.dw;
      if (out.post_scale.defined()) ctx->saved_data["post_scale"] = out.post_scale;
    } else if (none && (want_dx || want_dw)) {
      // Reduction 'none': backward runs the chunk loop again with these.
      ctx->save_for_backward({xc, wc, yc});
      ctx->saved_data["recompute"] = true;
      ctx->saved_data["chunk_rows"] = o.chunk_rows;
      ctx->saved_data["ignore_index"] = o.loss.ignore_index;
      ctx->saved_data["label_smoothing"] = o.loss.label_smoothing;
      ctx->saved_data["z_loss"] = o.loss.z_loss;
      ctx->saved_data["softcap"] = o.loss.softcap;
      ctx->saved_data["logit_scale"] = o.loss.logit_scale;
    }
    ctx->saved_data["want_dx"] = want_dx;
    ctx->saved_data["want_dw"] = want_dw;
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    return {loss, z};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto& d = ctx->saved_data;
    const int64_t n = d["n"].toInt();
    const auto x_shape = d["x_shape"].toIntVector();
    const bool want_dx = d["want_dx"].toBool(), want_dw = d["want_dw"].toBool();
    at::Tensor index = d.count("index") ? d["index"].toTensor() : at::Tensor();
    at::Tensor go = grads[0].to(at::kFloat).contiguous();
    const auto dtype = static_cast<at::ScalarType>(d["dtype"].toInt());
    at::Tensor dx, dw;
    if (d.count("recompute")) {
      // Reduction 'none': recompute with each row's grad_output as its scale.
      const auto saved = ctx->get_saved_variables();
      FusedLinearCrossEntropyOptions o;
      o.chunk_rows = d["chunk_rows"].toInt();
      o.loss.reduction = LossReduction::kNone;
      o.loss.ignore_index = d["ignore_index"].toInt();
      o.loss.label_smoothing = d["label_smoothing"].toDouble();
      o.loss.z_loss = d["z_loss"].toDouble();
      o.loss.softcap = d["softcap"].toDouble();
      o.loss.logit_scale = d["logit_scale"].toDouble();
      at::Tensor row_scale = go.reshape({-1});
      if (index.defined()) row_scale = row_scale.index_select(0, index);
      Outputs out = Run(o, saved[0], saved[1], saved[2], at::Tensor(), row_scale.contiguous(),
                        want_dx, want_dw);
      if (want_dx) dx = FinishInputGrad(out.dx, out.post_scale, index, n);
      if (want_dw) dw = FinishWeightGrad(out.dw, out.post_scale, dtype);
    } else {
      if (d.count("post_scale")) go = go * d["post_scale"].toTensor();
      TORCH_CHECK(!want_dx || d.count("dx"), kSecondBackward);
      TORCH_CHECK(!want_dw || d.count("dw"), kSecondBackward);
      if (want_dx) dx = FinishInputGrad(d["dx"].toTensor(), go, index, n);
      if (want_dw) {
        at::Tensor acc = d["dw"].toTensor();
        d.erase("dw");
        dw = FinishWeightGrad(acc, go, dtype);
      }
    }
    d.erase("dx");
    if (dx.defined()) dx = dx.view(x_shape);
    return {dx, dw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

LossResult FusedLinearCrossEntropy(const at::Tensor& x, const at::Tensor& w,
                                   const at::Tensor& labels,
                                   const FusedLinearCrossEntropyOptions& options) {
  CheckLossOptions(options.loss);
  TORCH_CHECK(x.dim() >= 1, "fused_linear_cross_entropy hidden states must be (..., H), got ",
              x.sizes());
  KindOf(x, "fused_linear_cross_entropy hidden states");
  CheckLike(w, x, "fused_linear_cross_entropy weight", 2);
  TORCH_CHECK(w.size(1) == x.size(-1), "fused_linear_cross_entropy weight is ", w.sizes(),
              " but the hidden size is ", x.size(-1), "; expected (V, ", x.size(-1), ")");
  TORCH_CHECK(labels.scalar_type() == at::kLong,
              "fused_linear_cross_entropy labels must be int64, got ", labels.scalar_type());
  TORCH_CHECK(labels.device() == x.device(), "fused_linear_cross_entropy labels are on ",
              labels.device(), " but the hidden states are on ", x.device());
  TORCH_CHECK(labels.numel() * x.size(-1) == x.numel(), "fused_linear_cross_entropy labels ",
              labels.sizes(), " do not match hidden states ", x.sizes(),
              "; expected one label per row");
  TORCH_CHECK(options.num_valid >= -1 && options.num_valid <= labels.numel(), "num_valid ",
              options.num_valid, " must be -1 (unknown) or a count of labels, 0 to ",
              labels.numel());
  TORCH_CHECK(options.chunk_rows >= 0, "chunk_rows must be >= 0 (0 = automatic), got ",
              options.chunk_rows);
  c10::DeviceGuard device_guard(x.device());  // launches go to the tensors' GPU
  const bool grad_on = at::GradMode::is_enabled();
  variable_list out = FusedLinearCrossEntropyFunction::apply(
      x, w, labels, options, grad_on && x.requires_grad(), grad_on && w.requires_grad());
  return LossResult{out[0], out[1]};
}

}  // namespace ops
}  // namespace foak

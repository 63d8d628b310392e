// The one place where LibTorch 1.13 (Debian, the CPU CI machines) and LibTorch
// 2.x (2.11 on the GPU hosts) differ for foak. Everything else calls these
// wrappers, so the rest of the tree compiles unchanged on both; the switch is
// TORCH_VERSION_MAJOR from <torch/version.h>.
//
// 1. Attention. 2.x has at::scaled_dot_product_attention (flash / memory-
//    efficient kernels on CUDA, a fused kernel on CPU) with a `scale` argument.
//    1.13 lacks it: the fallback is transformers' eager attention, written out:
//    scores = q k^T * scale + mask, softmax in fp32, cast back to q's dtype,
//    times v. Both give the same result to rounding.
//
// 2. Fused AdamW. 2.x has at::_fused_adamw_ (one multi-tensor kernel for the
//    whole parameter list); 1.13 does not, so callers must check
//    FusedAdamWAvailable() and otherwise run their own per-tensor update.
//    The kernel reads each `state_steps` entry as the step number of THIS
//    update (it computes the bias corrections 1 - beta^step from it), so the
//    step must be incremented before the call, as PyTorch's Python optimizer
//    does; a step of 0 divides by zero and turns the parameters into NaN.
//    FusedAdamWStep increments the steps itself for that reason.
//
// 3. c10d: ProcessGroupGloo / ProcessGroupNCCL are c10d::ProcessGroup on 1.13
//    and c10d::Backend on 2.x; NCCL exists only on 2.x with USE_C10D_NCCL and
//    needs shutdown(). Those wrappers live in torch_compat_c10d.h (heavy
//    headers, included only by worker/parallel/collectives.cc).
#ifndef FOAK_WORKER_TORCH_COMPAT_H_
#define FOAK_WORKER_TORCH_COMPAT_H_

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#if TORCH_VERSION_MAJOR >= 2
#define FOAK_TORCH_HAS_SDPA 1
#define FOAK_TORCH_HAS_FUSED_ADAMW 1
#else
#define FOAK_TORCH_HAS_SDPA 0
#define FOAK_TORCH_HAS_FUSED_ADAMW 0
#endif
// _foreach_norm with an output dtype and _foreach_mul_ by a tensor: 2.4+.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define FOAK_TORCH_HAS_FOREACH_NORM_DTYPE 1
#else
#define FOAK_TORCH_HAS_FOREACH_NORM_DTYPE 0
#endif

namespace foak::compat {

// Causal self-attention over already head-split tensors.
//   q, k, v: (B, nH, T, d), same number of heads (GQA repeated by the caller)
//   mask:    additive (B or 1, 1, T, T), 0 = visible, a large negative value =
//            hidden; it already contains the causal part. Undefined = plain
//            causal attention.
// Returns (B, nH, T, d) in q's dtype.
inline at::Tensor ScaledDotProductAttention(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const at::Tensor& mask,
                                            double scale) {
  // A fp32 mask meets bf16/fp16 scores in their dtype, as transformers builds
  // its mask in the attention dtype (finfo.min of fp32 becomes -inf there,
  // which is harmless: the diagonal keeps every row finite).
  at::Tensor typed_mask = mask;
  if (mask.defined() && mask.scalar_type() != q.scalar_type()) {
    typed_mask = mask.to(q.scalar_type());
  }
#if FOAK_TORCH_HAS_SDPA
  if (typed_mask.defined()) {
    return at::scaled_dot_product_attention(q, k, v, typed_mask, /*dropout_p=*/0.0,
                                            /*is_causal=*/false, scale);
  }
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/std::nullopt,
                                          /*dropout_p=*/0.0, /*is_causal=*/true, scale);
#else
  at::Tensor scores = at::matmul(q, k.transpose(2, 3)) * scale;  // (B, nH, T, T)
  if (typed_mask.defined()) {
    scores = scores + typed_mask;
  } else {
    const int64_t t = q.size(2);
    at::Tensor future = at::ones({t, t}, q.options().dtype(at::kBool)).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, v);
#endif
}

constexpr bool FusedAdamWAvailable() { return FOAK_TORCH_HAS_FUSED_ADAMW != 0; }

struct FusedAdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double weight_decay = 0.0;  // decoupled (AdamW): p -= lr * wd * p
  double eps = 1e-8;
};

// One AdamW step over a group of parameters with the same hyperparameters.
// All lists have one entry per parameter; every tensor lives on the
// parameters' device; exp_avgs/exp_avg_sqs match the parameters in shape and
// dtype; state_steps are fp32 scalar tensors () starting at 0. Increments each
// state step by one, then updates params, exp_avgs and exp_avg_sqs in place.
// Throws c10::Error on LibTorch 1.13 (check FusedAdamWAvailable() first).
inline void FusedAdamWStep(const std::vector<at::Tensor>& params,
                           const std::vector<at::Tensor>& grads,
                           const std::vector<at::Tensor>& exp_avgs,
                           const std::vector<at::Tensor>& exp_avg_sqs,
                           const std::vector<at::Tensor>& state_steps,
                           const FusedAdamWOptions& options) {
  TORCH_CHECK(grads.size() == params.size() && exp_avgs.size() == params.size() &&
                  exp_avg_sqs.size() == params.size() && state_steps.size() == params.size(),
              "FusedAdamWStep: list sizes differ (params ", params.size(), ", grads ",
              grads.size(), ", exp_avgs ", exp_avgs.size(), ", exp_avg_sqs ",
              exp_avg_sqs.size(), ", state_steps ", state_steps.size(), ")");
  if (params.empty()) return;
#if FOAK_TORCH_HAS_FUSED_ADAMW
  at::_foreach_add_(state_steps, 1);  // before the kernel: it uses this step's number
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, state_steps,
                    options.lr, options.beta1, options.beta2, options.weight_decay, options.eps,
                    /*amsgrad=*/false, /*maximize=*/false);
#else
  (void)options;
  TORCH_CHECK(false, "FusedAdamWStep needs LibTorch >= 2 (at::_fused_adamw_); this is LibTorch ",
              TORCH_VERSION, ": use the per-tensor AdamW update instead");
#endif
}

// The 2-norm of each tensor as an fp32 scalar tensor, whatever the tensors'
// dtype. LibTorch 2.4+: multi-tensor kernels (a handful of launches for
// hundreds of tensors, as torch.nn.utils.clip_grad_norm_(foreach=True));
// older: one norm per tensor.
inline std::vector<at::Tensor> NormsFp32(const std::vector<at::Tensor>& tensors) {
#if FOAK_TORCH_HAS_FOREACH_NORM_DTYPE
  return at::_foreach_norm(tensors, 2, at::kFloat);
#else
  std::vector<at::Tensor> norms;
  norms.reserve(tensors.size());
  for (const at::Tensor& t : tensors) {
    norms.push_back(at::linalg_vector_norm(t, 2, c10::nullopt, false, at::kFloat));
  }
  return norms;
#endif
}

// tensors[i] *= factor (a 0-dim fp32 tensor on their device), without a
// host synchronisation; multi-tensor on LibTorch 2.4+.
inline void ScaleInPlace(const std::vector<at::Tensor>& tensors, const at::Tensor& factor) {
#if FOAK_TORCH_HAS_FOREACH_NORM_DTYPE
  at::_foreach_mul_(tensors, factor);
#else
  for (const at::Tensor& t : tensors) t.mul_(factor.to(t.scalar_type()));
#endif
}

}  // namespace foak::compat

#endif  // FOAK_WORKER_TORCH_COMPAT_H_

// cross_entropy as a LibTorch op with autograd (math in cross_entropy.h), and
// the loss options it shares with fused_linear_cross_entropy.
//
// The gradient is computed in the forward pass, written over the logits (no
// second (N, V) buffer; pass inplace_grad = false to keep the logits), and
// backward only multiplies it by grad_output, on the device and without a pass
// over the data when grad_output is 1. CUDA tensors run the fused kernel, CPU
// tensors the reference, so jobs naming the kernel run anywhere.
#ifndef FOAK_KERNELS_CROSS_ENTROPY_CROSS_ENTROPY_OP_H_
#define FOAK_KERNELS_CROSS_ENTROPY_CROSS_ENTROPY_OP_H_

#include <ATen/core/Tensor.h>

namespace foak {
namespace ops {

enum class LossReduction { kMean, kSum, kNone };

struct LossOptions {
  int64_t ignore_index = -100;
  LossReduction reduction = LossReduction::kMean;
  double label_smoothing = 0.0;  // in [0, 1)
  double z_loss = 0.0;           // lambda of lambda * lse^2, >= 0
  double softcap = 0.0;          // > 0: logits -> cap * tanh(logits / cap)
  double logit_scale = 1.0;      // logits are multiplied by it (Granite: 1 / logits_scaling)
  // > 0: loss = (sum of row losses) / normalizer, whatever `reduction` says:
  // gradient accumulation divides every micro-batch by the number of target
  // tokens of the whole step.
  double normalizer = 0.0;
};

struct LossResult {
  at::Tensor loss;    // () fp32, or (N) for kNone; differentiable
  at::Tensor z_loss;  // the z-loss part of `loss`, same reduction; no gradient
};

// logits (..., V), labels (...) int64 on the same device.
LossResult CrossEntropy(const at::Tensor& logits, const at::Tensor& labels,
                        const LossOptions& options, bool inplace_grad = true);

// Throws (c10::Error) naming the option when an option is out of range.
void CheckLossOptions(const LossOptions& options);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_CROSS_ENTROPY_CROSS_ENTROPY_OP_H_

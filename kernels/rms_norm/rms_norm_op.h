// rms_norm as a LibTorch op with autograd (see rms_norm.h for the math):
// CUDA tensors run the fused kernel, CPU tensors the reference, so a job that
// names the kernel runs anywhere. The weight gradient is computed only when
// the weight requires grad (full fine-tuning), not for a frozen norm (LoRA).
#ifndef FOAK_KERNELS_RMS_NORM_RMS_NORM_OP_H_
#define FOAK_KERNELS_RMS_NORM_RMS_NORM_OP_H_

#include <ATen/core/Tensor.h>

namespace foak {
namespace ops {

// x (..., H), w (H) of one dtype (fp32, bf16 or fp16) -> y (..., H).
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_RMS_NORM_RMS_NORM_OP_H_

// swiglu as a LibTorch op with autograd (see swiglu.h for the math): the
// silu(gate_proj(x)) * up_proj(x) of the Llama MLP in one pass. CUDA tensors
// run the fused kernel, CPU tensors the reference, so a job that names the
// kernel runs anywhere. Backward keeps only gate and up (not silu(gate)) and
// computes just the gradients autograd asks for (up frozen: no du).
#ifndef FOAK_KERNELS_SWIGLU_SWIGLU_OP_H_
#define FOAK_KERNELS_SWIGLU_SWIGLU_OP_H_

#include <ATen/core/Tensor.h>

#include <utility>

namespace foak {
namespace ops {

// gate (..., I), up (..., I) of one shape and dtype (fp32, bf16 or fp16)
// -> silu(gate) * up (..., I).
at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up);

// The op's two halves without autograd, for other ops that fuse around them
// (kernels/fused_lora/): gate, up, dy contiguous, of one shape and dtype.
// SwiGluBackward returns {dg, du}.
at::Tensor SwiGluForward(const at::Tensor& gate, const at::Tensor& up);
std::pair<at::Tensor, at::Tensor> SwiGluBackward(const at::Tensor& gate, const at::Tensor& up,
                                                 const at::Tensor& dy);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_SWIGLU_SWIGLU_OP_H_

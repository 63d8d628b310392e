// rope as a LibTorch op with autograd (see rope.h for the math): rotates q
// and k in place, as the attention block's q_proj / k_proj outputs are never
// needed un-rotated, so no second (B, T, heads, d) activation is allocated.
// CUDA tensors run the fused kernel, CPU tensors the reference, so a job that
// names the kernel runs anywhere.
#ifndef FOAK_KERNELS_ROPE_ROPE_OP_H_
#define FOAK_KERNELS_ROPE_ROPE_OP_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

namespace foak {
namespace ops {

// q (B, T, q_heads * d) or (B, T, q_heads, d), k (B, T, kv_heads * d) or
// (B, T, kv_heads, d): contiguous, one dtype (fp32, bf16 or fp16), one device;
// position_ids (B, T) or (1, T) int64 on that device; inv_freq (d / 2), any
// floating dtype and device (used as fp32 on q's device); head_dim d even.
// Rotates q and k in place and returns them (the same tensors) with autograd
// history: gradients flow to q and k (and whatever produced them), never to
// position_ids or inv_freq. q and k may be views (e.g. q_proj(x).view(...)).
std::pair<at::Tensor, at::Tensor> ApplyRope(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& position_ids,
                                            const at::Tensor& inv_freq, int64_t head_dim);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_ROPE_ROPE_OP_H_

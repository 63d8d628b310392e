// fused_lora: a LoRA projection, or the whole Llama MLP with LoRA on gate, up
// and down, as one autograd node each, over a frozen base that is dense (bf16,
// fp16, fp32) or held in another form (NF4, kernels/nf4/) and materialised
// only for the duration of one GEMM.
//
// Math, for one projection with base W (out, in), bias b, adapter A (r, in),
// B (out, r) and scale s (alpha / r), on x (N, in):
//   forward   xa = x A^T                        (N, r)
//             y  = x W^T + b + s xa B^T          (N, out)
//   backward  dyb = dy B                        (N, r)
//             dx  = dy W + s dyb A               (N, in)
//             dA  = s dyb^T x                    (r, in)
//             dB  = s dy^T xa                    (out, r)
// and for the MLP, with g = gate(x), u = up(x), h = silu(g) u, y = down(h):
// the swiglu kernel's backward gives dg, du from dh = down's dx, and each
// projection's backward above runs with its own input (x for gate and up, h
// for down).
//
// Why fuse (memory): the composite LoRA layer (worker/lora/lora_layer.h, as
// PEFT) casts its input to the adapter's fp32 before A, and autograd keeps
// that copy, 4 bytes per element, once per adapted projection (q, k and v
// each make their own copy of x). Per token and layer, with a bf16 base, the
// composite keeps 3 x 4H (q, k, v) + 4H (o) + 2 x 4H (gate, up) for those
// copies, plus silu(g), g, u (2I each) and the fp32 copy of h for down's
// adapter (4I): 24H + 10I bytes. These nodes keep x once in bf16 (q, k and v
// save the same tensor), o's input, and for the MLP x, g and u: 6H + 4I
// bytes, plus the (N, r) products; h is recomputed from g and u in backward.
// For Llama-3-8B (H 4096, I 14336) that is about 150 KiB less per token and
// layer.
//
// Numerics: the adapter's GEMMs run in x's dtype (A and B are cast to it, as
// Unsloth's fused LoRA does) with fp32 accumulation inside cuBLAS; s xa B^T is
// added to the base output inside the same GEMM (addmm, beta 1), so y is
// rounded once. The composite computes the low-rank path in fp32 and rounds
// the sum once as well; the two differ by the rounding of A, B and xa to x's
// dtype (relative 2^-9 in bf16). Gradients of A and B are returned in their
// own dtype (fp32 for a bf16 base). Dropout on the adapter's input is not
// fused: a layer with lora_dropout > 0 keeps the composite path.
#ifndef FOAK_KERNELS_FUSED_LORA_FUSED_LORA_OP_H_
#define FOAK_KERNELS_FUSED_LORA_FUSED_LORA_OP_H_

#include <ATen/core/Tensor.h>

#include <functional>

namespace foak {
namespace ops {

// One frozen projection and its adapter.
struct LoraProjection {
  // The frozen base weight (out, in), dense in `dtype`: the parameter itself
  // (cast when needed), or a quantised weight dequantised into a temporary.
  // Called once in forward and once in backward; what it returns is dropped
  // after the GEMM that reads it.
  std::function<at::Tensor(at::ScalarType dtype)> base_weight;
  at::Tensor bias;    // (out) frozen, or undefined
  at::Tensor lora_a;  // (r, in), trainable
  at::Tensor lora_b;  // (out, r), trainable
  double scale = 1.0;
};

// x (..., in) -> (..., out) = x W^T + b + s (x A^T) B^T, in x's dtype.
// Gradients go to x, lora_a and lora_b (whichever require them).
at::Tensor FusedLoraLinear(const at::Tensor& x, const LoraProjection& proj);

// x (..., H) -> down(silu(gate(x)) * up(x)) (..., H), every projection with
// its adapter; the activation runs the swiglu kernel (CUDA) or its reference.
at::Tensor FusedLoraMlp(const at::Tensor& x, const LoraProjection& gate,
                        const LoraProjection& up, const LoraProjection& down);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_FUSED_LORA_FUSED_LORA_OP_H_

// swiglu: y = silu(g) * u, the gate of the Llama MLP
// (down_proj(silu(gate_proj(x)) * up_proj(x))), elementwise over the (N, I)
// outputs g = gate_proj(x) and u = up_proj(x).
//
// Math (per element, in fp32 registers, rounded once to the storage dtype; the
// CUDA kernel takes the fast exp and division for 16-bit dtypes, see swiglu.cu):
//   forward   sig = 1 / (1 + exp(-g))
//             y   = g * sig * u                      (silu(g) = g * sig)
//   backward  dg  = dy * u * sig * (1 + g * (1 - sig))  (d silu/dg = sig + g sig (1 - sig))
//             du  = dy * g * sig
// sigmoid saturates cleanly: for g << 0 exp(-g) overflows to inf and sig is 0,
// for g >> 0 sig is 1 and (1 - sig) is 0, so no inf * 0 arises and y, dg, du
// stay finite for every finite g.
//
// Memory: only g and u are saved for backward, and backward recomputes sig
// from g. The composite at::silu(g) * u keeps g (for silu's backward), silu(g)
// and u (for the product's backward): one more (N, I) tensor per layer. The
// composite also rounds twice (silu(g) to the storage dtype, then the product);
// the fused op rounds once.
//
// This header is free of torch and CUDA types so the CPU reference, the CUDA
// kernel and the LibTorch binding share it.
#ifndef FOAK_KERNELS_SWIGLU_SWIGLU_H_
#define FOAK_KERNELS_SWIGLU_SWIGLU_H_

#include <cstdint>

#include "kernels/common/scalar_kind.h"

namespace foak {

// g, u, y, dy, dg, du are contiguous and all of one shape; the op is
// elementwise, so only the element count matters.
struct SwiGluParams {
  int64_t numel = 0;                   // N * I
  ScalarKind kind = ScalarKind::kF32;  // dtype of g, u, y, dy, dg, du
};

// CPU reference (double arithmetic, rounded to float once per output).
// g (N, I), u (N, I) -> y (N, I).
void SwiGluForwardRef(const SwiGluParams& p, const float* g, const float* u, float* y);
// dy (N, I) -> dg (N, I) when non-null, du (N, I) when non-null (overwritten).
void SwiGluBackwardRef(const SwiGluParams& p, const float* g, const float* u, const float* dy,
                       float* dg, float* du);

// CUDA launchers (swiglu.cu). Pointers are device pointers of p.kind; `stream`
// is a cudaStream_t. When every pointer is 16-byte aligned the kernels move
// 16-byte vectors, otherwise single elements. Pass dg or du == nullptr to skip
// that gradient (u is then not read when dg is skipped).
void SwiGluForwardCuda(const SwiGluParams& p, const void* g, const void* u, void* y,
                       void* stream);
void SwiGluBackwardCuda(const SwiGluParams& p, const void* g, const void* u, const void* dy,
                        void* dg, void* du, void* stream);

}  // namespace foak

#endif  // FOAK_KERNELS_SWIGLU_SWIGLU_H_

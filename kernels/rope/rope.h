// rope: rotary position embedding of q and k (transformers' rotate_half
// convention), applied in place before attention.
//
// Math (per token n with position p_n, per head, head_dim d, half h = d / 2,
// pairs (i, i + h) for i < h):
//   angle = float(p_n) * inv_freq[i]      one fp32 product, as transformers
//                                         computes freqs (the product's rounding
//                                         matters: positions reach 1e5)
//   c = cos(angle), s = sin(angle)        fp32, precise (not __sinf)
//   forward   y[i]     = x[i] * c - x[i + h] * s
//             y[i + h] = x[i + h] * c + x[i] * s
//   backward  the rotation by -angle applied to dy (the rotation is
//             orthogonal, so its transpose is its inverse):
//             dx[i]     = dy[i] * c + dy[i + h] * s
//             dx[i + h] = dy[i + h] * c - dy[i] * s
// Computed in fp32 and rounded once to the storage type (the composite in
// llama.cc rounds cos/sin to the storage type first and each product after).
// Nothing is saved for backward beyond position_ids and inv_freq: c and s are
// recomputed, which costs less than reading a (B, T, d) table back.
//
// Layout: q (B, T, q_heads, d) and k (B, T, kv_heads, d) contiguous (the
// q_proj / k_proj outputs viewed per head), position_ids (B, T) int64 (any
// values: packed sequences restart at 0), inv_freq (d / 2) fp32.
//
// This header is free of torch and CUDA types so the CPU reference, the CUDA
// kernel and the LibTorch binding share it.
#ifndef FOAK_KERNELS_ROPE_ROPE_H_
#define FOAK_KERNELS_ROPE_ROPE_H_

#include <cstdint>

#include "kernels/common/scalar_kind.h"

namespace foak {

struct RopeParams {
  int64_t batch = 0;     // B
  int64_t seq = 0;       // T
  int64_t q_heads = 0;   // heads of q; 0 skips q (its pointers may be null)
  int64_t kv_heads = 0;  // heads of k; 0 skips k (its pointers may be null)
  int64_t head_dim = 0;  // d, even
  ScalarKind kind = ScalarKind::kF32;  // dtype of q, k, dy, dx
};

// Largest head_dim the CUDA kernel takes: its cos/sin table of d floats lives
// in shared memory (32 KiB here).
constexpr int64_t kRopeMaxHeadDim = 8192;
// Largest (q_heads + kv_heads) * head_dim of one token: keeps the kernel's
// per-token indices in int and its grid.y (blocks per token) under 65536.
constexpr int64_t kRopeMaxTokenElements = int64_t{1} << 27;

// CPU reference (fp32 angle and cos/sin, double products).
// q (B, T, q_heads, d), k (B, T, kv_heads, d) rotated in place;
// position_ids (B, T), inv_freq (d / 2).
void RopeForwardRef(const RopeParams& p, float* q, float* k, const int64_t* position_ids,
                    const float* inv_freq);
// dy_q (B, T, q_heads, d), dy_k (B, T, kv_heads, d) -> dq, dk of the same
// shapes; dq may alias dy_q and dk may alias dy_k.
void RopeBackwardRef(const RopeParams& p, const float* dy_q, const float* dy_k,
                     const int64_t* position_ids, const float* inv_freq, float* dq, float* dk);

// CUDA launchers (rope.cu). q, k, dy_*, d* are device pointers of p.kind;
// position_ids and inv_freq are device pointers too. `stream` is a
// cudaStream_t. Same shapes and aliasing rules as the references.
void RopeForwardCuda(const RopeParams& p, void* q, void* k, const int64_t* position_ids,
                     const float* inv_freq, void* stream);
void RopeBackwardCuda(const RopeParams& p, const void* dy_q, const void* dy_k,
                      const int64_t* position_ids, const float* inv_freq, void* dq, void* dk,
                      void* stream);

}  // namespace foak

#endif  // FOAK_KERNELS_ROPE_ROPE_H_

// fused_linear_cross_entropy: loss = CE(x W^T) without ever holding the
// (N, V) logits. x (N, H) are the final hidden states, W (V, H) the lm_head
// (or the tied embedding), labels (N).
//
// Algorithm (the anchors in shared/TARGETS.md explain the choices):
//  * Rows whose label is ignore_index are compacted out first (when the
//    caller knows how many remain; see the op), so no GEMM spends time on them.
//  * The rows are processed in token chunks of C rows. Per chunk:
//      logits  = x_c W^T            cuBLAS, fp32 accumulation, stored in the
//                                   input dtype as the eager head stores them
//      row kernel (cross_entropy.h) loss rows, and the softmax gradient G
//                                   written in place over the logits
//      dx_c    = G W                cuBLAS, fp32 accumulation
//      dW_acc += G^T x_c            cuBLAS with beta = 1 into an fp32 (V, H)
//                                   accumulator: every dW GEMM reduces over C
//                                   tokens (about 1.6k-1.9k at V = 128k), not
//                                   the 64-256 of vocabulary-sized chunking;
//                                   its fp32 read-modify-write is paid once
//                                   per chunk, so chunks are made large.
//    FLOPs: 6 N H V, the minimum; nothing is recomputed.
//  * C: the largest multiple of 64 whose logits chunk fits about 464 MiB
//    (less when free memory is short), then evened out over the chunks
//    (2048 rows: 2 x 1024, not 1856 + 192). Extra memory is then the fp32 dW
//    accumulator (V H 4 bytes) + the chunk + dx; the dW in the weight's dtype
//    is made in place inside the accumulator's storage (NarrowInPlaceCuda),
//    so the two never coexist.
//  * fp16: G = softmax - onehot is mostly below fp16's normal range once
//    divided by the token count, so it is stored times 2^12 (grad_multiplier,
//    halved while it times logit_scale exceeds 2^12) and the GEMMs take
//    alpha = 1 / multiplier; the 1/count, and in reduction 'none' the rows'
//    largest grad_output, are applied afterwards, so G stays below 65504.
//  * The gradient for grad_output = 1 is computed in the forward pass (as
//    Liger does); backward scales it by grad_output on the device, which is
//    free when grad_output is 1. Reduction 'none' instead recomputes in
//    backward with per-row scales.
//  * No host synchronisation: counts stay on the device, chunk sizes come
//    from shapes and cudaMemGetInfo.
// A frozen head (LoRA) skips the dW GEMM: 4 N H V FLOPs.
#ifndef FOAK_KERNELS_FUSED_LINEAR_CROSS_ENTROPY_FUSED_LINEAR_CROSS_ENTROPY_H_
#define FOAK_KERNELS_FUSED_LINEAR_CROSS_ENTROPY_FUSED_LINEAR_CROSS_ENTROPY_H_

#include <cstdint>

#include "kernels/common/scalar_kind.h"
#include "kernels/cross_entropy/cross_entropy.h"

namespace foak {

struct FusedLinearCrossEntropyParams {
  CrossEntropyParams ce;   // ce.rows = M (rows after compaction), ce.vocab = V
  int64_t hidden = 0;      // H
  int64_t chunk_rows = 0;  // C
  ScalarKind kind = ScalarKind::kF32;  // dtype of x, W and dx
  bool compute_dx = false;
  bool compute_dw = false;
  float gemm_alpha = 1.0f;  // alpha of the dx and dW GEMMs (1 / ce.grad_multiplier)
};

// Rows per chunk: the largest multiple of 64 (at least 64) whose (C, V)
// logits of `element_bytes` fit `budget_bytes`, evened out over the
// ceil(rows / C) chunks it implies (rounded up to a multiple of 64).
int64_t FusedLinearCrossEntropyChunkRows(int64_t rows, int64_t vocab, int64_t element_bytes,
                                         int64_t budget_bytes);

// CPU reference, double accumulators. x (M, H), w (V, H), labels (M);
// loss_rows, z_rows (M); dx (M, H) or null; dw (V, H) or null (overwritten).
// Row i's gradient is scaled by grad_scale * (row_scale ? row_scale[i] : 1).
void FusedLinearCrossEntropyRef(const FusedLinearCrossEntropyParams& p, const float* x,
                                const float* w, const int64_t* labels, float grad_scale,
                                const float* row_scale, float* loss_rows, float* z_rows,
                                float* dx, float* dw);

// CUDA: device pointers; x, w, dx of p.kind; dw_acc (V, H) fp32, written
// (not accumulated into) when p.compute_dw; logits_ws: p.chunk_rows * V
// elements of p.kind; grad_scale, row_scale as in CrossEntropyForwardCuda. `blas` is a
// cublasHandle_t, `stream` a cudaStream_t.
void FusedLinearCrossEntropyCuda(const FusedLinearCrossEntropyParams& p, const void* x,
                                 const void* w, const int64_t* labels, const float* grad_scale,
                                 const float* row_scale, float* loss_rows, float* z_rows,
                                 void* dx, float* dw_acc, void* logits_ws, void* blas,
                                 void* stream);

// data[0, n) fp32 -> the same values times *scale (null: 1) as `kind`, stored
// at the front of the same buffer (for kF32: scaled in place). Stream-ordered
// launches over doubling ranges [a, 2a), whose writes only land on elements
// an earlier launch already converted.
void NarrowInPlaceCuda(float* data, int64_t n, const float* scale, ScalarKind kind, void* stream);

// Free bytes on the current device (cudaMemGetInfo), or -1.
int64_t FreeDeviceBytes();

}  // namespace foak

#endif  // FOAK_KERNELS_FUSED_LINEAR_CROSS_ENTROPY_FUSED_LINEAR_CROSS_ENTROPY_H_

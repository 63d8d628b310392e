// fused_linear_cross_entropy as a LibTorch op with autograd: the lm_head
// matmul and the cross-entropy loss in one op that never holds the (N, V)
// logits (algorithm in fused_linear_cross_entropy.h). CUDA tensors run cuBLAS
// and the fused row kernel; CPU tensors run the reference.
#ifndef FOAK_KERNELS_FUSED_LINEAR_CROSS_ENTROPY_FUSED_LINEAR_CROSS_ENTROPY_OP_H_
#define FOAK_KERNELS_FUSED_LINEAR_CROSS_ENTROPY_FUSED_LINEAR_CROSS_ENTROPY_OP_H_

#include <ATen/core/Tensor.h>

#include "kernels/cross_entropy/cross_entropy_op.h"

namespace foak {
namespace ops {

struct FusedLinearCrossEntropyOptions {
  LossOptions loss;
  // Number of labels != ignore_index, when the caller knows it on the host
  // (the trainer does: its batches are built on the CPU). With it, ignored
  // rows are compacted out before the GEMMs without a host synchronisation;
  // without it (-1), every row goes through the GEMMs and ignored rows get a
  // zero gradient. It must be exact.
  int64_t num_valid = -1;
  // Token rows per chunk; 0 chooses from V and free memory (about 464 MiB of
  // fp32 logits per chunk).
  int64_t chunk_rows = 0;
};

// x (..., H) hidden states, w (V, H) lm_head or tied embedding of x's dtype,
// labels (...) int64. The weight gradient is computed only when w requires
// grad (a frozen head skips its GEMM); the gradient of x only when x does.
LossResult FusedLinearCrossEntropy(const at::Tensor& x, const at::Tensor& w,
                                   const at::Tensor& labels,
                                   const FusedLinearCrossEntropyOptions& options);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_FUSED_LINEAR_CROSS_ENTROPY_FUSED_LINEAR_CROSS_ENTROPY_OP_H_

// Pieces the two cross-entropy ops share (cross_entropy_op.cpp and
// fused_linear_cross_entropy_op.cpp): options -> kernel parameters, the
// device-side gradient scale of a reduction, and the reduction of per-row
// losses. Internal to kernels/.
#ifndef FOAK_KERNELS_CROSS_ENTROPY_LOSS_PARTS_H_
#define FOAK_KERNELS_CROSS_ENTROPY_LOSS_PARTS_H_

#include <ATen/core/Tensor.h>

#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/cross_entropy/cross_entropy_op.h"

namespace foak {
namespace ops {
namespace internal {

CrossEntropyParams ToParams(const LossOptions& o, int64_t rows, int64_t vocab);

// What every row's gradient is multiplied by, as a () fp32 tensor on the
// labels' device: 1 / normalizer, 1 / (number of target tokens) for kMean
// (counted on the device, or `known_count` when >= 0: no synchronisation
// either way), or undefined for 1 (kSum, kNone).
at::Tensor GradScale(const LossOptions& o, const at::Tensor& labels, int64_t known_count);

// rows (M) fp32 -> the reduced loss: sum * grad_scale, the sum, or for kNone
// the rows themselves, scattered into (n) zeros at `index` when it is defined.
at::Tensor ReduceRows(const LossOptions& o, const at::Tensor& rows, const at::Tensor& grad_scale,
                      int64_t n, const at::Tensor& index);

}  // namespace internal
}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_CROSS_ENTROPY_LOSS_PARTS_H_

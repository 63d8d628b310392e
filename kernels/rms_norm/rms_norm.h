// rms_norm: y = w * cast(x * rstd), rstd = 1 / sqrt(mean(x^2) + eps), per row.
//
// Math (row of H values, accumulation in fp32):
//   forward   xhat = x * rstd,  y = w * xhat        (xhat rounded to x's dtype
//             before the multiply, as transformers' LlamaRMSNorm does)
//   backward  g = dy * w
//             dx = rstd * (g - xhat * mean(g * xhat))
//             dw = sum over rows of dy * xhat       (skipped when w is frozen)
// Only rstd (N floats) is saved for backward; xhat is recomputed from x, which
// the caller keeps anyway (it is the residual stream).
//
// This header is free of torch and CUDA types so the CPU reference, the CUDA
// kernel and the LibTorch binding share it.
#ifndef FOAK_KERNELS_RMS_NORM_RMS_NORM_H_
#define FOAK_KERNELS_RMS_NORM_RMS_NORM_H_

#include <cstdint>

#include "kernels/common/scalar_kind.h"

namespace foak {

struct RmsNormParams {
  int64_t rows = 0;    // N
  int64_t hidden = 0;  // H
  float eps = 1e-6f;
  ScalarKind kind = ScalarKind::kF32;  // dtype of x, w, y, dy, dx
};

// CPU reference (fp32 arithmetic in double accumulators).
// x (N, H), w (H) -> y (N, H), rstd (N).
void RmsNormForwardRef(const RmsNormParams& p, const float* x, const float* w, float* y,
                       float* rstd);
// dy (N, H) -> dx (N, H); dw (H) when non-null (overwritten, not accumulated).
void RmsNormBackwardRef(const RmsNormParams& p, const float* x, const float* w,
                        const float* rstd, const float* dy, float* dx, float* dw);

// CUDA launchers (rms_norm.cu). Pointers are device pointers of p.kind; rstd
// and dw_partial are fp32. `stream` is a cudaStream_t. dw_partial is a
// (blocks, H) fp32 workspace of RmsNormBackwardWorkspaceRows(p) rows, summed
// into dw by the second pass; pass dw == nullptr to skip the weight gradient.
void RmsNormForwardCuda(const RmsNormParams& p, const void* x, const void* w, void* y,
                        float* rstd, void* stream);
int64_t RmsNormBackwardWorkspaceRows(const RmsNormParams& p);
void RmsNormBackwardCuda(const RmsNormParams& p, const void* x, const void* w,
                         const float* rstd, const void* dy, void* dx, float* dw_partial,
                         void* dw, void* stream);

}  // namespace foak

#endif  // FOAK_KERNELS_RMS_NORM_RMS_NORM_H_

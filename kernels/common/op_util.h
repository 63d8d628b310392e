// Torch-side helpers of the kernel bindings (the <op>_op.cpp files): dtype
// mapping, shape/dtype checks with messages that say what was expected, the
// current CUDA stream as a plain pointer for the launchers, and the fp32 CPU
// round trip through the references.
#ifndef FOAK_KERNELS_COMMON_OP_UTIL_H_
#define FOAK_KERNELS_COMMON_OP_UTIL_H_

#include <ATen/core/Tensor.h>

#include <string>

#include "kernels/common/scalar_kind.h"

namespace foak {
namespace ops {

// kF32 / kBF16 / kF16; throws (c10::Error) naming `what` for any other dtype.
ScalarKind KindOf(const at::Tensor& t, const char* what);

// Throws unless `t` is defined, has `dims` dimensions (when dims >= 0) and the
// dtype and device of `like`.
void CheckLike(const at::Tensor& t, const at::Tensor& like, const char* what, int dims = -1);

// The current CUDA stream of t's device as a cudaStream_t (void*); throws on a
// build without CUDA.
void* CurrentStream(const at::Tensor& t);
// Throws if the last kernel launch failed (cudaGetLastError), naming `op`.
void CheckLaunch(const char* op);
// cuBLAS handle bound to the current stream (a cublasHandle_t as void*).
void* CurrentBlasHandle();

// The contiguous fp32 CPU tensor a reference reads: `t` itself when it already
// is one, so never write into it.
at::Tensor CpuFloat(const at::Tensor& t);
// `ref` (fp32, CPU) converted back to the dtype and device of `like`.
at::Tensor Restore(const at::Tensor& ref, const at::Tensor& like);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_COMMON_OP_UTIL_H_

#include "kernels/common/op_util.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>


#ifdef FOAK_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace foak {
namespace ops {

ScalarKind KindOf(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat: return ScalarKind::kF32;
    case at::kBFloat16: return ScalarKind::kBF16;
    case at::kHalf: return ScalarKind::kF16;
    default:
      TORCH_CHECK(false, what, " has dtype ", t.scalar_type(),
                  "; the FOAK kernels take float32, bfloat16 or float16");
  }
  return ScalarKind::kF32;
}

void CheckLike(const at::Tensor& t, const at::Tensor& like, const char* what, int dims) {
  TORCH_CHECK(t.defined(), what, " is undefined");
  TORCH_CHECK(dims < 0 || t.dim() == dims, what, " must have ", dims, " dimensions, got ",
              t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), what, " has dtype ", t.scalar_type(),
              " but the input is ", like.scalar_type(), "; pass tensors of one dtype");
  TORCH_CHECK(t.device() == like.device(), what, " is on ", t.device(), " but the input is on ",
              like.device());
}

void* CurrentStream(const at::Tensor& t) {
#ifdef FOAK_WITH_CUDA
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
#else
  TORCH_CHECK(false, "this foak build has no CUDA; ", t.device(), " tensors cannot run here");
  return nullptr;
#endif
}

void CheckLaunch(const char* op) {
#ifdef FOAK_WITH_CUDA
  cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err),
              " (rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing kernel)");
#endif
}

void* CurrentBlasHandle() {
#ifdef FOAK_WITH_CUDA
  return at::cuda::getCurrentCUDABlasHandle();
#else
  TORCH_CHECK(false, "this foak build has no CUDA (cuBLAS)");
  return nullptr;
#endif
}

at::Tensor CpuFloat(const at::Tensor& t) { return t.to(at::kCPU, at::kFloat).contiguous(); }

at::Tensor Restore(const at::Tensor& ref, const at::Tensor& like) {
  return ref.to(like.device(), like.scalar_type());
}

}  // namespace ops
}  // namespace foak

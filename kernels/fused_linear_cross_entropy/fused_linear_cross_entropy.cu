// CUDA side of the fused linear cross-entropy (the algorithm is in the
// header): the chunk loop on cuBLAS GEMMs and the cross-entropy row kernel
// (in place over each chunk's logits), and the in-place fp32 -> bf16/fp16
// narrowing of the dW accumulator.
//
// cuBLAS is column-major; a row-major (r x c) matrix with row stride ld is a
// column-major (c x r) one with leading dimension ld, so each row-major
// product below is issued as its transpose:
//   logits (C, V)  = x_c (C, H) W^T          ->  logits^T = op_T(W) x_c^T
//   dx_c (C, H)    = G (C, V) W (V, H)       ->  dx_c^T   = W^T G^T
//   dW (V, H)     += G^T (V, C) x_c (C, H)   ->  dW^T    += x_c^T op_T(G^T)
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "kernels/common/cuda_util.cuh"
#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy.h"

namespace foak {
namespace {

cudaDataType_t CudaType(ScalarKind kind) {
  switch (kind) {
    case ScalarKind::kBF16: return CUDA_R_16BF;
    case ScalarKind::kF16: return CUDA_R_16F;
    case ScalarKind::kF32: return CUDA_R_32F;
  }
  return CUDA_R_32F;
}

int64_t ElementSize(ScalarKind kind) { return kind == ScalarKind::kF32 ? 4 : 2; }

void CheckBlas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("fused_linear_cross_entropy: cuBLAS ") + what +
                             " failed with status " + std::to_string(static_cast<int>(s)) +
                             " (check the shapes and free GPU memory)");
  }
}

// Column-major C (m x n) = alpha op(A) op(B) + beta C with fp32 accumulation.
void Gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
          int64_t k, float alpha, const void* a, cudaDataType_t at, int64_t lda, const void* b,
          cudaDataType_t bt, int64_t ldb, float beta, void* c, cudaDataType_t ct, int64_t ldc,
          const char* what) {
  CheckBlas(cublasGemmEx(h, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                         &alpha, a, at, static_cast<int>(lda), b, bt, static_cast<int>(ldb), &beta,
                         c, ct, static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            what);
}

template <typename T>
__global__ void narrow_kernel(float* data, int64_t begin, int64_t end, const float* scale) {
  const int64_t i = begin + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= end) return;
  const float v = data[i] * (scale ? *scale : 1.0f);
  reinterpret_cast<T*>(data)[i] = cuda::FromFloat<T>(v);
}

__global__ void scale_f32_kernel(float* data, int64_t n, const float* scale) {
  if (*scale == 1.0f) return;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    data[i] *= *scale;
  }
}

}  // namespace

void FusedLinearCrossEntropyCuda(const FusedLinearCrossEntropyParams& p, const void* x,
                                 const void* w, const int64_t* labels, const float* grad_scale,
                                 const float* row_scale, float* loss_rows, float* z_rows,
                                 void* dx, float* dw_acc, void* logits_ws, void* blas,
                                 void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  auto h = static_cast<cublasHandle_t>(blas);
  // `blas` comes bound to `stream` with PyTorch's workspace
  // (getCurrentCUDABlasHandle); cublasSetStream here would reset that
  // workspace to cuBLAS's own pool, outside the caching allocator.
  const int64_t m = p.ce.rows, v = p.ce.vocab, hid = p.hidden;
  const cudaDataType_t t = CudaType(p.kind);
  const int64_t es = ElementSize(p.kind);
  const bool want_grad = p.compute_dx || p.compute_dw;
  if (p.compute_dw && m == 0) {
    cudaMemsetAsync(dw_acc, 0, sizeof(float) * v * hid, s);
  }
  for (int64_t r0 = 0; r0 < m; r0 += p.chunk_rows) {
    const int64_t c = m - r0 < p.chunk_rows ? m - r0 : p.chunk_rows;
    const char* xc = static_cast<const char*>(x) + r0 * hid * es;
    Gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, v, c, hid, 1.0f, w, t, hid, xc, t, hid, 0.0f, logits_ws, t,
         v, "logits GEMM");
    CrossEntropyParams ce = p.ce;
    ce.rows = c;
    CrossEntropyForwardCuda(ce, p.kind, logits_ws, v, labels + r0, grad_scale,
                            row_scale ? row_scale + r0 : nullptr, loss_rows + r0, z_rows + r0,
                            nullptr, want_grad ? logits_ws : nullptr, stream);
    if (p.compute_dx) {
      char* dxc = static_cast<char*>(dx) + r0 * hid * es;
      Gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, hid, c, v, p.gemm_alpha, w, t, hid, logits_ws, t, v, 0.0f,
           dxc, t, hid, "dx GEMM");
    }
    if (p.compute_dw) {
      Gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, hid, v, c, p.gemm_alpha, xc, t, hid, logits_ws, t, v,
           r0 == 0 ? 0.0f : 1.0f, dw_acc, CUDA_R_32F, hid, "dW GEMM");
    }
  }
}

void NarrowInPlaceCuda(float* data, int64_t n, const float* scale, ScalarKind kind, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (n == 0) return;
  if (kind == ScalarKind::kF32) {
    if (scale == nullptr) return;
    const int64_t want = (n + 255) / 256;
    scale_f32_kernel<<<static_cast<unsigned>(want < 8192 ? want : 8192), 256, 0, s>>>(data, n,
                                                                                      scale);
    return;
  }
  // Element i of the result occupies the bytes of fp32 element i / 2, so the
  // range [a, 2a) can be converted in one launch once [0, a) is done.
  for (int64_t begin = 0; begin < n;) {
    const int64_t end = begin == 0 ? 1 : (2 * begin < n ? 2 * begin : n);
    const int64_t count = end - begin;
    const unsigned grid = static_cast<unsigned>((count + 255) / 256);
    if (kind == ScalarKind::kBF16) {
      narrow_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>(data, begin, end, scale);
    } else {
      narrow_kernel<__half><<<grid, 256, 0, s>>>(data, begin, end, scale);
    }
    begin = end;
  }
}

int64_t FreeDeviceBytes() {
  size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return static_cast<int64_t>(free_bytes);
}

}  // namespace foak

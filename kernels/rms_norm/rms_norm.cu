// CUDA rms_norm on raw pointers (no torch headers; see rms_norm.h for the math).
//
// Forward: one block per row; each thread sums x^2 over a strided slice in
// fp32, a warp-shuffle + shared-memory reduction gives the row's rstd, then the
// same threads write y. Memory traffic is the minimum: read x once (it stays in
// L1/L2 between the two passes over a row), read w, write y and rstd.
// Backward: a grid-stride loop over rows; per row a block reduction of
// sum(dy * w * xhat), then dx. The weight gradient is accumulated per block
// into a (blocks, H) fp32 workspace (each column owned by one thread, so no
// atomics and a deterministic result), and a second kernel sums the blocks.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/rms_norm/rms_norm.h"

namespace foak {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half(v); }

// Sum of `v` over the block; every thread gets the result.
__device__ float BlockSum(float v) {
  __shared__ float warp_sums[kThreads / 32];
  __shared__ float total;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  int lane = threadIdx.x & 31;
  int warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
    if (lane == 0) total = s;
  }
  __syncthreads();
  float result = total;
  __syncthreads();  // warp_sums/total are reused by the next call
  return result;
}

template <typename T>
__global__ void rms_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                        T* __restrict__ y, float* __restrict__ rstd,
                                        int64_t hidden, float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * hidden;
  T* yr = y + row * hidden;
  float ss = 0.0f;
  for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
    float v = ToFloat(xr[h]);
    ss += v * v;
  }
  float r = rsqrtf(BlockSum(ss) / static_cast<float>(hidden) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
    // xhat is rounded to T before the weight multiply, as transformers does.
    float xhat = ToFloat(FromFloat<T>(ToFloat(xr[h]) * r));
    yr[h] = FromFloat<T>(ToFloat(w[h]) * xhat);
  }
}

template <typename T>
__global__ void rms_norm_backward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                         const float* __restrict__ rstd,
                                         const T* __restrict__ dy, T* __restrict__ dx,
                                         float* __restrict__ dw_partial, int64_t rows,
                                         int64_t hidden) {
  float* dwp = dw_partial ? dw_partial + blockIdx.x * hidden : nullptr;
  if (dwp) {
    for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) dwp[h] = 0.0f;
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * hidden;
    const T* dyr = dy + row * hidden;
    T* dxr = dx + row * hidden;
    const float r = rstd[row];
    float dot = 0.0f;
    for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
      dot += ToFloat(dyr[h]) * ToFloat(w[h]) * ToFloat(xr[h]) * r;
    }
    const float mean = BlockSum(dot) / static_cast<float>(hidden);
    for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
      float g = ToFloat(dyr[h]);
      float xhat = ToFloat(xr[h]) * r;
      dxr[h] = FromFloat<T>(r * (g * ToFloat(w[h]) - xhat * mean));
      if (dwp) dwp[h] += g * xhat;
    }
  }
}

template <typename T>
__global__ void rms_norm_dw_reduce_kernel(const float* __restrict__ dw_partial, int64_t blocks,
                                          int64_t hidden, T* __restrict__ dw) {
  int64_t h = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (h >= hidden) return;
  float s = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) s += dw_partial[b * hidden + h];
  dw[h] = FromFloat<T>(s);
}

int64_t BackwardBlocks(const RmsNormParams& p) {
  int device = 0;
  int sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) {
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  }
  int64_t blocks = static_cast<int64_t>(sms) * 4;
  return p.rows < blocks ? (p.rows > 0 ? p.rows : 1) : blocks;
}

template <typename T>
void LaunchForward(const RmsNormParams& p, const void* x, const void* w, void* y, float* rstd,
                   cudaStream_t stream) {
  if (p.rows == 0) return;
  rms_norm_forward_kernel<T><<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y), rstd, p.hidden,
      p.eps);
}

template <typename T>
void LaunchBackward(const RmsNormParams& p, const void* x, const void* w, const float* rstd,
                    const void* dy, void* dx, float* dw_partial, void* dw, cudaStream_t stream) {
  if (p.rows == 0) return;
  const int64_t blocks = BackwardBlocks(p);
  rms_norm_backward_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), rstd, static_cast<const T*>(dy),
      static_cast<T*>(dx), dw ? dw_partial : nullptr, p.rows, p.hidden);
  if (dw) {
    const unsigned grid = static_cast<unsigned>((p.hidden + kThreads - 1) / kThreads);
    rms_norm_dw_reduce_kernel<T><<<grid, kThreads, 0, stream>>>(dw_partial, blocks, p.hidden,
                                                                 static_cast<T*>(dw));
  }
}

}  // namespace

void RmsNormForwardCuda(const RmsNormParams& p, const void* x, const void* w, void* y,
                        float* rstd, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (p.kind) {
    case ScalarKind::kF32: return LaunchForward<float>(p, x, w, y, rstd, s);
    case ScalarKind::kBF16: return LaunchForward<__nv_bfloat16>(p, x, w, y, rstd, s);
    case ScalarKind::kF16: return LaunchForward<__half>(p, x, w, y, rstd, s);
  }
}

int64_t RmsNormBackwardWorkspaceRows(const RmsNormParams& p) { return BackwardBlocks(p); }

void RmsNormBackwardCuda(const RmsNormParams& p, const void* x, const void* w,
                         const float* rstd, const void* dy, void* dx, float* dw_partial,
                         void* dw, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (p.kind) {
    case ScalarKind::kF32:
      return LaunchBackward<float>(p, x, w, rstd, dy, dx, dw_partial, dw, s);
    case ScalarKind::kBF16:
      return LaunchBackward<__nv_bfloat16>(p, x, w, rstd, dy, dx, dw_partial, dw, s);
    case ScalarKind::kF16:
      return LaunchBackward<__half>(p, x, w, rstd, dy, dx, dw_partial, dw, s);
  }
}

}  // namespace foak

// CUDA rms_norm on raw pointers (no torch headers; see rms_norm.h for the math).
//
// The op is memory-bound: forward reads x and w and writes y (plus N floats of
// rstd); backward reads x, w, dy and writes dx. So the kernels aim at the copy
// bandwidth: one block per row, 16-byte vector loads, and each row's vectors
// held in registers between the reduction and the write (x is read from memory
// once). Rows whose size is not a multiple of 16 bytes, or longer than the
// register cache holds (H > 8 * 256 * 16 bytes), take a scalar path that reads
// x twice.
// Backward's weight gradient: a grid-stride loop over rows (8 blocks per SM);
// each thread owns the same columns in every row, so it accumulates dw for
// them in registers, writes one (blocks, H) fp32 workspace row at the end,
// and a second kernel sums the rows with 32 x 8 thread blocks. No atomics:
// the result is deterministic.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/cuda_util.cuh"
#include "kernels/rms_norm/rms_norm.h"

namespace foak {
namespace {

using cuda::BlockSum;
using cuda::FromFloat;
using cuda::ToFloat;

constexpr int kThreads = 256;
constexpr int kMaxVecs = 8;  // 16-byte vectors per thread held in registers

using cuda::Pack;

// ------------------------------------------------------------ vector path --

template <typename T, int K, int kBlock>
__global__ void __launch_bounds__(kBlock) rms_norm_forward_vec_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                            T* __restrict__ y, float* __restrict__ rstd,
                                            int64_t hidden, float eps) {
  constexpr int kN = Pack<T>::kN;
  const int64_t nvec = hidden / kN;
  const int64_t row = blockIdx.x;
  const uint4* xr = reinterpret_cast<const uint4*>(x + row * hidden);
  const uint4* wr = reinterpret_cast<const uint4*>(w);
  uint4* yr = reinterpret_cast<uint4*>(y + row * hidden);
  Pack<T> xv[K];
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + k * kBlock;
    if (i < nvec) {
      xv[k].raw = xr[i];
#pragma unroll
      for (int j = 0; j < kN; ++j) {
        const float f = ToFloat(xv[k].v[j]);
        ss += f * f;
      }
    }
  }
  const float r = rsqrtf(BlockSum<kBlock>(ss) / static_cast<float>(hidden) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + k * kBlock;
    if (i < nvec) {
      Pack<T> wv, out;
      wv.raw = wr[i];
#pragma unroll
      for (int j = 0; j < kN; ++j) {
        // xhat is rounded to T before the weight multiply, as transformers does.
        const float xhat = ToFloat(FromFloat<T>(ToFloat(xv[k].v[j]) * r));
        out.v[j] = FromFloat<T>(ToFloat(wv.v[j]) * xhat);
      }
      yr[i] = out.raw;
    }
  }
}

template <typename T, int K>
__global__ void rms_norm_backward_vec_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                             const float* __restrict__ rstd,
                                             const T* __restrict__ dy, T* __restrict__ dx,
                                             float* __restrict__ dw_partial, int64_t rows,
                                             int64_t hidden) {
  constexpr int kN = Pack<T>::kN;
  const int64_t nvec = hidden / kN;
  const uint4* wr = reinterpret_cast<const uint4*>(w);
  float dw_acc[K][kN];
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int j = 0; j < kN; ++j) dw_acc[k][j] = 0.0f;
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const uint4* xr = reinterpret_cast<const uint4*>(x + row * hidden);
    const uint4* dyr = reinterpret_cast<const uint4*>(dy + row * hidden);
    uint4* dxr = reinterpret_cast<uint4*>(dx + row * hidden);
    const float r = rstd[row];
    Pack<T> xv[K], gv[K], wv[K];
    float dot = 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t i = threadIdx.x + k * kThreads;
      if (i < nvec) {
        xv[k].raw = xr[i];
        gv[k].raw = dyr[i];
        wv[k].raw = wr[i];
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          dot += ToFloat(gv[k].v[j]) * ToFloat(wv[k].v[j]) * ToFloat(xv[k].v[j]) * r;
        }
      }
    }
    const float mean = BlockSum<kThreads>(dot) / static_cast<float>(hidden);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t i = threadIdx.x + k * kThreads;
      if (i < nvec) {
        Pack<T> out;
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          const float g = ToFloat(gv[k].v[j]);
          const float xhat = ToFloat(xv[k].v[j]) * r;
          out.v[j] = FromFloat<T>(r * (g * ToFloat(wv[k].v[j]) - xhat * mean));
          dw_acc[k][j] += g * xhat;
        }
        dxr[i] = out.raw;
      }
    }
  }
  if (dw_partial == nullptr) return;
  float* dwp = dw_partial + blockIdx.x * hidden;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int64_t i = threadIdx.x + k * kThreads;
    if (i < nvec) {
#pragma unroll
      for (int j = 0; j < kN; ++j) dwp[i * kN + j] = dw_acc[k][j];
    }
  }
}

// ------------------------------------------------------------ scalar path --

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
  float r = rsqrtf(BlockSum<kThreads>(ss) / static_cast<float>(hidden) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
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
    const float mean = BlockSum<kThreads>(dot) / static_cast<float>(hidden);
    for (int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
      float g = ToFloat(dyr[h]);
      float xhat = ToFloat(xr[h]) * r;
      dxr[h] = FromFloat<T>(r * (g * ToFloat(w[h]) - xhat * mean));
      if (dwp) dwp[h] += g * xhat;
    }
  }
}

// dw[h] = sum over workspace rows of dw_partial[b, h]: 32 columns per block
// (coalesced), 8 row groups summed in shared memory, so the H / 32 blocks of
// 256 threads cover the workspace in parallel instead of one thread per
// column walking all of it.
template <typename T>
__global__ void rms_norm_dw_reduce_kernel(const float* __restrict__ dw_partial, int64_t blocks,
                                          int64_t hidden, T* __restrict__ dw) {
  __shared__ float partial[8][33];
  const int64_t h = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (h < hidden) {
    for (int64_t b = threadIdx.y; b < blocks; b += 8) s += dw_partial[b * hidden + h];
  }
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && h < hidden) {
    float total = 0.0f;
#pragma unroll
    for (int r = 0; r < 8; ++r) total += partial[r][threadIdx.x];
    dw[h] = FromFloat<T>(total);
  }
}

// ---------------------------------------------------------------- launch --

int64_t BackwardBlocks(const RmsNormParams& p) {
  const int64_t blocks = static_cast<int64_t>(cuda::SmCount()) * 8;
  return p.rows < blocks ? (p.rows > 0 ? p.rows : 1) : blocks;
}

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Vectors per thread for the register path, or 0 for the scalar path.
template <typename T>
int VecsPerThread(const RmsNormParams& p, const void* a, const void* b, const void* c,
                  const void* d, int block = kThreads) {
  constexpr int kN = Pack<T>::kN;
  if (p.hidden % kN != 0) return 0;
  if (!Aligned16(a) || !Aligned16(b) || !Aligned16(c) || (d && !Aligned16(d))) return 0;
  const int64_t per_thread = (p.hidden / kN + block - 1) / block;
  for (int k = 1; k <= kMaxVecs; k *= 2) {
    if (per_thread <= k) return k;
  }
  return 0;
}

template <typename T>
void LaunchForward(const RmsNormParams& p, const void* x, const void* w, void* y, float* rstd,
                   cudaStream_t stream) {
  if (p.rows == 0) return;
  const unsigned grid = static_cast<unsigned>(p.rows);
  auto xt = static_cast<const T*>(x);
  auto wt = static_cast<const T*>(w);
  auto yt = static_cast<T*>(y);
  // 128-thread blocks when a row fits their registers: twice the rows in
  // flight per SM, and cheaper barriers, than 256-thread blocks.
  switch (VecsPerThread<T>(p, x, w, y, nullptr, 128)) {
    case 1: rms_norm_forward_vec_kernel<T, 1, 128><<<grid, 128, 0, stream>>>(xt, wt, yt, rstd, p.hidden, p.eps); return;
    case 2: rms_norm_forward_vec_kernel<T, 2, 128><<<grid, 128, 0, stream>>>(xt, wt, yt, rstd, p.hidden, p.eps); return;
    case 4: rms_norm_forward_vec_kernel<T, 4, 128><<<grid, 128, 0, stream>>>(xt, wt, yt, rstd, p.hidden, p.eps); return;
    case 8: rms_norm_forward_vec_kernel<T, 8, 128><<<grid, 128, 0, stream>>>(xt, wt, yt, rstd, p.hidden, p.eps); return;
    default: break;
  }
  switch (VecsPerThread<T>(p, x, w, y, nullptr)) {
    case 8: rms_norm_forward_vec_kernel<T, 8, kThreads><<<grid, kThreads, 0, stream>>>(xt, wt, yt, rstd, p.hidden, p.eps); return;
    default: rms_norm_forward_kernel<T><<<grid, kThreads, 0, stream>>>(xt, wt, yt, rstd, p.hidden, p.eps);
  }
}

template <typename T>
void LaunchBackward(const RmsNormParams& p, const void* x, const void* w, const float* rstd,
                    const void* dy, void* dx, float* dw_partial, void* dw, cudaStream_t stream) {
  if (p.rows == 0) return;
  const int64_t blocks = BackwardBlocks(p);
  const unsigned grid = static_cast<unsigned>(blocks);
  auto xt = static_cast<const T*>(x);
  auto wt = static_cast<const T*>(w);
  auto dyt = static_cast<const T*>(dy);
  auto dxt = static_cast<T*>(dx);
  float* ws = dw ? dw_partial : nullptr;
  switch (VecsPerThread<T>(p, x, w, dy, dx)) {
    case 1: rms_norm_backward_vec_kernel<T, 1><<<grid, kThreads, 0, stream>>>(xt, wt, rstd, dyt, dxt, ws, p.rows, p.hidden); break;
    case 2: rms_norm_backward_vec_kernel<T, 2><<<grid, kThreads, 0, stream>>>(xt, wt, rstd, dyt, dxt, ws, p.rows, p.hidden); break;
    case 4: rms_norm_backward_vec_kernel<T, 4><<<grid, kThreads, 0, stream>>>(xt, wt, rstd, dyt, dxt, ws, p.rows, p.hidden); break;
    case 8: rms_norm_backward_vec_kernel<T, 8><<<grid, kThreads, 0, stream>>>(xt, wt, rstd, dyt, dxt, ws, p.rows, p.hidden); break;
    default: rms_norm_backward_kernel<T><<<grid, kThreads, 0, stream>>>(xt, wt, rstd, dyt, dxt, ws, p.rows, p.hidden);
  }
  if (dw) {
    const unsigned reduce_grid = static_cast<unsigned>((p.hidden + 31) / 32);
    rms_norm_dw_reduce_kernel<T><<<reduce_grid, dim3(32, 8), 0, stream>>>(
        dw_partial, blocks, p.hidden, static_cast<T*>(dw));
  }
}

}  // namespace

void RmsNormForwardCuda(const RmsNormParams& p, const void* x, const void* w, void* y,
                        float* rstd, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) { LaunchForward<decltype(tag)>(p, x, w, y, rstd, s); });
}

int64_t RmsNormBackwardWorkspaceRows(const RmsNormParams& p) { return BackwardBlocks(p); }

void RmsNormBackwardCuda(const RmsNormParams& p, const void* x, const void* w,
                         const float* rstd, const void* dy, void* dx, float* dw_partial,
                         void* dw, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) {
    LaunchBackward<decltype(tag)>(p, x, w, rstd, dy, dx, dw_partial, dw, s);
  });
}

}  // namespace foak

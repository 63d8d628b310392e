// CUDA swiglu on raw pointers (no torch headers; see swiglu.h for the math).
//
// The op is purely memory-bound: forward reads g, u and writes y (3 N I
// elements), backward reads g, u, dy and writes dg, du (5 N I), with a few
// dozen fp32 instructions per element in between. So the kernels aim at the
// copy bandwidth: a grid-stride loop over 16-byte vectors (8 bf16/fp16 or 4
// fp32 values), each thread issuing the loads of kUnroll vectors per operand
// before it computes any of them so enough bytes are in flight, and a grid of
// exactly one resident wave (SMs x resident blocks per SM). The last
// numel % (16 / sizeof(T)) elements are done by a scalar loop in the same
// kernel. A pointer that is not 16-byte aligned (a view at an odd storage
// offset) sends the whole call to the scalar kernels.
//
// Numerics: all math in fp32 registers, one rounding per output. For fp32
// outputs sig uses expf and an IEEE division (about 2 ulp). For bf16 and fp16
// outputs it uses __expf and __fdividef: their error, at most
// 2 + 1.17 |g| ulp of fp32 (about 2e-6 relative at |g| = 30, and sig saturates
// to exactly 0 or 1 beyond |g| ~ 88), is far below the final rounding to 8 or
// 11 mantissa bits (4e-3, 5e-4). Measured on an H200 at N=8192 x I=14336 bf16,
// the accurate versions left forward at 85% of copy bandwidth and backward at
// 88%, the 16-bit kernels being short of issue slots; the fast ones give 90%
// and 92%. fp32 moves twice the bytes per element and stays at 94% with the
// accurate math. Saturation: exp(-g) is inf for g < -88, so sig = 1 / inf = 0;
// backward uses (1 - sig), never exp(-g) * sig, which would be inf * 0 = NaN.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/common/cuda_util.cuh"
#include "kernels/swiglu/swiglu.h"

namespace foak {
namespace {

using cuda::FromFloat;
using cuda::ToFloat;

constexpr int kThreads = 256;
constexpr int kUnroll = 2;  // 16-byte vectors per operand loaded before computing

using cuda::Pack;

// sigmoid(g) for outputs of type T: accurate for fp32, fast for 16-bit types
// (see the top of the file). 1 + exp(-g) lies in [1, inf], where __fdividef(1, x)
// is within 2 ulp (and 0 for x > 2^126, where sig < 1e-38 anyway).
template <typename T>
__device__ __forceinline__ float Sigmoid(float g) {
  if constexpr (std::is_same<T, float>::value) {
    return 1.0f / (1.0f + expf(-g));
  } else {
    return __fdividef(1.0f, 1.0f + __expf(-g));
  }
}

template <typename T>
__device__ __forceinline__ float SwiGluValue(float g, float u) {
  return g * Sigmoid<T>(g) * u;
}

// dg and du of one element; `sig` is Sigmoid<T>(g).
__device__ __forceinline__ float GateGrad(float g, float u, float dy, float sig) {
  return dy * u * sig * (1.0f + g * (1.0f - sig));
}
__device__ __forceinline__ float UpGrad(float g, float dy, float sig) { return dy * g * sig; }

// ------------------------------------------------------------ vector path --

template <typename T>
__global__ void swiglu_forward_vec_kernel(const T* __restrict__ g, const T* __restrict__ u,
                                          T* __restrict__ y, int64_t numel) {
  constexpr int kN = Pack<T>::kN;
  const int64_t nvec = numel / kN;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const uint4* gv = reinterpret_cast<const uint4*>(g);
  const uint4* uv = reinterpret_cast<const uint4*>(u);
  uint4* yv = reinterpret_cast<uint4*>(y);
  for (int64_t base = tid; base < nvec; base += kUnroll * stride) {
    Pack<T> a[kUnroll], b[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t i = base + k * stride;
      if (i < nvec) {
        a[k].raw = gv[i];
        b[k].raw = uv[i];
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t i = base + k * stride;
      if (i < nvec) {
        Pack<T> out;
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          out.v[j] = FromFloat<T>(SwiGluValue<T>(ToFloat(a[k].v[j]), ToFloat(b[k].v[j])));
        }
        yv[i] = out.raw;
      }
    }
  }
  // Tail: fewer than kN elements past the last whole vector.
  for (int64_t i = nvec * kN + tid; i < numel; i += stride) {
    y[i] = FromFloat<T>(SwiGluValue<T>(ToFloat(g[i]), ToFloat(u[i])));
  }
}

template <typename T>
__global__ void swiglu_backward_vec_kernel(const T* __restrict__ g, const T* __restrict__ u,
                                           const T* __restrict__ dy, T* __restrict__ dg,
                                           T* __restrict__ du, int64_t numel) {
  constexpr int kN = Pack<T>::kN;
  const int64_t nvec = numel / kN;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const uint4* gv = reinterpret_cast<const uint4*>(g);
  const uint4* uv = reinterpret_cast<const uint4*>(u);
  const uint4* dyv = reinterpret_cast<const uint4*>(dy);
  uint4* dgv = reinterpret_cast<uint4*>(dg);
  uint4* duv = reinterpret_cast<uint4*>(du);
  for (int64_t base = tid; base < nvec; base += kUnroll * stride) {
    Pack<T> a[kUnroll], b[kUnroll], d[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t i = base + k * stride;
      if (i < nvec) {
        a[k].raw = gv[i];
        d[k].raw = dyv[i];
        // u only enters dg; it is not read when the gate gradient is skipped.
        b[k].raw = dg ? uv[i] : make_uint4(0u, 0u, 0u, 0u);
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t i = base + k * stride;
      if (i < nvec) {
        Pack<T> out_g, out_u;
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          const float gf = ToFloat(a[k].v[j]);
          const float dyf = ToFloat(d[k].v[j]);
          const float sig = Sigmoid<T>(gf);
          out_g.v[j] = FromFloat<T>(GateGrad(gf, ToFloat(b[k].v[j]), dyf, sig));
          out_u.v[j] = FromFloat<T>(UpGrad(gf, dyf, sig));
        }
        if (dg) dgv[i] = out_g.raw;
        if (du) duv[i] = out_u.raw;
      }
    }
  }
  for (int64_t i = nvec * kN + tid; i < numel; i += stride) {
    const float gf = ToFloat(g[i]);
    const float dyf = ToFloat(dy[i]);
    const float sig = Sigmoid<T>(gf);
    if (dg) dg[i] = FromFloat<T>(GateGrad(gf, ToFloat(u[i]), dyf, sig));
    if (du) du[i] = FromFloat<T>(UpGrad(gf, dyf, sig));
  }
}

// ------------------------------------------------------------ scalar path --

template <typename T>
__global__ void swiglu_forward_kernel(const T* __restrict__ g, const T* __restrict__ u,
                                      T* __restrict__ y, int64_t numel) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < numel;
       i += stride) {
    y[i] = FromFloat<T>(SwiGluValue<T>(ToFloat(g[i]), ToFloat(u[i])));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* __restrict__ g, const T* __restrict__ u,
                                       const T* __restrict__ dy, T* __restrict__ dg,
                                       T* __restrict__ du, int64_t numel) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < numel;
       i += stride) {
    const float gf = ToFloat(g[i]);
    const float dyf = ToFloat(dy[i]);
    const float sig = Sigmoid<T>(gf);
    if (dg) dg[i] = FromFloat<T>(GateGrad(gf, ToFloat(u[i]), dyf, sig));
    if (du) du[i] = FromFloat<T>(UpGrad(gf, dyf, sig));
  }
}

// ---------------------------------------------------------------- launch --

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// One resident wave of `kernel` (SMs x blocks per SM), or fewer blocks when
// `threads` threads cover the work; at least one block.
template <typename Kernel>
unsigned GridFor(Kernel kernel, int64_t threads) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) !=
          cudaSuccess ||
      per_sm < 1) {
    (void)cudaGetLastError();  // a failed query is not a launch error; guess instead
    per_sm = 4;
  }
  const int64_t wave = static_cast<int64_t>(cuda::SmCount()) * per_sm;
  const int64_t needed = (threads + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(wave, needed)));
}

// Threads that have work in the vector kernels: kUnroll vectors each per pass.
template <typename T>
int64_t VecThreads(int64_t numel) {
  return (numel / Pack<T>::kN + kUnroll - 1) / kUnroll;
}

template <typename T>
void LaunchForward(const SwiGluParams& p, const void* g, const void* u, void* y,
                   cudaStream_t stream) {
  if (p.numel <= 0) return;
  auto gt = static_cast<const T*>(g);
  auto ut = static_cast<const T*>(u);
  auto yt = static_cast<T*>(y);
  if (Aligned16(g) && Aligned16(u) && Aligned16(y)) {
    const unsigned grid = GridFor(swiglu_forward_vec_kernel<T>, VecThreads<T>(p.numel));
    swiglu_forward_vec_kernel<T><<<grid, kThreads, 0, stream>>>(gt, ut, yt, p.numel);
  } else {
    const unsigned grid = GridFor(swiglu_forward_kernel<T>, p.numel);
    swiglu_forward_kernel<T><<<grid, kThreads, 0, stream>>>(gt, ut, yt, p.numel);
  }
}

template <typename T>
void LaunchBackward(const SwiGluParams& p, const void* g, const void* u, const void* dy,
                    void* dg, void* du, cudaStream_t stream) {
  if (p.numel <= 0 || (dg == nullptr && du == nullptr)) return;
  auto gt = static_cast<const T*>(g);
  auto ut = static_cast<const T*>(u);
  auto dyt = static_cast<const T*>(dy);
  auto dgt = static_cast<T*>(dg);
  auto dut = static_cast<T*>(du);
  const bool aligned = Aligned16(g) && Aligned16(dy) && (dg == nullptr || Aligned16(u)) &&
                       (dg == nullptr || Aligned16(dg)) && (du == nullptr || Aligned16(du));
  if (aligned) {
    const unsigned grid = GridFor(swiglu_backward_vec_kernel<T>, VecThreads<T>(p.numel));
    swiglu_backward_vec_kernel<T><<<grid, kThreads, 0, stream>>>(gt, ut, dyt, dgt, dut, p.numel);
  } else {
    const unsigned grid = GridFor(swiglu_backward_kernel<T>, p.numel);
    swiglu_backward_kernel<T><<<grid, kThreads, 0, stream>>>(gt, ut, dyt, dgt, dut, p.numel);
  }
}

}  // namespace

void SwiGluForwardCuda(const SwiGluParams& p, const void* g, const void* u, void* y,
                       void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) { LaunchForward<decltype(tag)>(p, g, u, y, s); });
}

void SwiGluBackwardCuda(const SwiGluParams& p, const void* g, const void* u, const void* dy,
                        void* dg, void* du, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) {
    LaunchBackward<decltype(tag)>(p, g, u, dy, dg, du, s);
  });
}

}  // namespace foak

// Device helpers shared by the .cu files (no torch headers): conversions
// between storage types and fp32, block-wide reductions, and the dispatch from
// ScalarKind to a storage type. Every kernel computes in fp32 registers and
// rounds once when it stores.
#ifndef FOAK_KERNELS_COMMON_CUDA_UTIL_CUH_
#define FOAK_KERNELS_COMMON_CUDA_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/common/scalar_kind.h"

namespace foak {
namespace cuda {

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

// 16 bytes of T, loaded and stored as one vector (uint4) and read as kN
// elements: the unit of the memory-bound kernels' vectorised paths.
template <typename T>
struct Pack {
  static constexpr int kN = 16 / sizeof(T);
  union {
    uint4 raw;
    T v[kN];
  };
};

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
  static constexpr float kIdentity = 0.0f;
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
  static constexpr float kIdentity = -3.402823466e38f;
};

template <typename Op>
__device__ __forceinline__ float WarpReduce(float v, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Reduction of `v` over a block of kBlock threads (a multiple of 32, at most
// 1024); every thread gets the result. Safe to call repeatedly in one kernel.
template <int kBlock, typename Op>
__device__ float BlockReduce(float v, Op op) {
  static_assert(kBlock % 32 == 0 && kBlock <= 1024, "block size");
  __shared__ float partial[kBlock / 32];
  __shared__ float total;
  v = WarpReduce(v, op);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < kBlock / 32 ? partial[lane] : Op::kIdentity;
    s = WarpReduce(s, op);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // partial/total are reused by the next call
  return result;
}

template <int kBlock>
__device__ __forceinline__ float BlockSum(float v) { return BlockReduce<kBlock>(v, SumOp()); }
template <int kBlock>
__device__ __forceinline__ float BlockMax(float v) { return BlockReduce<kBlock>(v, MaxOp()); }

// Number of SMs of the current device (132 on H100/H200 SXM when unknown).
inline int SmCount() {
  int device = 0, sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) {
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  }
  return sms;
}

}  // namespace cuda
}  // namespace foak

// Calls F.template operator()<T>() with T the storage type of `kind`:
//   FOAK_DISPATCH_KIND(p.kind, [&](auto tag) { using T = decltype(tag); ... });
#define FOAK_DISPATCH_KIND(kind, ...)                                   \
  do {                                                                  \
    auto foak_dispatch_fn = __VA_ARGS__;                                \
    switch (kind) {                                                     \
      case ::foak::ScalarKind::kF32: foak_dispatch_fn(float()); break;  \
      case ::foak::ScalarKind::kBF16: foak_dispatch_fn(__nv_bfloat16()); break; \
      case ::foak::ScalarKind::kF16: foak_dispatch_fn(__half()); break; \
    }                                                                   \
  } while (0)

#endif  // FOAK_KERNELS_COMMON_CUDA_UTIL_CUH_

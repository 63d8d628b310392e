// CUDA NF4 on raw pointers (no torch headers; see nf4.h for the format).
//
// Quantise runs once per weight at load time, so it is written for clarity
// and exact agreement with the reference rather than speed: one warp per
// block of 64 (two elements per lane, a shuffle max for absmax, one packed
// byte per lane). Double quantisation is three small launches that keep the
// reference's summation order: one thread per group sums its 256 scales in
// double, one thread sums the group sums (a few thousand for the largest
// Llama weight) and writes the offset, then one 256-thread CTA per group
// takes the max of |absmax - offset| and writes the 8-bit codes.
//
// Dequantise runs twice per linear per step (forward and backward), so it is
// the kernel that must run at memory speed. It reads 0.5 byte per element
// plus the scales and writes 2 (bf16/fp16) or 4 (fp32): each lane loads 4
// packed bytes (8 codes, one uint32) and stores 8 outputs as one (16-bit) or
// two (fp32) 16-byte vectors, kUnroll chunks loaded before any is computed,
// in a grid-stride loop over one resident wave. The 16 code values sit in
// shared memory (16 distinct words in 16 banks: no conflicts); 8 consecutive
// lanes share one block's scale (a broadcast load). With double quantisation
// each lane rebuilds its block's scale from the byte, the group scale and the
// offset with __fmul_rn/__fadd_rn, exactly as the reference does.
// Measured on an H200 (14336x4096 to bf16, 150 MB moved, 117 MB of it
// written): 0.050-0.055 ms, 2.7-3.0 TB/s counting reads and writes, 64-71% of
// the 4.2 TB/s copy figure -- but the kernel is write-bound, and writing the
// output alone (fill_) takes 0.042 ms, so it runs at 80-85% of what its
// writes allow. Next to the GEMM that consumes W (0.62 ms at N = 4096) it
// costs 4-9%.
//
// Exactness: correctly rounded __fdiv_rn / __fmul_rn / __fadd_rn (never
// contracted to FMA), double adds for the mean, fmaxf for the maxima (exact),
// round-to-nearest-even conversions to bf16/fp16 -- bit-identical to the CPU
// reference. The build uses no --use_fast_math, so subnormals are kept.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/common/cuda_util.cuh"
#include "kernels/nf4/nf4.h"

namespace foak {
namespace {

using cuda::FromFloat;
using cuda::Pack;
using cuda::ToFloat;

constexpr int kThreads = 256;
constexpr int kWarpsPerCta = kThreads / 32;
// Dequantise: each lane takes chunks of kChunkBytes packed bytes (2 x that
// many outputs), kUnroll of them loaded before any is decoded. Measured on an
// H200 (14336x4096 to bf16): 4-byte chunks x 4 = 0.050-0.053 ms; x 1 or x 8
// the same; 8-byte chunks x 2 or x 4 0.063-0.071 ms; 16-byte chunks
// 0.088-0.116 ms (fewer lanes in flight per byte written).
constexpr int kChunkBytes = 4;
constexpr int kUnroll = 4;

// ------------------------------------------------------------- quantise --

// One warp per NF4 block: lane l holds elements 2l and 2l + 1 and writes byte l.
template <typename T>
__global__ void nf4_quantize_kernel(const T* __restrict__ w, uint8_t* __restrict__ packed,
                                    float* __restrict__ absmax, int64_t blocks) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerCta;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
       b < blocks; b += warps) {  // warp-uniform
    const int64_t i = b * kNf4BlockSize + 2 * lane;
    const float x0 = ToFloat(w[i]);
    const float x1 = ToFloat(w[i + 1]);
    const float m = cuda::WarpReduce(fmaxf(fabsf(x0), fabsf(x1)), cuda::MaxOp());
    packed[b * (kNf4BlockSize / 2) + lane] =
        static_cast<uint8_t>(Nf4QuantizeValue(x0, m) << 4 | Nf4QuantizeValue(x1, m));
    if (lane == 0) absmax[b] = m;
  }
}

// ---------------------------------------------------- double quantise --

// group_sum[g] = absmax[256g] + ... in double, left to right.
__global__ void nf4_group_sum_kernel(const float* __restrict__ absmax, int64_t blocks,
                                     double* __restrict__ group_sum, int64_t groups) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += stride) {
    const int64_t begin = g * kNf4GroupSize;
    const int64_t end = begin + kNf4GroupSize < blocks ? begin + kNf4GroupSize : blocks;
    double s = 0.0;
    for (int64_t j = begin; j < end; ++j) s = __dadd_rn(s, static_cast<double>(absmax[j]));
    group_sum[g] = s;
  }
}

// One thread: offset = fp32((sum of the group sums, left to right) / blocks).
__global__ void nf4_offset_kernel(const double* __restrict__ group_sum, int64_t groups,
                                  int64_t blocks, float* __restrict__ offset) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double total = 0.0;
  for (int64_t g = 0; g < groups; ++g) total = __dadd_rn(total, group_sum[g]);
  *offset = __double2float_rn(__ddiv_rn(total, static_cast<double>(blocks)));
}

// One CTA of kNf4GroupSize threads per group: thread t owns block 256g + t.
__global__ void nf4_group_quantize_kernel(const float* __restrict__ absmax, int64_t blocks,
                                          int64_t groups, const float* __restrict__ offset,
                                          uint8_t* __restrict__ absmax_q,
                                          float* __restrict__ absmax_scale) {
  const float off = *offset;
  for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {  // CTA-uniform
    const int64_t j = g * kNf4GroupSize + threadIdx.x;
    const float c = j < blocks ? __fsub_rn(absmax[j], off) : 0.0f;
    const float m = cuda::BlockMax<kNf4GroupSize>(fabsf(c));
    const float scale = Nf4AbsmaxScale(m);
    if (j < blocks) absmax_q[j] = Nf4QuantizeAbsmax(c, scale);
    if (threadIdx.x == 0) absmax_scale[g] = scale;
  }
}

// ----------------------------------------------------------- dequantise --

__device__ __forceinline__ void LoadCodes(float* codes) {
  if (threadIdx.x < 16) codes[threadIdx.x] = Nf4CodeValue(threadIdx.x);
  __syncthreads();
}

// The dequantised scale of block b.
template <bool kDouble>
__device__ __forceinline__ float BlockScale(const Nf4Scales& s, int64_t b, float offset) {
  if constexpr (kDouble) {
    return Nf4DequantizeAbsmax(s.absmax_q[b], s.absmax_scale[b / kNf4GroupSize], offset);
  } else {
    return s.absmax[b];
  }
}

// Packed bytes of one chunk, loaded as one vector of kBytes.
template <int kBytes>
struct ChunkVec;
template <>
struct ChunkVec<4> {
  using Type = uint32_t;
};
template <>
struct ChunkVec<8> {
  using Type = uint2;
};
template <>
struct ChunkVec<16> {
  using Type = uint4;
};

// Vector path: packed kBytes-aligned, out 16-byte aligned; chunks = numel /
// (2 kBytes). A chunk (kBytes bytes, 2 kBytes outputs) lies inside one
// 64-element block (32 bytes), so it has one scale.
template <typename T, bool kDouble, int kBytes, int kUnrollN>
__global__ void nf4_dequantize_vec_kernel(const uint8_t* __restrict__ packed, Nf4Scales s,
                                          T* __restrict__ out, int64_t chunks) {
  __shared__ float codes[16];
  LoadCodes(codes);
  const float offset = kDouble ? *s.absmax_offset : 0.0f;
  using V = typename ChunkVec<kBytes>::Type;
  constexpr int kOut = 2 * kBytes;                         // outputs per chunk
  constexpr int kStores = kOut * static_cast<int>(sizeof(T)) / 16;  // uint4 stores per chunk
  const V* pv = reinterpret_cast<const V*>(packed);
  uint4* ov = reinterpret_cast<uint4*>(out);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  for (int64_t base = tid; base < chunks; base += kUnrollN * stride) {
    // Codes and scales of every chunk are loaded before any is decoded, so
    // their latencies overlap.
    union Raw {
      V v;
      uint32_t w[kBytes / 4];
    } raw[kUnrollN];
    float a[kUnrollN];
#pragma unroll
    for (int u = 0; u < kUnrollN; ++u) {
      const int64_t c = base + u * stride;
      if (c < chunks) {
        raw[u].v = pv[c];
        a[u] = BlockScale<kDouble>(s, c / (kNf4BlockSize / 2 / kBytes), offset);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnrollN; ++u) {
      const int64_t c = base + u * stride;
      if (c < chunks) {
        union {
          uint4 v[kStores];
          T e[kOut];
        } o;
#pragma unroll
        for (int k = 0; k < kBytes; ++k) {
          // Little-endian: byte k of the chunk is byte k % 4 of word k / 4.
          const uint32_t byte = (raw[u].w[k / 4] >> (8 * (k % 4))) & 0xFFu;
          o.e[2 * k] = FromFloat<T>(__fmul_rn(codes[byte >> 4], a[u]));
          o.e[2 * k + 1] = FromFloat<T>(__fmul_rn(codes[byte & 15u], a[u]));
        }
#pragma unroll
        for (int k = 0; k < kStores; ++k) ov[c * kStores + k] = o.v[k];
      }
    }
  }
}

// Byte path for unaligned pointers: one packed byte (two outputs) per step.
template <typename T, bool kDouble>
__global__ void nf4_dequantize_kernel(const uint8_t* __restrict__ packed, Nf4Scales s,
                                      T* __restrict__ out, int64_t nbytes) {
  __shared__ float codes[16];
  LoadCodes(codes);
  const float offset = kDouble ? *s.absmax_offset : 0.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < nbytes;
       i += stride) {
    const float a = BlockScale<kDouble>(s, i / (kNf4BlockSize / 2), offset);
    const uint8_t byte = packed[i];
    out[2 * i] = FromFloat<T>(__fmul_rn(codes[byte >> 4], a));
    out[2 * i + 1] = FromFloat<T>(__fmul_rn(codes[byte & 15], a));
  }
}

// ---------------------------------------------------------------- launch --

bool AlignedTo(const void* ptr, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// One resident wave of `kernel` at kThreads per CTA, or fewer CTAs when
// `ctas` cover the work; at least one.
template <typename Kernel>
unsigned GridFor(Kernel kernel, int64_t ctas) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) !=
          cudaSuccess ||
      per_sm < 1) {
    (void)cudaGetLastError();  // a failed query is not a launch error; guess instead
    per_sm = 4;
  }
  const int64_t wave = static_cast<int64_t>(cuda::SmCount()) * per_sm;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(wave, ctas)));
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
void LaunchQuantize(const Nf4Params& p, const void* w, uint8_t* packed, float* absmax,
                    cudaStream_t stream) {
  const int64_t blocks = Nf4Blocks(p.numel);
  const unsigned grid = GridFor(nf4_quantize_kernel<T>, CeilDiv(blocks, kWarpsPerCta));
  nf4_quantize_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(w), packed,
                                                         absmax, blocks);
}

template <typename T, bool kDouble, int kBytes, int kUnrollN>
void LaunchVec(const Nf4Params& p, const uint8_t* packed, const Nf4Scales& s, T* o,
               cudaStream_t stream) {
  const int64_t chunks = p.numel / (2 * kBytes);
  auto kernel = nf4_dequantize_vec_kernel<T, kDouble, kBytes, kUnrollN>;
  const unsigned grid = GridFor(kernel, CeilDiv(CeilDiv(chunks, kUnrollN), kThreads));
  kernel<<<grid, kThreads, 0, stream>>>(packed, s, o, chunks);
}

template <typename T, bool kDouble>
void LaunchDequantize(const Nf4Params& p, const uint8_t* packed, const Nf4Scales& s, void* out,
                      cudaStream_t stream) {
  T* o = static_cast<T*>(out);
  if (AlignedTo(packed, kChunkBytes) && AlignedTo(out, 16)) {
    LaunchVec<T, kDouble, kChunkBytes, kUnroll>(p, packed, s, o, stream);
  } else {
    const int64_t nbytes = p.numel / 2;
    const unsigned grid =
        GridFor(nf4_dequantize_kernel<T, kDouble>, CeilDiv(nbytes, kThreads));
    nf4_dequantize_kernel<T, kDouble><<<grid, kThreads, 0, stream>>>(packed, s, o, nbytes);
  }
}

}  // namespace

void Nf4QuantizeCuda(const Nf4Params& p, const void* w, uint8_t* packed, float* absmax,
                     void* stream) {
  if (p.numel <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) {
    LaunchQuantize<decltype(tag)>(p, w, packed, absmax, st);
  });
}

void Nf4DoubleQuantizeCuda(int64_t blocks, const float* absmax, uint8_t* absmax_q,
                           float* absmax_scale, float* absmax_offset, double* workspace,
                           void* stream) {
  if (blocks <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  const int64_t groups = Nf4Groups(blocks);
  const unsigned sum_grid = static_cast<unsigned>(std::min<int64_t>(CeilDiv(groups, 128), 4096));
  nf4_group_sum_kernel<<<sum_grid, 128, 0, st>>>(absmax, blocks, workspace, groups);
  nf4_offset_kernel<<<1, 1, 0, st>>>(workspace, groups, blocks, absmax_offset);
  const unsigned q_grid = static_cast<unsigned>(std::min<int64_t>(groups, 65535));
  nf4_group_quantize_kernel<<<q_grid, kNf4GroupSize, 0, st>>>(absmax, blocks, groups,
                                                              absmax_offset, absmax_q,
                                                              absmax_scale);
}

void Nf4DequantizeCuda(const Nf4Params& p, const uint8_t* packed, const Nf4Scales& scales,
                       void* out, void* stream) {
  if (p.numel <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) {
    using T = decltype(tag);
    if (scales.double_quant()) {
      LaunchDequantize<T, true>(p, packed, scales, out, st);
    } else {
      LaunchDequantize<T, false>(p, packed, scales, out, st);
    }
  });
}

}  // namespace foak

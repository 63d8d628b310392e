// CUDA rope on raw pointers (no torch headers; see rope.h for the math).
//
// The op is memory-bound: forward reads and writes q and k once (in place),
// backward reads dy and writes dx; position_ids and inv_freq are a few bytes
// per token. So the kernel aims at the copy bandwidth:
//   - one block per token (grid.y splits very wide tokens into chunks); the
//     block first computes the token's d/2 cos/sin pairs into shared memory
//     (one sincosf per (token, i), shared by every q and k head of the token)
//     and then rotates all heads of the token;
//   - a work unit is kN pairs of one head: a 16-byte vector of the first half
//     and the matching vector of the second half (kN = 8 for bf16/fp16, 4 for
//     fp32). Heads whose half is not a multiple of kN, or pointers that are not
//     16-byte aligned, take the same kernel with kN = 1 (scalar loads);
//   - each thread issues the loads of its units before the table is built, so
//     their latency overlaps the sincosf and the barrier;
//   - up to 4 units per thread keep blocks at most 512 threads.
// The angle is __fmul_rn(float(position), inv_freq[i]) (the one fp32 product
// transformers forms, never fused into anything) and sincosf is the precise
// one: the build does not use --use_fast_math, and positions reach 1e5.
// Forward passes x == y (in place); every unit is read and written by the
// same thread, so the x and y pointers may alias and are not __restrict__.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/common/cuda_util.cuh"
#include "kernels/rope/rope.h"

namespace foak {
namespace {

using cuda::FromFloat;
using cuda::ToFloat;

constexpr int kMaxThreads = 512;
constexpr int kMaxUnitsPerThread = 4;
constexpr int64_t kMaxGridX = 2147483647;

// kN elements of T moved by one load or store: a 16-byte vector, or one element.
template <typename T, int kN>
struct Pack {
  static_assert(kN == 1 || kN * sizeof(T) == 16, "a pack is one element or 16 bytes");
  using Raw = std::conditional_t<kN == 1, T, uint4>;
  union {
    Raw raw;
    T v[kN];
  };
};

// y = rotation of x by sign * angle for every head of every token.
// x_q, y_q (tokens, q_heads, d); x_k, y_k (tokens, kv_heads, d);
// position_ids (tokens); inv_freq (d / 2). Dynamic shared memory: d floats.
//
// One unit per thread (the common case) is held to 32 registers so that six
// blocks of 320 threads fit an SM: measured on an H200, that took the bf16
// Llama-3-8B shape from 47.4 to 46.0 us (the copy of the same bytes: 42.8).
template <typename T, int kN, int K>
__global__ void __launch_bounds__(kMaxThreads, K == 1 ? 4 : 1)
    rope_kernel(const T* x_q, const T* x_k, T* y_q, T* y_k,
                const int64_t* __restrict__ position_ids, const float* __restrict__ inv_freq,
                int64_t tokens, int q_heads, int kv_heads, int head_dim, float sign) {
  using Raw = typename Pack<T, kN>::Raw;
  extern __shared__ float4 rope_table[];  // cos[half], then sign * sin[half]
  float* cos_t = reinterpret_cast<float*>(rope_table);
  const int half = head_dim >> 1;
  float* sin_t = cos_t + half;
  const int per_head = half / kN;  // units of one head
  const int units = (q_heads + kv_heads) * per_head;
  const int first = static_cast<int>(blockIdx.y) * K * static_cast<int>(blockDim.x) +
                    static_cast<int>(threadIdx.x);

  for (int64_t n = blockIdx.x; n < tokens; n += gridDim.x) {
    // 1. Issue this thread's loads (q heads first, then k heads).
    Pack<T, kN> a[K], b[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int u = first + k * static_cast<int>(blockDim.x);
      if (u < units) {
        const int head = u / per_head;
        const int j = u - head * per_head;
        const T* src = head < q_heads ? x_q + (n * q_heads + head) * head_dim
                                      : x_k + (n * kv_heads + (head - q_heads)) * head_dim;
        a[k].raw = reinterpret_cast<const Raw*>(src)[j];
        b[k].raw = reinterpret_cast<const Raw*>(src + half)[j];
      }
    }
    // 2. The token's cos/sin table, once per (token, i).
    const float position = static_cast<float>(position_ids[n]);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      float s, c;
      sincosf(__fmul_rn(position, inv_freq[i]), &s, &c);
      cos_t[i] = c;
      sin_t[i] = sign * s;
    }
    __syncthreads();
    // 3. Rotate in fp32, round once, store.
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int u = first + k * static_cast<int>(blockDim.x);
      if (u < units) {
        const int head = u / per_head;
        const int j = u - head * per_head;
        T* dst = head < q_heads ? y_q + (n * q_heads + head) * head_dim
                                : y_k + (n * kv_heads + (head - q_heads)) * head_dim;
        float c[kN], s[kN];
        if constexpr (kN % 4 == 0) {  // 16-byte shared loads of the table
#pragma unroll
          for (int e = 0; e < kN; e += 4) {
            const float4 cv = *reinterpret_cast<const float4*>(cos_t + j * kN + e);
            const float4 sv = *reinterpret_cast<const float4*>(sin_t + j * kN + e);
            c[e] = cv.x;
            c[e + 1] = cv.y;
            c[e + 2] = cv.z;
            c[e + 3] = cv.w;
            s[e] = sv.x;
            s[e + 1] = sv.y;
            s[e + 2] = sv.z;
            s[e + 3] = sv.w;
          }
        } else {
#pragma unroll
          for (int e = 0; e < kN; ++e) {
            c[e] = cos_t[j * kN + e];
            s[e] = sin_t[j * kN + e];
          }
        }
        Pack<T, kN> ya, yb;
#pragma unroll
        for (int e = 0; e < kN; ++e) {
          const float x1 = ToFloat(a[k].v[e]);
          const float x2 = ToFloat(b[k].v[e]);
          ya.v[e] = FromFloat<T>(x1 * c[e] - x2 * s[e]);
          yb.v[e] = FromFloat<T>(x2 * c[e] + x1 * s[e]);
        }
        reinterpret_cast<Raw*>(dst)[j] = ya.raw;
        reinterpret_cast<Raw*>(dst + half)[j] = yb.raw;
      }
    }
    __syncthreads();  // the next token rewrites the table
  }
}

// ---------------------------------------------------------------- launch --

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

struct Plan {
  int threads = 32;
  int per_thread = 1;   // units per thread: 1, 2 or 4
  unsigned chunks = 1;  // blocks per token (grid.y)
};

// The fewest units per thread that fit a token in one block of at most
// kMaxThreads; tokens wider than kMaxThreads * kMaxUnitsPerThread units are
// split over grid.y.
Plan PlanFor(int64_t units) {
  Plan plan;
  for (int k = 1; k <= kMaxUnitsPerThread; k *= 2) {
    const int64_t threads = (units + k - 1) / k;
    if (threads <= kMaxThreads) {
      plan.threads = static_cast<int>((threads + 31) / 32 * 32);
      plan.per_thread = k;
      return plan;
    }
  }
  const int64_t per_block = int64_t{kMaxThreads} * kMaxUnitsPerThread;
  plan.threads = kMaxThreads;
  plan.per_thread = kMaxUnitsPerThread;
  plan.chunks = static_cast<unsigned>((units + per_block - 1) / per_block);
  return plan;
}

template <typename T, int kN>
void LaunchUnits(const RopeParams& p, const T* x_q, const T* x_k, T* y_q, T* y_k,
                 const int64_t* position_ids, const float* inv_freq, float sign,
                 cudaStream_t stream) {
  const int64_t tokens = p.batch * p.seq;
  const int64_t half = p.head_dim / 2;
  const Plan plan = PlanFor((p.q_heads + p.kv_heads) * (half / kN));
  const dim3 grid(static_cast<unsigned>(tokens < kMaxGridX ? tokens : kMaxGridX), plan.chunks);
  const size_t smem = static_cast<size_t>(p.head_dim) * sizeof(float);
  const int qh = static_cast<int>(p.q_heads), kh = static_cast<int>(p.kv_heads);
  const int d = static_cast<int>(p.head_dim);
  switch (plan.per_thread) {
    case 1:
      rope_kernel<T, kN, 1><<<grid, plan.threads, smem, stream>>>(
          x_q, x_k, y_q, y_k, position_ids, inv_freq, tokens, qh, kh, d, sign);
      return;
    case 2:
      rope_kernel<T, kN, 2><<<grid, plan.threads, smem, stream>>>(
          x_q, x_k, y_q, y_k, position_ids, inv_freq, tokens, qh, kh, d, sign);
      return;
    default:
      rope_kernel<T, kN, 4><<<grid, plan.threads, smem, stream>>>(
          x_q, x_k, y_q, y_k, position_ids, inv_freq, tokens, qh, kh, d, sign);
  }
}

template <typename T>
void Launch(const RopeParams& p, const void* x_q, const void* x_k, void* y_q, void* y_k,
            const int64_t* position_ids, const float* inv_freq, float sign,
            cudaStream_t stream) {
  if (p.batch * p.seq == 0 || p.q_heads + p.kv_heads == 0 || p.head_dim < 2) return;
  // Pointers of a skipped tensor are never dereferenced.
  auto xq = p.q_heads > 0 ? static_cast<const T*>(x_q) : nullptr;
  auto xk = p.kv_heads > 0 ? static_cast<const T*>(x_k) : nullptr;
  auto yq = p.q_heads > 0 ? static_cast<T*>(y_q) : nullptr;
  auto yk = p.kv_heads > 0 ? static_cast<T*>(y_k) : nullptr;
  constexpr int kVec = 16 / sizeof(T);
  const bool vector = (p.head_dim / 2) % kVec == 0 && Aligned16(xq) && Aligned16(xk) &&
                      Aligned16(yq) && Aligned16(yk);
  if (vector) {
    LaunchUnits<T, kVec>(p, xq, xk, yq, yk, position_ids, inv_freq, sign, stream);
  } else {
    LaunchUnits<T, 1>(p, xq, xk, yq, yk, position_ids, inv_freq, sign, stream);
  }
}

}  // namespace

void RopeForwardCuda(const RopeParams& p, void* q, void* k, const int64_t* position_ids,
                     const float* inv_freq, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) {
    Launch<decltype(tag)>(p, q, k, q, k, position_ids, inv_freq, 1.0f, s);
  });
}

void RopeBackwardCuda(const RopeParams& p, const void* dy_q, const void* dy_k,
                      const int64_t* position_ids, const float* inv_freq, void* dq, void* dk,
                      void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(p.kind, [&](auto tag) {
    Launch<decltype(tag)>(p, dy_q, dy_k, dq, dk, position_ids, inv_freq, -1.0f, s);
  });
}

}  // namespace foak

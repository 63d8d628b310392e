// CUDA cross-entropy row kernel (see cross_entropy.h for the math). One block
// per row. Pass 1 streams the row once with a per-thread online max/sum of
// exp (so the row is read once for the statistics whatever V is: 256k
// vocabularies need no special case); block reductions give lse. Pass 2 reads
// the row again and writes the gradient; element j of the gradient replaces
// logits element j, which its own thread has just read, so in place needs no
// barrier. (logits and grad may alias: neither is __restrict__.)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/cuda_util.cuh"
#include "kernels/cross_entropy/cross_entropy.h"

namespace foak {
namespace {

using cuda::BlockMax;
using cuda::BlockSum;
using cuda::FromFloat;
using cuda::ToFloat;

constexpr int kThreads = 512;
constexpr float kNegInf = -3.402823466e38f;

struct RowMath {
  float scale, cap, inv_cap;
  __device__ __forceinline__ float T(float z) const {
    const float s = z * scale;
    return cap > 0.0f ? cap * tanhf(s * inv_cap) : s;
  }
};

__device__ __forceinline__ void OnlineAdd(float t, float& m, float& s) {
  if (t > m) {
    s = s * __expf(m - t) + 1.0f;
    m = t;
  } else {
    s += __expf(t - m);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_row_kernel(CrossEntropyParams p, const T* logits, int64_t ld,
                             const int64_t* __restrict__ labels, const float* grad_scale,
                             const float* row_scale, float* __restrict__ loss_rows,
                             float* __restrict__ z_rows, float* lse_rows, T* grad) {
  const int64_t row = blockIdx.x;
  const int64_t v = p.vocab;
  const T* z = logits + row * ld;
  const int64_t y = labels[row];
  const RowMath math{p.logit_scale, p.softcap, p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f};
  T* g = grad ? grad + row * ld : nullptr;

  if (y == p.ignore_index) {
    if (threadIdx.x == 0) {
      loss_rows[row] = 0.0f;
      z_rows[row] = 0.0f;
      if (lse_rows) lse_rows[row] = 0.0f;
    }
    if (g) {
      // Nothing of an ignored row is read, so plain stores are safe in place.
      for (int64_t j = threadIdx.x; j < v; j += kThreads) g[j] = FromFloat<T>(0.0f);
    }
    return;
  }

  // Pass 1: online max / sum of exp, and the sum of t for label smoothing.
  float m = kNegInf, s = 0.0f, sum_t = 0.0f;
  int64_t j = threadIdx.x;
  for (; j + 3 * kThreads < v; j += 4 * kThreads) {
    const float t0 = math.T(ToFloat(z[j]));
    const float t1 = math.T(ToFloat(z[j + kThreads]));
    const float t2 = math.T(ToFloat(z[j + 2 * kThreads]));
    const float t3 = math.T(ToFloat(z[j + 3 * kThreads]));
    OnlineAdd(t0, m, s);
    OnlineAdd(t1, m, s);
    OnlineAdd(t2, m, s);
    OnlineAdd(t3, m, s);
    sum_t += (t0 + t1) + (t2 + t3);
  }
  for (; j < v; j += kThreads) {
    const float t = math.T(ToFloat(z[j]));
    OnlineAdd(t, m, s);
    sum_t += t;
  }
  const float row_max = BlockMax<kThreads>(m);
  const float total = BlockSum<kThreads>(m == kNegInf ? 0.0f : s * __expf(m - row_max));
  const float lse = row_max + logf(total);
  const float tsum = p.label_smoothing > 0.0f ? BlockSum<kThreads>(sum_t) : 0.0f;
  const bool bad_label = y < 0 || y >= v;
  // Every thread reads t_y before any thread writes the gradient (pass 2 may
  // overwrite it in place); the barriers of the reductions above order it.
  const float t_y = bad_label ? 0.0f : math.T(ToFloat(z[y]));
  __syncthreads();

  if (threadIdx.x == 0) {
    const float eps = p.label_smoothing;
    const float zl = p.z_loss * lse * lse;
    const float loss = lse - (1.0f - eps) * t_y - eps / static_cast<float>(v) * tsum + zl;
    loss_rows[row] = bad_label ? __int_as_float(0x7fc00000) : loss;
    z_rows[row] = bad_label ? 0.0f : zl;
    if (lse_rows) lse_rows[row] = lse;
  }
  if (!g) return;

  // Pass 2: the gradient.
  const float factor = 1.0f + 2.0f * p.z_loss * lse;
  const float smooth = p.label_smoothing / static_cast<float>(v);
  const float on_label = 1.0f - p.label_smoothing;
  float gs = p.logit_scale * p.grad_multiplier * (grad_scale ? *grad_scale : 1.0f);
  if (row_scale) gs *= row_scale[row];
  if (bad_label) gs = 0.0f;
  for (int64_t k = threadIdx.x; k < v; k += kThreads) {
    const float t = math.T(ToFloat(z[k]));
    float d = __expf(t - lse) * factor - smooth;
    if (k == y) d -= on_label;
    if (math.cap > 0.0f) {
      const float r = t * math.inv_cap;
      d *= 1.0f - r * r;
    }
    g[k] = FromFloat<T>(d * gs);
  }
}

template <typename T>
__global__ void scale_kernel(T* data, int64_t n, const float* scale, int64_t row_len) {
  if (row_len == 0 && *scale == 1.0f) return;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    const float f = row_len > 0 ? scale[i / row_len] : *scale;
    data[i] = FromFloat<T>(ToFloat(data[i]) * f);
  }
}

}  // namespace

void ScaleByDeviceScalarCuda(ScalarKind kind, void* data, int64_t n, const float* scale,
                             int64_t row_len, void* stream) {
  if (n == 0) return;
  const int64_t want = (n + 255) / 256;
  const unsigned grid = static_cast<unsigned>(want < 4096 ? want : 4096);
  FOAK_DISPATCH_KIND(kind, [&](auto tag) {
    using T = decltype(tag);
    scale_kernel<T><<<grid, 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<T*>(data), n,
                                                                          scale, row_len);
  });
}

void CrossEntropyForwardCuda(const CrossEntropyParams& p, ScalarKind kind, const void* logits,
                             int64_t ld, const int64_t* labels, const float* grad_scale,
                             const float* row_scale, float* loss_rows, float* z_rows,
                             float* lse_rows, void* grad, void* stream) {
  if (p.rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  FOAK_DISPATCH_KIND(kind, [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_row_kernel<T><<<static_cast<unsigned>(p.rows), kThreads, 0, s>>>(
        p, static_cast<const T*>(logits), ld, labels, grad_scale, row_scale, loss_rows, z_rows,
        lse_rows, static_cast<T*>(grad));
  });
}

}  // namespace foak

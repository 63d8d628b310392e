// CUDA cross-entropy row kernel (see cross_entropy.h for the math). One block
// per row. Pass 1 streams the row once with a per-thread online max/sum of
// exp (so the row is read once for the statistics whatever V is: 256k
// vocabularies need no special case); block reductions give lse. Pass 2 reads
// the row again and writes the gradient, tile by tile. When the gradient
// narrows in place (fp32 logits -> bf16 gradient at the same row address),
// gradient element j lands on the bytes of logits element j/2, which is read
// in the same or an earlier tile; a barrier between each tile's reads and its
// writes makes that safe. (logits and grad may alias: neither is __restrict__.)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

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

template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_row_kernel(CrossEntropyParams p, const In* logits, int64_t in_ld,
                             const int64_t* __restrict__ labels, const float* grad_scale,
                             const float* row_scale, float* __restrict__ loss_rows,
                             float* __restrict__ z_rows, float* lse_rows, Out* grad,
                             int64_t out_ld, bool narrowing_in_place) {
  const int64_t row = blockIdx.x;
  const int64_t v = p.vocab;
  const In* z = logits + row * in_ld;
  const int64_t y = labels[row];
  const RowMath math{p.logit_scale, p.softcap, p.softcap > 0.0f ? 1.0f / p.softcap : 0.0f};
  Out* g = grad ? grad + row * out_ld : nullptr;

  if (y == p.ignore_index) {
    if (threadIdx.x == 0) {
      loss_rows[row] = 0.0f;
      z_rows[row] = 0.0f;
      if (lse_rows) lse_rows[row] = 0.0f;
    }
    if (g) {
      // Nothing of an ignored row is read, so plain stores are safe in place.
      for (int64_t j = threadIdx.x; j < v; j += kThreads) g[j] = FromFloat<Out>(0.0f);
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

  // Pass 2: the gradient, tile by tile.
  const float factor = 1.0f + 2.0f * p.z_loss * lse;
  const float smooth = p.label_smoothing / static_cast<float>(v);
  const float on_label = 1.0f - p.label_smoothing;
  float gs = p.logit_scale * p.grad_multiplier * (grad_scale ? *grad_scale : 1.0f);
  if (row_scale) gs *= row_scale[row];
  if (bad_label) gs = 0.0f;
  for (int64_t base = 0; base < v; base += kThreads) {
    const int64_t k = base + threadIdx.x;
    float val = 0.0f;
    if (k < v) {
      const float t = math.T(ToFloat(z[k]));
      float d = __expf(t - lse) * factor - smooth;
      if (k == y) d -= on_label;
      if (math.cap > 0.0f) {
        const float r = t * math.inv_cap;
        d *= 1.0f - r * r;
      }
      val = d * gs;
    }
    if (narrowing_in_place) __syncthreads();
    if (k < v) g[k] = FromFloat<Out>(val);
  }
}

template <typename In, typename Out>
void Launch(const CrossEntropyParams& p, const void* logits, int64_t in_ld, const int64_t* labels,
            const float* grad_scale, const float* row_scale, float* loss_rows, float* z_rows,
            float* lse_rows, void* grad, int64_t out_ld, cudaStream_t stream) {
  const bool narrowing = grad != nullptr && static_cast<const void*>(grad) == logits &&
                         sizeof(Out) < sizeof(In);
  cross_entropy_row_kernel<In, Out><<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(
      p, static_cast<const In*>(logits), in_ld, labels, grad_scale, row_scale, loss_rows, z_rows,
      lse_rows, static_cast<Out*>(grad), out_ld, narrowing);
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

void CrossEntropyForwardCuda(const CrossEntropyParams& p, ScalarKind in_kind, const void* logits,
                             int64_t in_ld, const int64_t* labels, const float* grad_scale,
                             const float* row_scale, float* loss_rows, float* z_rows,
                             float* lse_rows, ScalarKind out_kind, void* grad, int64_t out_ld,
                             void* stream) {
  if (p.rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (in_kind == ScalarKind::kF32) {
    FOAK_DISPATCH_KIND(out_kind, [&](auto tag) {
      Launch<float, decltype(tag)>(p, logits, in_ld, labels, grad_scale, row_scale, loss_rows,
                                   z_rows, lse_rows, grad, out_ld, s);
    });
    return;
  }
  // Narrower logits: the gradient must have their kind.
  if (grad != nullptr && out_kind != in_kind) {
    throw std::invalid_argument(
        "cross_entropy: a bf16/fp16 logits buffer takes a gradient of its own dtype");
  }
  FOAK_DISPATCH_KIND(in_kind, [&](auto tag) {
    using T = decltype(tag);
    Launch<T, T>(p, logits, in_ld, labels, grad_scale, row_scale, loss_rows, z_rows, lse_rows,
                 grad, out_ld, s);
  });
}

}  // namespace foak

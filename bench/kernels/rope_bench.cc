// rope: the fused op against the plain LibTorch composite, forward and
// backward, at the Llama-3-8B attention shape B=4, T=2048, 32 q heads, 8 kv
// heads, head_dim 128.
//
// The composite is llama.cc's: RotaryEmbeddingImpl::forward (freqs = float
// positions x inv_freq, cat, cos, sin) and AttentionImpl::forward (cos/sin
// cast to the dtype, q * cos + rotate_half(q) * sin on the (B, H, T, d) views,
// the same for k). "composite" includes the table, since the fused op computes
// cos/sin itself; "composite-cached" leaves it out, as the model computes the
// table once per step for all layers.
// Bytes counted are the minimum: read and write q and k once, plus the int64
// position ids. Both impls start from non-leaf q, k (clones of the leaves,
// made outside the timed region): the fused op rotates in place.
// "fwd" and "bwd" time one call from an idle GPU, so the op's host time
// (checks, the autograd Function, the backward engine) counts in full; the
// "-queued" rows time kQueued calls issued back to back, per call, which is
// closer to a model step where the host runs ahead of the GPU.
#include <torch/autograd.h>

#include <cstdio>
#include <string>
#include <utility>

#include "bench/kernels/bench_util.h"
#include "kernels/rope/rope_op.h"

namespace foak::bench {
namespace {

constexpr int kQueued = 20;

struct Shape {
  int64_t b, t, q_heads, kv_heads, d;
};

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// pos (B, T) -> cos, sin (B, T, d) fp32.
std::pair<at::Tensor, at::Tensor> Tables(const at::Tensor& pos, const at::Tensor& inv_freq) {
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq.to(at::kFloat);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

// q (B, T, Hq * d), k (B, T, Hkv * d) -> rotated (B, H, T, d) views.
std::pair<at::Tensor, at::Tensor> CompositeApply(const Shape& s, const at::Tensor& q3,
                                                 const at::Tensor& k3, const at::Tensor& cos,
                                                 const at::Tensor& sin) {
  at::Tensor q = q3.view({s.b, s.t, s.q_heads, s.d}).transpose(1, 2);
  at::Tensor k = k3.view({s.b, s.t, s.kv_heads, s.d}).transpose(1, 2);
  at::Tensor c = cos.to(q3.scalar_type()).unsqueeze(1);  // (B, 1, T, d)
  at::Tensor sn = sin.to(q3.scalar_type()).unsqueeze(1);
  return {q * c + RotateHalf(q) * sn, k * c + RotateHalf(k) * sn};
}

void BenchOne(const BenchOptions& o, const Shape& s, at::ScalarType dtype) {
  auto opts = at::TensorOptions().dtype(dtype).device(o.device);
  at::Tensor q_leaf = at::randn({s.b, s.t, s.q_heads * s.d}, opts).requires_grad_(true);
  at::Tensor k_leaf = at::randn({s.b, s.t, s.kv_heads * s.d}, opts).requires_grad_(true);
  at::Tensor dy_q = at::randn({s.b, s.t, s.q_heads * s.d}, opts);
  at::Tensor dy_k = at::randn({s.b, s.t, s.kv_heads * s.d}, opts);
  at::Tensor pos = at::arange(s.t, opts.dtype(at::kLong)).expand({s.b, s.t}).contiguous();
  at::Tensor inv_freq =
      at::pow(500000.0, at::arange(0, s.d, 2, opts.dtype(at::kLong)).to(at::kFloat) / s.d)
          .reciprocal();
  auto [cos_cached, sin_cached] = Tables(pos, inv_freq);

  const double elems = static_cast<double>(s.b * s.t * (s.q_heads + s.kv_heads) * s.d);
  const double bytes = 2.0 * elems * at::elementSize(dtype) + 8.0 * s.b * s.t;
  const std::string shape = "B=" + std::to_string(s.b) + " T=" + std::to_string(s.t) +
                            " Hq=" + std::to_string(s.q_heads) +
                            " Hkv=" + std::to_string(s.kv_heads) + " d=" + std::to_string(s.d);
  for (const std::string impl : {"composite", "composite-cached", "foak"}) {
    // Rotated q, k of the non-leaf inputs qa, ka (in place for foak).
    auto fwd = [&](const at::Tensor& qa, const at::Tensor& ka) -> std::pair<at::Tensor, at::Tensor> {
      if (impl == "foak") return ops::ApplyRope(qa, ka, pos, inv_freq, s.d);
      if (impl == "composite-cached") return CompositeApply(s, qa, ka, cos_cached, sin_cached);
      auto [cos, sin] = Tables(pos, inv_freq);
      return CompositeApply(s, qa, ka, cos, sin);
    };
    // The gradients in the layout of fwd's outputs (same memory).
    auto backward = [&](const std::pair<at::Tensor, at::Tensor>& y, bool retain) {
      const bool fused = impl == "foak";
      at::Tensor gq = fused ? dy_q : dy_q.view({s.b, s.t, s.q_heads, s.d}).transpose(1, 2);
      at::Tensor gk = fused ? dy_k : dy_k.view({s.b, s.t, s.kv_heads, s.d}).transpose(1, 2);
      torch::autograd::backward({y.first, y.second}, {gq, gk}, retain);
    };
    auto reset_grads = [&] {
      q_leaf.mutable_grad() = at::Tensor();
      k_leaf.mutable_grad() = at::Tensor();
    };

    at::Tensor qa = q_leaf.clone(), ka = k_leaf.clone();
    Row row{"rope", shape, DtypeName(dtype), "fwd", impl};
    row.ms = MedianMs(o, [&] { fwd(qa, ka); });
    row.bytes = bytes;
    row.extra_gib = PeakExtraGiB(o, [&] { fwd(qa, ka); });
    Report(o, row);
    row.pass = "fwd-queued";
    row.extra_gib = -1;
    row.ms = MedianMs(o, [&] {
      for (int i = 0; i < kQueued; ++i) fwd(qa, ka);
    }) / kQueued;
    Report(o, row);

    qa = q_leaf.clone();
    ka = k_leaf.clone();
    auto y = fwd(qa, ka);
    row.pass = "bwd";
    row.ms = MedianMs(o, [&] {
      reset_grads();
      backward(y, /*retain=*/true);
    });
    Report(o, row);
    row.pass = "bwd-queued";
    row.ms = MedianMs(o, [&] {
      for (int i = 0; i < kQueued; ++i) {
        reset_grads();
        backward(y, /*retain=*/true);
      }
    }) / kQueued;
    Report(o, row);

    row.pass = "fwd+bwd";
    row.bytes = -1;
    row.ms = -1;
    y = {};
    reset_grads();
    qa = q_leaf.clone();
    ka = k_leaf.clone();
    row.extra_gib = PeakExtraGiB(o, [&] { backward(fwd(qa, ka), /*retain=*/false); });
    Report(o, row);
  }
}

}  // namespace
}  // namespace foak::bench

int main(int argc, char** argv) {
  using namespace foak::bench;
  const BenchOptions o = ParseBenchArgs(argc, argv);
  PrintHeader();
  const Shape s = o.smoke ? Shape{2, 16, 4, 2, 16} : Shape{4, 2048, 32, 8, 128};
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    if (o.smoke && dtype == at::kBFloat16 && !o.device.is_cuda()) continue;
    if (!Selected(o, DtypeName(dtype))) continue;
    BenchOne(o, s, dtype);
  }
  return 0;
}

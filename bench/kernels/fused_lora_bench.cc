// fused_lora: the fused LoRA projection and LoRA MLP against the composite
// the model runs without the op (worker/lora/lora_layer.h, PEFT's layout: a
// frozen bf16 base, fp32 adapters, the input cast to fp32 before A), at the
// Llama-3-8B shapes: q_proj 4096 -> 4096 and the MLP 4096 -> 14336 -> 4096,
// N = 4096 tokens (2 x 2048), r = 16.
//
// What matters here is memory more than time: the "held" column is what a
// forward pass leaves allocated for backward (plus its output), which is what
// limits batch size and sequence length in LoRA training without activation
// checkpointing. Napkin math per token for the MLP (see fused_lora_op.h): the
// composite holds 2 fp32 copies of x (8H), g, silu(g), u (6I) and an fp32 copy
// of h (4I), plus bf16 outputs; the fused node holds x (2H), g and u (4I).
// FLOPs counted: 2 N in out per base GEMM (one forward, one backward for dx:
// the frozen base has no weight gradient) plus 2 N r (in + out) per adapter
// GEMM pair (one pair forward, three backward: dy B with dx's share, dA, dB).
#include <torch/autograd.h>

#include <cstdio>
#include <string>

#include "bench/kernels/bench_util.h"
#include "kernels/fused_lora/fused_lora_op.h"

namespace foak::bench {
namespace {

struct Proj {
  at::Tensor w;     // (out, in) frozen, bf16
  at::Tensor a, b;  // fp32 trainable
  double scale = 2.0;
};

Proj MakeProj(const BenchOptions& o, int64_t in, int64_t out, int64_t r, at::ScalarType dtype) {
  auto opts = at::TensorOptions().device(o.device);
  Proj p;
  p.w = (at::randn({out, in}, opts) * 0.02).to(dtype);
  // fp32 adapters over any base, as PEFT keeps them (LoraParamDtype).
  p.a = (at::randn({r, in}, opts.dtype(at::kFloat)) * 0.02).requires_grad_(true);
  p.b = (at::randn({out, r}, opts.dtype(at::kFloat)) * 0.02).requires_grad_(true);
  return p;
}

ops::LoraProjection View(const Proj& p) {
  ops::LoraProjection v;
  at::Tensor w = p.w;
  v.base_weight = [w](at::ScalarType dtype) { return w.scalar_type() == dtype ? w : w.to(dtype); };
  v.lora_a = p.a;
  v.lora_b = p.b;
  v.scale = p.scale;
  return v;
}

// The composite LoRA layer, as worker/lora/lora_layer.cc computes it.
at::Tensor CompositeLinear(const at::Tensor& x, const Proj& p) {
  at::Tensor base = at::linear(x, p.w);
  at::Tensor h = x.to(p.a.scalar_type());
  at::Tensor delta = at::linear(at::linear(h, p.a), p.b);
  return (base + delta * p.scale).to(base.scalar_type());
}

double Flops(int64_t n, int64_t in, int64_t out, int64_t r) {
  const double nd = static_cast<double>(n);
  return 2.0 * 2.0 * nd * in * out + 4.0 * 2.0 * nd * r * (in + out);
}

void ClearGrads(std::initializer_list<const Proj*> ps, at::Tensor& x) {
  for (const Proj* p : ps) {
    p->a.mutable_grad() = at::Tensor();
    p->b.mutable_grad() = at::Tensor();
  }
  x.mutable_grad() = at::Tensor();
}

void Measure(const BenchOptions& o, const std::string& op, const std::string& shape,
             at::ScalarType dtype, const char* impl, double flops,
             const std::function<at::Tensor()>& fwd, const at::Tensor& dy,
             const std::function<void()>& clear) {
  Row row{op, shape, DtypeName(dtype), "fwd+bwd", impl};
  row.ms = MedianMs(o, [&] {
    clear();
    fwd().backward(dy);
  });
  row.flops = flops;
  clear();
  row.extra_gib = PeakExtraGiB(o, [&] { fwd().backward(dy); });
  Report(o, row);
  clear();
  at::Tensor kept;
  Row held{op, shape, DtypeName(dtype), "fwd (held)", impl};
  held.extra_gib = HeldGiB(o, [&] { kept = fwd(); });
  kept = at::Tensor();
  Report(o, held);
}

void BenchLinear(const BenchOptions& o, int64_t n, int64_t h, int64_t r, at::ScalarType dtype) {
  auto opts = at::TensorOptions().dtype(dtype).device(o.device);
  Proj p = MakeProj(o, h, h, r, dtype);
  at::Tensor x = at::randn({n, h}, opts).requires_grad_(true);
  at::Tensor dy = at::randn({n, h}, opts);
  const std::string shape = "N=" + std::to_string(n) + " " + std::to_string(h) + "->" +
                            std::to_string(h) + " r=" + std::to_string(r);
  const ops::LoraProjection v = View(p);
  auto clear = [&] { ClearGrads({&p}, x); };
  Measure(o, "fused_lora_linear", shape, dtype, "composite", Flops(n, h, h, r),
          [&] { return CompositeLinear(x, p); }, dy, clear);
  Measure(o, "fused_lora_linear", shape, dtype, "foak", Flops(n, h, h, r),
          [&] { return ops::FusedLoraLinear(x, v); }, dy, clear);
}

void BenchMlp(const BenchOptions& o, int64_t n, int64_t h, int64_t inter, int64_t r,
              at::ScalarType dtype) {
  auto opts = at::TensorOptions().dtype(dtype).device(o.device);
  Proj gate = MakeProj(o, h, inter, r, dtype), up = MakeProj(o, h, inter, r, dtype),
       down = MakeProj(o, inter, h, r, dtype);
  at::Tensor x = at::randn({n, h}, opts).requires_grad_(true);
  at::Tensor dy = at::randn({n, h}, opts);
  const std::string shape = "N=" + std::to_string(n) + " H=" + std::to_string(h) +
                            " I=" + std::to_string(inter) + " r=" + std::to_string(r);
  const double flops = 2 * Flops(n, h, inter, r) + Flops(n, inter, h, r);
  const ops::LoraProjection vg = View(gate), vu = View(up), vd = View(down);
  auto clear = [&] { ClearGrads({&gate, &up, &down}, x); };
  Measure(o, "fused_lora_mlp", shape, dtype, "composite", flops,
          [&] {
            return CompositeLinear(at::silu(CompositeLinear(x, gate)) * CompositeLinear(x, up),
                                   down);
          },
          dy, clear);
  Measure(o, "fused_lora_mlp", shape, dtype, "foak", flops,
          [&] { return ops::FusedLoraMlp(x, vg, vu, vd); }, dy, clear);
}

}  // namespace
}  // namespace foak::bench

int main(int argc, char** argv) {
  using namespace foak::bench;
  const BenchOptions o = ParseBenchArgs(argc, argv);
  PrintHeader();
  const int64_t n = o.smoke ? 24 : 4096;
  const int64_t h = o.smoke ? 64 : 4096;
  const int64_t inter = o.smoke ? 176 : 14336;
  const int64_t r = o.smoke ? 4 : 16;
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    if (!o.device.is_cuda() && dtype == at::kBFloat16) continue;
    if (Selected(o, "linear " + DtypeName(dtype))) BenchLinear(o, n, h, r, dtype);
    if (Selected(o, "mlp " + DtypeName(dtype))) BenchMlp(o, n, h, inter, r, dtype);
  }
  return 0;
}

// swiglu: the fused kernel against the plain LibTorch composite
// at::silu(g) * u (what MlpImpl::forward computes between gate_proj/up_proj
// and down_proj), forward and backward, at the Llama-3-8B MLP shape
// N=8192 x I=14336. Bytes counted are the minimum: forward reads g and u and
// writes y (3 N I elements); backward reads g, u and dy and writes dg and du
// (5 N I). The composite moves more: forward 5 N I (silu writes silu(g), the
// product reads it back), backward 9 N I (dy * u, dy * silu(g), then silu's
// backward reads dy * u and g again), so at equal bandwidth the fused op can
// be at most 5/3 = 1.67x faster forward and 9/5 = 1.8x backward. It also
// holds one more N x I tensor (silu(g)) between the passes, which the fwd+bwd
// peak shows. The bwd row times autograd's backward() call, engine overhead
// included (about 0.05 ms on an H200, next to a 0.3 ms kernel in bf16).
#include <torch/autograd.h>

#include <cstdio>
#include <string>

#include "bench/kernels/bench_util.h"
#include "kernels/swiglu/swiglu_op.h"

namespace foak::bench {
namespace {

at::Tensor Composite(const at::Tensor& g, const at::Tensor& u) { return at::silu(g) * u; }

void BenchOne(const BenchOptions& o, int64_t n, int64_t inter, at::ScalarType dtype) {
  auto opts = at::TensorOptions().dtype(dtype).device(o.device);
  at::Tensor g = at::randn({n, inter}, opts).requires_grad_(true);
  at::Tensor u = at::randn({n, inter}, opts).requires_grad_(true);
  at::Tensor dy = at::randn({n, inter}, opts);
  const double s = static_cast<double>(at::elementSize(dtype));
  const double elems = static_cast<double>(n) * static_cast<double>(inter);
  const std::string shape = "N=" + std::to_string(n) + " I=" + std::to_string(inter);
  for (const char* impl : {"composite", "foak"}) {
    const bool fused = std::string(impl) == "foak";
    auto fwd = [&] { return fused ? ops::SwiGlu(g, u) : Composite(g, u); };
    Row row{"swiglu", shape, DtypeName(dtype), "fwd", impl};
    row.ms = MedianMs(o, [&] { fwd(); });
    row.bytes = s * 3.0 * elems;
    row.extra_gib = PeakExtraGiB(o, [&] { fwd(); });
    Report(o, row);

    at::Tensor y = fwd();
    row.pass = "bwd";
    row.ms = MedianMs(o, [&] {
      g.mutable_grad() = at::Tensor();
      u.mutable_grad() = at::Tensor();
      y.backward(dy, /*retain_graph=*/true);
    });
    row.bytes = s * 5.0 * elems;
    row.extra_gib = -1;
    Report(o, row);

    row.pass = "fwd+bwd";
    row.bytes = -1;
    row.ms = -1;
    g.mutable_grad() = at::Tensor();
    u.mutable_grad() = at::Tensor();
    y = at::Tensor();
    row.extra_gib = PeakExtraGiB(o, [&] { fwd().backward(dy); });
    Report(o, row);
  }
  g.mutable_grad() = at::Tensor();
  u.mutable_grad() = at::Tensor();
}

}  // namespace
}  // namespace foak::bench

int main(int argc, char** argv) {
  using namespace foak::bench;
  const BenchOptions o = ParseBenchArgs(argc, argv);
  PrintHeader();
  const int64_t n = o.smoke ? 64 : 8192;
  const int64_t inter = o.smoke ? 344 : 14336;
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    if (o.smoke && dtype == at::kBFloat16 && !o.device.is_cuda()) continue;
    if (!Selected(o, DtypeName(dtype))) continue;
    BenchOne(o, n, inter, dtype);
  }
  return 0;
}

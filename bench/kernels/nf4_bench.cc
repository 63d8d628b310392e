// NF4 (QLoRA base weights): the dequantise kernel's bandwidth, and Nf4Linear
// forward + backward against a frozen bf16 at::linear, at the Llama-3-8B
// linear shapes (W 4096x4096: q/o_proj, 14336x4096: gate/up_proj, 4096x14336:
// down_proj) with N = 4096 tokens.
//
// Napkin math. Dequantising W (out x in = E elements) into bf16 reads E/2
// bytes of codes plus E/64 * 4 (E/64 + E/16384 * 4 with double quantisation)
// of scales and writes 2E: 2.56 E bytes, 151 MB for 14336x4096, ~35 us at the
// H200's ~4.3 TB/s of copy bandwidth (reads + writes). But 117 MB of it are
// writes, and the H200 writes a bf16 tensor (fill_) at only ~2.8 TB/s, so
// ~42 us is the real floor; the bench prints both. The GEMM next to it does
// 2 N E FLOPs:
// 481 GFLOP, ~0.7 ms at ~700 TFLOP/s dense bf16. So forward pays one
// dequantise (~5% of its GEMM) and backward (dx = dy W only; the weight is
// frozen) another: NF4 should run within ~5-10% of the bf16 linear while
// storing W in 0.52-0.56 bytes per element instead of 2 (3.6-3.9x less).
// The price is a transient dense W (2E bytes) during each GEMM, which the
// peak-memory column shows; the persistent saving is what lets an 8B base
// fit next to activations. The bf16 baseline keeps W resident (not counted
// in its extra GiB, which is measured above the inputs).
#include <torch/autograd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench/kernels/bench_util.h"
#include "kernels/nf4/nf4.h"
#include "kernels/nf4/nf4_op.h"

namespace foak::bench {
namespace {

constexpr double kH200CopyTBps = 4.3;  // practical ceiling (spec 4.8 TB/s HBM3e)

std::string ShapeName(int64_t out, int64_t in) {
  return "W=" + std::to_string(out) + "x" + std::to_string(in);
}

void BenchDequantize(const BenchOptions& o, int64_t out, int64_t in, bool dq) {
  auto opts = at::TensorOptions().dtype(at::kBFloat16).device(o.device);
  const ops::Nf4Weight q = ops::Nf4Quantize(at::randn({out, in}, opts), dq);
  const double e = static_cast<double>(out) * static_cast<double>(in);
  const double scale_bytes = static_cast<double>(q.nbytes()) - e / 2;
  Row row{dq ? "nf4_dequant_dq" : "nf4_dequant", ShapeName(out, in), "bf16", "fwd", "foak"};
  row.ms = MedianMs(o, [&] { ops::Nf4Dequantize(q, at::kBFloat16); });
  row.bytes = e / 2 + scale_bytes + 2 * e;
  row.extra_gib = PeakExtraGiB(o, [&] { ops::Nf4Dequantize(q, at::kBFloat16); });
  Report(o, row);
  // The write-only ceiling: filling a bf16 tensor of the output's size.
  at::Tensor sink = at::empty({out, in}, opts);
  const double fill_ms = MedianMs(o, [&] { sink.fill_(1.0f); });
  const double gbps = row.bytes / (row.ms * 1e6);
  std::printf("# %s %s: %.1f MB moved (%.1f read, %.1f written) in %.3f ms = %.0f GB/s, "
              "%.0f%% of %.1f TB/s\n",
              row.op.c_str(), row.shape.c_str(), row.bytes / 1e6, (e / 2 + scale_bytes) / 1e6,
              2 * e / 1e6, row.ms, gbps, 100.0 * gbps / (kH200CopyTBps * 1e3), kH200CopyTBps);
  std::printf("# %s: writing the %.1f MB output alone (fill_) takes %.3f ms = %.0f GB/s; "
              "the dequantise is %.0f%% of that\n",
              row.shape.c_str(), 2 * e / 1e6, fill_ms, 2 * e / (fill_ms * 1e6),
              100.0 * fill_ms / row.ms);
}

void BenchLinear(const BenchOptions& o, int64_t n, int64_t out, int64_t in) {
  auto opts = at::TensorOptions().dtype(at::kBFloat16).device(o.device);
  at::Tensor w = 0.02 * at::randn({out, in}, opts);  // frozen
  const ops::Nf4Weight q = ops::Nf4Quantize(w, /*double_quant=*/true);
  at::Tensor x = at::randn({n, in}, opts).requires_grad_(true);
  at::Tensor dy = at::randn({n, out}, opts);
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(out) *
                       static_cast<double>(in);
  const std::string shape = "N=" + std::to_string(n) + " " + ShapeName(out, in);
  std::printf("# %s: weight bf16 %.1f MiB, NF4+DQ %.1f MiB (%.2fx smaller)\n", shape.c_str(),
              static_cast<double>(w.nbytes()) / (1 << 20),
              static_cast<double>(q.nbytes()) / (1 << 20),
              static_cast<double>(w.nbytes()) / static_cast<double>(q.nbytes()));
  double ms[2][2] = {{0, 0}, {0, 0}};
  for (int impl = 0; impl < 2; ++impl) {
    const bool nf4 = impl == 1;
    auto fwd = [&] { return nf4 ? ops::Nf4Linear(x, q, at::Tensor()) : at::linear(x, w); };
    Row row{"nf4_linear", shape, "bf16", "fwd", nf4 ? "foak" : "composite"};
    row.ms = MedianMs(o, [&] { fwd(); });
    row.flops = flops;
    row.extra_gib = PeakExtraGiB(o, [&] { fwd(); });
    Report(o, row);
    ms[impl][0] = row.ms;

    at::Tensor y = fwd();
    row.pass = "bwd";
    row.ms = MedianMs(o, [&] {
      x.mutable_grad() = at::Tensor();
      y.backward(dy, /*retain_graph=*/true);
    });
    row.extra_gib = -1;
    Report(o, row);
    ms[impl][1] = row.ms;

    row.pass = "fwd+bwd";
    row.ms = -1;
    row.flops = -1;
    x.mutable_grad() = at::Tensor();
    y = at::Tensor();
    row.extra_gib = PeakExtraGiB(o, [&] { fwd().backward(dy); });
    Report(o, row);
    x.mutable_grad() = at::Tensor();
  }
  // Where backward's time goes: the dequantise and the GEMM on their own.
  const double deq_ms = MedianMs(o, [&] { ops::Nf4Dequantize(q, at::kBFloat16); });
  const at::Tensor wd = ops::Nf4Dequantize(q, at::kBFloat16);
  const double mm_ms = MedianMs(o, [&] { at::mm(dy, wd); });
  std::printf("# %s bwd parts: dequantise %.3f ms + dx GEMM %.3f ms = %.3f ms\n", shape.c_str(),
              deq_ms, mm_ms, deq_ms + mm_ms);
  std::printf("# %s: NF4 fwd %.3f ms vs bf16 %.3f ms (+%.1f%%), bwd %.3f vs %.3f ms (+%.1f%%)\n",
              shape.c_str(), ms[1][0], ms[0][0], 100.0 * (ms[1][0] / ms[0][0] - 1), ms[1][1],
              ms[0][1], 100.0 * (ms[1][1] / ms[0][1] - 1));
}

}  // namespace
}  // namespace foak::bench

int main(int argc, char** argv) {
  using namespace foak::bench;
  const BenchOptions o = ParseBenchArgs(argc, argv);
  PrintHeader();
  struct Shape {
    int64_t out, in;
  };
  const std::vector<Shape> shapes =
      o.smoke ? std::vector<Shape>{{192, 128}}
              : std::vector<Shape>{{4096, 4096}, {14336, 4096}, {4096, 14336}};
  const int64_t n = o.smoke ? 64 : 4096;
  for (const Shape& s : shapes) {
    if (!Selected(o, std::to_string(s.out) + "x" + std::to_string(s.in))) continue;
    BenchDequantize(o, s.out, s.in, false);
    BenchDequantize(o, s.out, s.in, true);
    BenchLinear(o, n, s.out, s.in);
  }
  return 0;
}

// rms_norm: the fused kernel against the plain LibTorch composite (the
// transformers expression: fp32 upcast, pow, mean, rsqrt, cast, multiply),
// forward and backward, at the Llama-3-8B activation shape N=8192 x H=4096.
// Bytes counted are the minimum: forward reads x and w and writes y; backward
// reads x, w and dy and writes dx (dw is H values).
// "fwd"/"bwd" rows time one op call from an idle GPU, so they include the
// host time of the autograd Function and engine (tens of microseconds, more
// than the kernel at this size; in a training step the host runs ahead and
// hides it). "fwd-kernel"/"bwd-kernel" rows time the CUDA launchers alone on
// preallocated buffers: the number the bandwidth target is about.
#include <torch/autograd.h>

#include <cstdio>
#include <string>

#include "bench/kernels/bench_util.h"
#include "kernels/rms_norm/rms_norm.h"
#include "kernels/rms_norm/rms_norm_op.h"

#ifdef FOAK_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace foak::bench {
namespace {

at::Tensor Composite(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return w * h.to(x.scalar_type());
}

void BenchOne(const BenchOptions& o, int64_t n, int64_t hidden, at::ScalarType dtype,
              bool weight_grad) {
  const double eps = 1e-5;
  auto opts = at::TensorOptions().dtype(dtype).device(o.device);
  at::Tensor x = at::randn({n, hidden}, opts).requires_grad_(true);
  at::Tensor w = (1.0 + 0.1 * at::randn({hidden}, opts)).detach().requires_grad_(weight_grad);
  at::Tensor dy = at::randn({n, hidden}, opts);
  const double s = static_cast<double>(at::elementSize(dtype));
  const std::string shape = "N=" + std::to_string(n) + " H=" + std::to_string(hidden) +
                            (weight_grad ? "" : " frozen w");
  for (const char* impl : {"composite", "foak"}) {
    const bool fused = std::string(impl) == "foak";
    auto fwd = [&] { return fused ? ops::RmsNorm(x, w, eps) : Composite(x, w, eps); };
    Row row{"rms_norm", shape, DtypeName(dtype), "fwd", impl};
    row.ms = MedianMs(o, [&] { fwd(); });
    row.bytes = s * (2.0 * n * hidden + hidden);
    row.extra_gib = PeakExtraGiB(o, [&] { fwd(); });
    Report(o, row);

    at::Tensor y = fwd();
    row.pass = "bwd";
    row.ms = MedianMs(o, [&] {
      x.mutable_grad() = at::Tensor();
      if (weight_grad) w.mutable_grad() = at::Tensor();
      y.backward(dy, /*retain_graph=*/true);
    });
    row.bytes = s * (3.0 * n * hidden + 2.0 * hidden);
    row.extra_gib = -1;
    Report(o, row);

    row.pass = "fwd+bwd";
    row.bytes = -1;
    row.ms = -1;
    x.mutable_grad() = at::Tensor();
    w.mutable_grad() = at::Tensor();
    y = at::Tensor();
    row.extra_gib = PeakExtraGiB(o, [&] { fwd().backward(dy); });
    Report(o, row);
  }
#ifdef FOAK_WITH_CUDA
  if (o.device.is_cuda()) {
    RmsNormParams p{n, hidden, static_cast<float>(eps),
                    dtype == at::kBFloat16 ? ScalarKind::kBF16
                                           : (dtype == at::kHalf ? ScalarKind::kF16 : ScalarKind::kF32)};
    void* stream = c10::cuda::getCurrentCUDAStream().stream();
    at::Tensor xd = x.detach(), wd = w.detach();
    at::Tensor y = at::empty_like(xd), dx = at::empty_like(xd), dw = at::empty_like(wd);
    at::Tensor rstd = at::empty({n}, xd.options().dtype(at::kFloat));
    at::Tensor ws = at::empty({RmsNormBackwardWorkspaceRows(p), hidden}, xd.options().dtype(at::kFloat));
    Row row{"rms_norm", shape, DtypeName(dtype), "fwd-kernel", "foak"};
    row.ms = MedianMs(o, [&] {
      RmsNormForwardCuda(p, xd.data_ptr(), wd.data_ptr(), y.data_ptr(), rstd.data_ptr<float>(), stream);
    });
    row.bytes = s * (2.0 * n * hidden + hidden);
    Report(o, row);
    row.pass = "bwd-kernel";
    row.ms = MedianMs(o, [&] {
      RmsNormBackwardCuda(p, xd.data_ptr(), wd.data_ptr(), rstd.data_ptr<float>(), dy.data_ptr(),
                          dx.data_ptr(), ws.data_ptr<float>(),
                          weight_grad ? dw.data_ptr() : nullptr, stream);
    });
    row.bytes = s * (3.0 * n * hidden + 2.0 * hidden);
    Report(o, row);
  }
#endif
}

}  // namespace
}  // namespace foak::bench

int main(int argc, char** argv) {
  using namespace foak::bench;
  const BenchOptions o = ParseBenchArgs(argc, argv);
  PrintHeader();
  const int64_t n = o.smoke ? 64 : 8192;
  const int64_t h = o.smoke ? 128 : 4096;
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    if (o.smoke && dtype == at::kBFloat16 && !o.device.is_cuda()) continue;
    if (!Selected(o, DtypeName(dtype))) continue;
    BenchOne(o, n, h, dtype, /*weight_grad=*/true);
  }
  if (Selected(o, "frozen")) BenchOne(o, n, h, at::kBFloat16, /*weight_grad=*/false);
  return 0;
}

// fused_linear_cross_entropy against the plain LibTorch head (x @ W^T in
// bf16, then cross-entropy on fp32 logits, as eager PyTorch runs it), forward
// plus backward, at the shapes of shared/TARGETS.md: Llama-3-8B's head
// (H = 4096, V = 128256) at N = 8192 and 2048, and V = 256000; full
// fine-tuning (dW computed) and a frozen head (LoRA: dW skipped). Effective
// TFLOP/s count 6 N H V (4 N H V frozen), as the targets do; extra GiB is
// the peak allocated above the inputs. For the first shape it also prints the
// accuracy of both against an fp32 reference: loss relative error and the
// relative-norm errors of dX and dW.
#include <torch/autograd.h>

#include <cstdio>
#include <string>

#include "bench/kernels/bench_util.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy_op.h"

namespace foak::bench {
namespace {

at::Tensor Eager(const at::Tensor& x, const at::Tensor& w, const at::Tensor& labels) {
  at::Tensor logits = at::matmul(x, w.t());
  return at::cross_entropy_loss(logits.to(at::kFloat), labels);
}

at::Tensor Fused(const at::Tensor& x, const at::Tensor& w, const at::Tensor& labels) {
  ops::FusedLinearCrossEntropyOptions o;
  o.num_valid = labels.numel();  // every label counts, known on the host
  return ops::FusedLinearCrossEntropy(x, w, labels, o).loss;
}

double RelNorm(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).norm().item<double>() /
         b.to(at::kFloat).norm().item<double>();
}

void Accuracy(const at::Tensor& x, const at::Tensor& w, const at::Tensor& labels) {
  at::Tensor xr = x.detach().to(at::kFloat).requires_grad_(true);
  at::Tensor wr = w.detach().to(at::kFloat).requires_grad_(true);
  at::Tensor ref = at::cross_entropy_loss(at::matmul(xr, wr.t()), labels);
  ref.backward();
  const double ref_loss = ref.item<double>();
  for (const char* impl : {"composite", "foak"}) {
    at::Tensor xi = x.detach().clone().requires_grad_(true);
    at::Tensor wi = w.detach().clone().requires_grad_(true);
    at::Tensor loss = std::string(impl) == "foak" ? Fused(xi, wi, labels) : Eager(xi, wi, labels);
    loss.backward();
    std::printf("# accuracy vs fp32 reference (%s): loss rel err %.2e, dX rel-norm err %.2e, "
                "dW rel-norm err %.2e\n",
                impl, std::abs(loss.item<double>() - ref_loss) / std::abs(ref_loss),
                RelNorm(xi.grad(), xr.grad()), RelNorm(wi.grad(), wr.grad()));
  }
}

void BenchOne(const BenchOptions& o, int64_t n, int64_t h, int64_t v, bool frozen,
              bool accuracy) {
  auto opts = at::TensorOptions().dtype(at::kBFloat16).device(o.device);
  at::Tensor x = at::randn({n, h}, opts).requires_grad_(true);
  at::Tensor w = (0.02 * at::randn({v, h}, opts)).detach().requires_grad_(!frozen);
  at::Tensor labels = at::randint(0, v, {n}, opts.dtype(at::kLong));
  const std::string shape = "N=" + std::to_string(n) + " H=" + std::to_string(h) + " V=" +
                            std::to_string(v) + (frozen ? " frozen head" : "");
  for (const char* impl : {"composite", "foak"}) {
    const bool fused = std::string(impl) == "foak";
    auto step = [&] {
      x.mutable_grad() = at::Tensor();
      w.mutable_grad() = at::Tensor();
      at::Tensor loss = fused ? Fused(x, w, labels) : Eager(x, w, labels);
      loss.backward();
    };
    Row row{"fused_linear_cross_entropy", shape, "bf16", "fwd+bwd", impl};
    row.ms = MedianMs(o, step);
    row.flops = (frozen ? 4.0 : 6.0) * n * h * v;
    x.mutable_grad() = at::Tensor();
    w.mutable_grad() = at::Tensor();
    row.extra_gib = PeakExtraGiB(o, step);
    Report(o, row);
  }
  if (accuracy) Accuracy(x, w, labels);
}

}  // namespace
}  // namespace foak::bench

int main(int argc, char** argv) {
  using namespace foak::bench;
  const BenchOptions o = ParseBenchArgs(argc, argv);
  PrintHeader();
  if (o.smoke) {
    BenchOne(o, 64, 32, 301, false, true);
    BenchOne(o, 64, 32, 301, true, false);
    return 0;
  }
  struct Shape { int64_t n, v; bool frozen, accuracy; const char* tag; };
  for (const Shape& s : {Shape{8192, 128256, false, true, "8192x128256"},
                         Shape{8192, 128256, true, false, "8192x128256 frozen"},
                         Shape{2048, 128256, false, false, "2048x128256"},
                         Shape{8192, 256000, false, false, "8192x256000"}}) {
    if (!Selected(o, s.tag)) continue;
    BenchOne(o, s.n, 4096, s.v, s.frozen, s.accuracy);
  }
  return 0;
}

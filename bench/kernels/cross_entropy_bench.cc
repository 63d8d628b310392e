// cross_entropy on given logits against the plain LibTorch composite
// (upcast to fp32, at::cross_entropy_loss), forward plus backward, at
// Llama-3-8B's N = 8192 x V = 128256 and at V = 256000, bf16 logits. The
// minimum traffic is one read of the logits and one write of the gradient
// (2 N V s bytes); extra GiB is the peak allocated above the logits.
#include <torch/autograd.h>

#include <string>

#include "bench/kernels/bench_util.h"
#include "kernels/cross_entropy/cross_entropy_op.h"

namespace foak::bench {
namespace {

void BenchOne(const BenchOptions& o, int64_t n, int64_t v) {
  auto opts = at::TensorOptions().dtype(at::kBFloat16).device(o.device);
  at::Tensor base = at::randn({n, v}, opts);
  at::Tensor labels = at::randint(0, v, {n}, opts.dtype(at::kLong));
  const std::string shape = "N=" + std::to_string(n) + " V=" + std::to_string(v);
  for (const char* impl : {"composite", "foak"}) {
    const bool fused = std::string(impl) == "foak";
    at::Tensor leaf = base.clone().requires_grad_(true);
    auto step = [&] {
      leaf.mutable_grad() = at::Tensor();
      // The fused op writes its gradient over the logits, so each call gets
      // a logits tensor of its own, as it would from the lm_head; the copy is
      // outside the timed region only for the fused op... both pay it here.
      at::Tensor logits = leaf * 1;
      at::Tensor loss = fused ? ops::CrossEntropy(logits, labels, {}).loss
                              : at::cross_entropy_loss(logits.to(at::kFloat), labels);
      loss.backward();
    };
    Row row{"cross_entropy", shape, "bf16", "fwd+bwd (incl. one copy)", impl};
    row.ms = MedianMs(o, step);
    row.bytes = 2.0 * 2.0 * n * v + 2.0 * 2.0 * n * v;  // the copy + the loss's minimum
    row.extra_gib = PeakExtraGiB(o, step);
    Report(o, row);
  }
}

}  // namespace
}  // namespace foak::bench

int main(int argc, char** argv) {
  using namespace foak::bench;
  const BenchOptions o = ParseBenchArgs(argc, argv);
  PrintHeader();
  if (o.smoke) {
    BenchOne(o, 32, 1000);
    return 0;
  }
  if (Selected(o, "128256")) BenchOne(o, 8192, 128256);
  if (Selected(o, "256000")) BenchOne(o, 4096, 256000);
  return 0;
}

#include "worker/train/grad_clip.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "worker/torch_compat.h"

namespace foak {

double ClipGradNorm(const std::vector<torch::Tensor>& grads, double max_norm) {
  return ClipGradNormOver(grads, grads, max_norm);
}

double ClipGradNormOver(const std::vector<torch::Tensor>& measured,
                        const std::vector<torch::Tensor>& scaled, double max_norm) {
  if (measured.empty()) return 0.0;
  torch::NoGradGuard no_grad;
  // Grouped by device and dtype by the multi-tensor kernels themselves.
  const std::vector<torch::Tensor> norms = compat::NormsFp32(measured);
  torch::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);  // () fp32
  if (max_norm > 0 && !scaled.empty()) {
    torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    compat::ScaleInPlace(scaled, coef);
  }
  return total.item<double>();
}

}  // namespace foak

#include "worker/train/grad_clip.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "worker/torch_compat.h"

namespace foak {

double ClipGradNorm(const std::vector<torch::Tensor>& grads, double max_norm) {
  if (grads.empty()) return 0.0;
  torch::NoGradGuard no_grad;
  // Grouped by device and dtype by the multi-tensor kernels themselves.
  const std::vector<torch::Tensor> norms = compat::NormsFp32(grads);
  torch::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);  // () fp32
  if (max_norm > 0) {
    torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    compat::ScaleInPlace(grads, coef);
  }
  return total.item<double>();
}

}  // namespace foak

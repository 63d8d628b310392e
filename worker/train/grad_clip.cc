#include "worker/train/grad_clip.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

namespace foak {

double ClipGradNorm(const std::vector<torch::Tensor>& grads, double max_norm) {
  if (grads.empty()) return 0.0;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const torch::Tensor& g : grads) {
    norms.push_back(at::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat));
  }
  torch::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);  // () fp32
  if (max_norm > 0) {
    torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (const torch::Tensor& g : grads) {
      g.mul_(coef.to(g.scalar_type()));
    }
  }
  return total.item<double>();
}

}  // namespace foak

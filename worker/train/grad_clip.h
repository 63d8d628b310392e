// Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ (norm 2):
//   total = || (||g_1||, ..., ||g_n||) ||_2          per-tensor norms in fp32
//   coef  = min(max_norm / (total + 1e-6), 1);  g_i *= coef
// torch multiplies even when coef is 1 (a no-op) and does not check for
// non-finite norms (a NaN norm makes every gradient NaN); we do the same so a
// run matches torch's. Per-tensor norms are taken in fp32 even for bf16
// gradients (torch would use the gradient dtype), so the reported norm does not
// depend on the precision mode.
#ifndef FOAK_WORKER_TRAIN_GRAD_CLIP_H_
#define FOAK_WORKER_TRAIN_GRAD_CLIP_H_

#include <torch/types.h>

#include <vector>

namespace foak {

// Returns the total norm BEFORE clipping. max_norm <= 0 only measures.
// An empty list has norm 0.
double ClipGradNorm(const std::vector<torch::Tensor>& grads, double max_norm);

// The same with the norm taken over `measured` and the scaling applied to
// `scaled` (sharded optimizer state: every rank measures all the summed
// gradients but updates, so scales, only its own slices of them).
double ClipGradNormOver(const std::vector<torch::Tensor>& measured,
                        const std::vector<torch::Tensor>& scaled, double max_norm);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_GRAD_CLIP_H_

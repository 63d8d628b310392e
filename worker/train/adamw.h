// AdamW, step for step as torch.optim.AdamW (amsgrad off, maximize off):
//   p <- p * (1 - lr * wd)                         decoupled weight decay
//   m <- b1 m + (1 - b1) g                          (torch's lerp form)
//   v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// with t the 1-based step. Bias corrections are computed in double on the
// host, as torch's Python optimizer does.
//
// Parameter groups carry their own weight decay; MakeParamGroups puts norms and
// biases (foak::IsNoDecayParameter) in a group with decay 0, as transformers'
// Trainer does.
//
// Precision (see precision.h) decides what the update runs on:
//   fp32        the parameters themselves; fp32 moments.
//   bf16-mixed  fp32 master copies made when the optimizer is built (so build
//               it while the model is still fp32, then cast the model); the
//               bf16 gradients are upcast to fp32 by PrepareGrads (and the
//               bf16 ones released), the masters are updated and rounded back
//               into the bf16 parameters.
//   bf16        the bf16 parameters with bf16 moments.
// On CUDA with LibTorch 2.x the whole group goes through one fused multi-
// tensor kernel (compat::FusedAdamWStep, the same math in fp32 registers);
// otherwise each tensor is updated with the formulas above.
//
// Checkpoints (NamedState / LoadNamedState) key the state by parameter NAME,
// not position, so a resumed run survives a change of parameter order and a
// LoRA run stores state for its trainable parameters only. The per-tensor step
// counters are kept by both update paths, so a checkpoint written by the
// per-tensor path resumes correctly on the fused one and vice versa.
#ifndef FOAK_WORKER_TRAIN_ADAMW_H_
#define FOAK_WORKER_TRAIN_ADAMW_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

#include "worker/train/precision.h"

namespace foak {

struct ParamGroup {
  std::vector<std::string> names;    // for messages and checkpoints
  std::vector<torch::Tensor> params;
  double weight_decay = 0.0;
  // bf16-mixed: the fp32 values the masters start from (sharded state: the
  // slice's values before the cast to bf16); empty = copies of `params`.
  std::vector<torch::Tensor> initial_masters;
};

// Two groups from model.named_parameters(): decay (weight_decay) and no-decay
// (norms and biases, 0). A group with no parameters is left out.
std::vector<ParamGroup> MakeParamGroups(torch::nn::Module& model, double weight_decay);

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  Precision precision = Precision::kFp32;
  bool allow_fused = true;  // use compat::FusedAdamWStep on CUDA when LibTorch has it
};

class AdamW {
 public:
  // In bf16-mixed mode the parameters must still be fp32 here (see above).
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options);

  // Call once per step after backward: makes the gradients Step() applies and
  // returns them (for clipping), one per parameter that has a gradient.
  // Parameters without a gradient are skipped by Step, as in torch.
  std::vector<torch::Tensor> PrepareGrads();
  // Applies one update with learning rate `lr` to the gradients PrepareGrads
  // returned (calling it first when it was not called since the last Step).
  void Step(double lr);
  // Releases all gradients (torch's zero_grad(set_to_none=True)).
  void ZeroGrad();

  int64_t step_count() const { return step_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // The tensors the update runs on, per group and parameter: the fp32 masters
  // in bf16-mixed mode, else the parameters themselves.
  const std::vector<std::vector<torch::Tensor>>& update_tensors() const { return masters_; }
  // Moments, per group and parameter (for tests and, later, resume).
  const std::vector<std::vector<torch::Tensor>>& exp_avgs() const { return exp_avgs_; }
  const std::vector<std::vector<torch::Tensor>>& exp_avg_sqs() const { return exp_avg_sqs_; }

  // The state by parameter name, as tensors on the parameters' device (no
  // copies): "<name>.exp_avg", "<name>.exp_avg_sq", "<name>.step" (fp32 scalar,
  // the updates this parameter received) and, in bf16-mixed mode,
  // "<name>.master" (the fp32 master weight).
  std::vector<std::pair<std::string, torch::Tensor>> NamedState() const;
  // Copies a NamedState() back in place and sets step_count(). Every expected
  // tensor must be present with the same shape and dtype (so the copy is
  // bit-exact); extra ones are an error too. In bf16-mixed mode the bf16
  // parameters are then rounded from the restored masters. `source` names the
  // file in errors.
  absl::Status LoadNamedState(const std::map<std::string, torch::Tensor>& state,
                              int64_t step_count, const std::string& source);

 private:
  void StepGroup(size_t g, double lr);
  std::vector<ParamGroup> groups_;
  AdamWOptions options_;
  std::vector<std::vector<torch::Tensor>> masters_;
  std::vector<std::vector<torch::Tensor>> exp_avgs_;
  std::vector<std::vector<torch::Tensor>> exp_avg_sqs_;
  std::vector<std::vector<torch::Tensor>> state_steps_;  // fused kernel only
  std::vector<std::vector<torch::Tensor>> grads_;  // from PrepareGrads; undefined = none
  bool prepared_ = false;
  int64_t step_ = 0;
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_ADAMW_H_

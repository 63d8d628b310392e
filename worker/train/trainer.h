// Trainer: owns the order of one optimizer step, and nothing else (the data
// loop, metrics and checkpoint schedule live in train_job.cc):
//
//   1. count the target tokens of ALL micro-batches of the step first;
//   2. per micro-batch: the model's Loss (with the job's fused kernels, or the
//      CausalLmLoss composite: sum over tokens, fp32),
//      backward of sum / total_targets -- so accumulating k micro-batches of b
//      rows gives the same gradient as one batch of k*b rows (each token
//      weighs the same), exactly as transformers' Trainer with
//      num_items_in_batch;
//   3. optimizer.PrepareGrads (fp32 upcast in bf16-mixed), global-norm clip;
//   4. AdamW step with the schedule's rate for this step, release the grads.
//
// Data parallel (options.collectives with world size > 1): every rank runs
// Step on its own micro-batches. Step 1 counts the target tokens of ALL ranks
// (a small all-reduce), so each token weighs the same as on one rank with the
// whole batch; GradSync (worker/parallel/grad_sync.h) sums the gradients over
// ranks during the last micro-batch's backward; the loss and token counts in
// StepResult are the job's. The trainable parameters are broadcast from rank 0
// when the trainer is made, so every rank starts, and stays, equal.
// With zero_stage 1 each rank's AdamW holds and updates only its slice of
// every gradient bucket (the moments and fp32 masters of 1/world_size of the
// parameters); after the update the slices are all-gathered into every rank's
// parameters. Clipping adds every rank's squared slice norms, so the norm is
// the same on every rank and the same as unsharded.
//
// LibTorch errors (c10::Error, including CUDA out-of-memory) are caught here
// and returned as a status naming the step, so the worker reports them instead
// of crashing.
#ifndef FOAK_WORKER_TRAIN_TRAINER_H_
#define FOAK_WORKER_TRAIN_TRAINER_H_

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/batch.h"
#include "worker/model/llama.h"
#include "worker/model/weights.h"
#include "worker/parallel/collectives.h"
#include "worker/parallel/grad_sync.h"
#include "worker/train/adamw.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/precision.h"

namespace foak {

struct TrainerOptions {
  Precision precision = Precision::kFp32;
  LrScheduleOptions schedule;     // base learning rate, warm-up, decay
  double weight_decay = 0.0;      // decay group only (norms and biases get 0)
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;     // 0 = no clipping (the norm is still reported)
  bool allow_fused_adamw = true;  // CUDA + LibTorch 2.x only
  // bf16-mixed with a frozen base (LoRA), as PEFT + transformers' Trainer: only
  // the frozen parameters (requires_grad false) become bf16; the trainable
  // ones stay fp32 and are updated in place by an fp32 AdamW (no masters).
  bool keep_trainable_fp32 = false;
  // Data parallel: the job's process group (null or world size 1 = one
  // rank). Must outlive the trainer.
  Collectives* collectives = nullptr;
  GradSyncOptions grad_sync;
  // Data parallel: 1 shards the optimizer state (moments, fp32 masters)
  // across ranks (ZeRO stage 1, grad_sync.h); 0 keeps all of it on every rank.
  int zero_stage = 0;
  // A NaN or infinite loss or gradient norm: false = the step fails
  // (NonFiniteStepError, worker/train/nonfinite.h) before the weights
  // change; true = its gradients are dropped, the step still counts, and
  // StepResult.skipped says so.
  bool skip_nonfinite = false;
};

// Sums of one evaluation batch: the summed token loss and the target count.
struct LossSums {
  double loss_sum = 0;
  int64_t target_tokens = 0;
};

struct StepResult {
  int64_t step = 0;           // optimizer steps completed (1-based)
  double loss = 0;            // mean token loss over all micro-batches of the step
  double learning_rate = 0;   // the rate this step used
  double grad_norm = 0;       // global norm before clipping
  int64_t input_tokens = 0;   // non-padding input tokens
  int64_t target_tokens = 0;  // tokens that contributed to the loss
  // The loss or gradient norm was not finite and the update was dropped
  // (TrainerOptions.skip_nonfinite).
  bool skipped = false;
};

class Trainer {
 public:
  // `model` has fp32 parameters (as constructed or loaded). It is moved to
  // `device` and its parameters are cast for `options.precision` (bf16 for
  // bf16-mixed and bf16; the optimizer's fp32 masters are taken before).
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(LlamaForCausalLM model,
                                                         const TrainerOptions& options,
                                                         const torch::Device& device);

  // One optimizer step over `micro_batches` (gradient accumulation = their
  // number). Every batch needs at least one target token in total.
  absl::StatusOr<StepResult> Step(const std::vector<Batch>& micro_batches);

  // The loss of `batch` without gradients, in whatever train/eval mode the
  // model is (Evaluator switches it to eval). Same loss as Step.
  absl::StatusOr<LossSums> EvalLossSums(const Batch& batch);

  // Sharded optimizer state (zero_stage 1 on several ranks): what a
  // checkpoint needs first. A COLLECTIVE: every rank calls it before rank 0
  // saves; it gathers the fp32 master weights of bf16-mixed into host memory
  // for SaveWeights. A no-op otherwise.
  absl::Status PrepareSave();
  bool sharded() const { return zero_; }
  // Sharded: how the optimizer state is cut (GradSync::Layout), for checkpoints.
  std::string ShardLayout() const { return zero_ ? grad_sync_->Layout() : std::string(); }

  // Data parallel: sums `values` over ranks in place (a no-op on one rank).
  absl::Status AllReduceSum(std::vector<double>& values);
  int rank() const;
  int world_size() const;

  // Writes the current weights as a Hugging Face folder (SaveModel). In
  // bf16-mixed mode the fp32 master weights are written, as transformers'
  // Trainer saves fp32 weights; otherwise the parameters' dtype.
  absl::Status SaveWeights(const std::string& dir, const SaveOptions& options);

  LlamaForCausalLM& model() { return model_; }
  AdamW& optimizer() { return *optimizer_; }
  const LrSchedule& schedule() const { return schedule_; }
  const torch::Device& device() const { return device_; }
  int64_t step() const { return step_; }
  Precision precision() const { return options_.precision; }
  // Resume: `step` optimizer steps were already taken (the schedule continues
  // from there). The optimizer's own state is restored by
  // RestoreTrainingState (checkpoint.h), which calls this.
  void RestoreStep(int64_t step) { step_ = step; }

 private:
  Trainer(LlamaForCausalLM model, const TrainerOptions& options, const torch::Device& device,
          std::unique_ptr<AdamW> optimizer);
  absl::StatusOr<StepResult> StepUnchecked(const std::vector<Batch>& micro_batches);
  // Sharded: the global norm from every rank's `slices` (their gradients),
  // which are clipped in place; returns the norm before clipping.
  absl::StatusOr<double> ClipShardedGradNorm(const std::vector<torch::Tensor>& slices);

  LlamaForCausalLM model_;
  TrainerOptions options_;
  torch::Device device_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<GradSync> grad_sync_;  // data parallel only
  bool zero_ = false;                    // sharded optimizer state
  std::vector<torch::Tensor> trainable_;  // the parameters GradSync serves
  // PrepareSave's gathered fp32 masters by parameter name (host memory).
  std::map<std::string, torch::Tensor> gathered_masters_;
  LrSchedule schedule_;
  int64_t step_ = 0;
};

// "step 12: <what>" as a status; c10::OutOfMemoryError becomes
// RESOURCE_EXHAUSTED with advice to lower batch_size or max_seq_len.
absl::Status TorchErrorToStatus(const std::exception& e, const std::string& context);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_TRAINER_H_

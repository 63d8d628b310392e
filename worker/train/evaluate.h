// Evaluator: the validation loss of the job's validation data (a separate
// file, or dataset.validation_split of the train file), every eval_steps
// optimizer steps and at the end of training.
//
// One pass = every validation example once, in file order (no shuffle), in
// padded batches of eval_batch_size rows (padding costs a little compute but
// keeps each example alone in its row, so the loss cannot depend on how
// examples would have been packed). The model is switched to eval mode for the
// pass (LoRA dropout off) and back to train mode after; no gradients.
//   eval_loss = sum of all target tokens' losses / number of target tokens
// with the training loss (CausalLmLoss), i.e. each token weighs the same, as
// transformers' Trainer does with num_items_in_batch. Nothing in the pass uses
// an RNG or touches the data position of training, so evaluating (or not, or
// resuming in between) never changes the training trajectory, and the same
// weights always give the same eval_loss.
#ifndef FOAK_WORKER_TRAIN_EVALUATE_H_
#define FOAK_WORKER_TRAIN_EVALUATE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "worker/data/example_dataset.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/train/job.h"
#include "worker/train/trainer.h"

namespace foak {

struct EvalResult {
  double loss = 0;            // mean token loss
  int64_t target_tokens = 0;
  int64_t examples = 0;
};

class Evaluator {
 public:
  // Opens (and validates) the job's validation data; nullptr when the job has
  // none. `tokenizer` must outlive the evaluator.
  static absl::StatusOr<std::unique_ptr<Evaluator>> Create(const JobConfig& job,
                                                           const EncoderOptions& encoder,
                                                           const Tokenizer* tokenizer,
                                                           int64_t pad_id);

  // One pass over the validation data with `trainer`'s model.
  absl::StatusOr<EvalResult> Run(Trainer& trainer);

  const DatasetStats& stats() const { return dataset_->stats(); }

 private:
  Evaluator(std::unique_ptr<ExampleDataset> dataset, int64_t batch_size, int64_t pad_id)
      : dataset_(std::move(dataset)), batch_size_(batch_size), pad_id_(pad_id) {}
  std::unique_ptr<ExampleDataset> dataset_;
  int64_t batch_size_;
  int64_t pad_id_;
};

// Whether an evaluation runs after optimizer step `step` of `max_steps`.
bool EvalDue(const Hyperparameters& h, int64_t step, int64_t max_steps);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_EVALUATE_H_

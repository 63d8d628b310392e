#include "worker/train/evaluate.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/batcher.h"
#include "worker/train/example_batch_source.h"

namespace foak {

absl::StatusOr<std::unique_ptr<Evaluator>> Evaluator::Create(const JobConfig& job,
                                                             const EncoderOptions& encoder,
                                                             const Tokenizer* tokenizer,
                                                             int64_t pad_id) {
  if (!job.dataset.has_validation()) return std::unique_ptr<Evaluator>();
  const DatasetOptions options = MakeDatasetOptions(job, encoder, DataSplit::kValidation);
  ASSIGN_OR_RETURN(std::unique_ptr<ExampleDataset> dataset,
                   ExampleDataset::Open(options, tokenizer));
  if (dataset->stats().num_examples == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.path, ": no validation examples",
        job.dataset.validation.empty()
            ? absl::StrCat(" (dataset.validation_split ", job.dataset.validation_split,
                           " held out none of the lines); raise validation_split or remove it")
            : "; give a file with at least one example or remove dataset.validation"));
  }
  const Hyperparameters& h = job.hyperparameters;
  const int64_t batch_size = h.eval_batch_size > 0 ? h.eval_batch_size : h.batch_size;
  return std::unique_ptr<Evaluator>(new Evaluator(std::move(dataset), batch_size, pad_id));
}

absl::StatusOr<EvalResult> Evaluator::Run(Trainer& trainer) {
  RETURN_IF_ERROR(dataset_->StartEpoch(0));
  ExampleDataset* dataset = dataset_.get();
  int64_t examples = 0;
  const FiniteExampleSource source = [dataset, &examples]() {
    absl::StatusOr<std::optional<Example>> next = dataset->NextInEpoch();
    if (next.ok() && next->has_value()) ++examples;
    return next;
  };
  trainer.model()->eval();
  double loss_sum = 0;
  int64_t targets = 0;
  absl::Status status;
  // Data parallel: rank r evaluates the batches i with i % world_size = r.
  const int rank = trainer.rank(), world = trainer.world_size();
  for (int64_t i = 0;; ++i) {
    absl::StatusOr<std::optional<Batch>> batch = NextPaddedBatch(source, batch_size_, pad_id_);
    if (!batch.ok()) {
      status = batch.status();
      break;
    }
    if (!batch->has_value()) break;
    if (i % world != rank) continue;
    absl::StatusOr<LossSums> sums = trainer.EvalLossSums(**batch);
    if (!sums.ok()) {
      status = sums.status();
      break;
    }
    loss_sum += sums->loss_sum;
    targets += sums->target_tokens;
  }
  trainer.model()->train();
  RETURN_IF_ERROR(status);
  std::vector<double> sums = {loss_sum, static_cast<double>(targets)};
  RETURN_IF_ERROR(trainer.AllReduceSum(sums));
  loss_sum = sums[0];
  targets = static_cast<int64_t>(sums[1]);
  EvalResult result;
  result.loss = targets > 0 ? loss_sum / static_cast<double>(targets) : 0.0;
  result.target_tokens = targets;
  result.examples = examples;
  return result;
}

bool EvalDue(const Hyperparameters& h, int64_t step, int64_t max_steps) {
  return step == max_steps || (h.eval_steps > 0 && step % h.eval_steps == 0);
}

}  // namespace foak

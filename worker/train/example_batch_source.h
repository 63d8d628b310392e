// ExampleBatchSource: the job's dataset (any format of worker/data/record.h,
// tokenized with the model folder's own tokenizer) as the training loop's
// stream of micro-batches: ExampleDataset (parse, template, mask, per-epoch
// seeded shuffle) -> Batcher::FromExamples (packing or padding).
//
// Exact resume: the stream is a pure function of (file, dataset options,
// tokenizer, max_seq_len, seed, batch_size, packing). A resumed run opens the
// dataset again and Skip()s the examples the interrupted run consumed
// (Batcher::examples_consumed, recorded in trainer_state.json), which jumps
// over whole epochs and shuffles raw lines without tokenizing them; a fresh
// Batcher then yields the same batches as the interrupted run would have
// (batcher.h). Checkpoints without the example count replay micro-batches.
//
// The validation data (dataset.validation, or dataset.validation_split of the
// train file) is opened here too, unshuffled, for evaluate.h.
#ifndef FOAK_WORKER_TRAIN_EXAMPLE_BATCH_SOURCE_H_
#define FOAK_WORKER_TRAIN_EXAMPLE_BATCH_SOURCE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/data/batcher.h"
#include "worker/data/example_dataset.h"
#include "worker/model/model_config.h"
#include "worker/tokenizer/tokenizer.h"
#include "worker/train/batch_source.h"
#include "worker/train/job.h"

namespace foak {

// The encoder options of the job: chat template (job's name or custom object,
// else the model family's default; "plain" for the byte tokenizer), masking
// and max_seq_len. `byte_tokenizer`: the model folder has no tokenizer files.
absl::StatusOr<EncoderOptions> MakeEncoderOptions(const JobConfig& job, const ModelConfig& config,
                                                  bool byte_tokenizer);

// The pad id batches use: the tokenizer's pad id, else its EOS id (labels mask
// padding anyway); INVALID_ARGUMENT when it has neither.
absl::StatusOr<int64_t> PadIdFor(const Tokenizer& tokenizer);

// The dataset options of one split of the job's data.
DatasetOptions MakeDatasetOptions(const JobConfig& job, const EncoderOptions& encoder,
                                  DataSplit split);

class ExampleBatchSource : public BatchSource {
 public:
  // Opens (and validates every line of) the training split. `tokenizer` must
  // outlive the source.
  static absl::StatusOr<std::unique_ptr<ExampleBatchSource>> Create(const JobConfig& job,
                                                                    const EncoderOptions& encoder,
                                                                    const Tokenizer* tokenizer);

  absl::StatusOr<Batch> Next() override { return batcher_->Next(); }
  int64_t micro_batches_per_epoch() const override { return micro_batches_per_epoch_; }
  std::string Describe() const override;
  int64_t examples_consumed() const override {
    return skipped_examples_ + batcher_->examples_consumed();
  }
  absl::Status Resume(int64_t micro_batches, int64_t examples) override;

  const DatasetStats& stats() const { return dataset_->stats(); }
  int64_t pad_id() const { return pad_id_; }

 private:
  ExampleBatchSource() = default;
  void MakeBatcher();

  BatcherOptions batcher_options_;
  std::unique_ptr<ExampleDataset> dataset_;
  std::unique_ptr<Batcher> batcher_;
  int64_t micro_batches_per_epoch_ = 0;
  int64_t skipped_examples_ = 0;  // skipped by Resume before batcher_ started
  int64_t pad_id_ = 0;
};

// "N examples, T tokens (K trained), ..." plus the bad / truncated / dropped
// counts, for the run's info output.
std::string DescribeDatasetStats(const DatasetStats& stats);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_EXAMPLE_BATCH_SOURCE_H_

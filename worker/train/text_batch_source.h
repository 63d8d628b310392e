// TextBatchSource: the "text" dataset format (JSONL of {"text": ...}, byte
// tokenizer, per-epoch seeded shuffle) through the packing/padding Batcher,
// as a BatchSource. Deterministic given (file, max_seq_len, seed, batch_size,
// packing): TextDataset's shuffle is a seeded mt19937_64 and the Batcher is a
// pure function of the example stream.
#ifndef FOAK_WORKER_TRAIN_TEXT_BATCH_SOURCE_H_
#define FOAK_WORKER_TRAIN_TEXT_BATCH_SOURCE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/data/batcher.h"
#include "worker/data/text_dataset.h"
#include "worker/train/batch_source.h"
#include "worker/train/job.h"

namespace foak {

class TextBatchSource : public BatchSource {
 public:
  // Opens (and validates) job.train_data with the job's batching options.
  static absl::StatusOr<std::unique_ptr<TextBatchSource>> Create(const JobConfig& job);

  absl::StatusOr<Batch> Next() override { return batcher_->Next(); }
  int64_t micro_batches_per_epoch() const override { return micro_batches_per_epoch_; }
  std::string Describe() const override;

 private:
  TextBatchSource() = default;
  std::unique_ptr<TextDataset> dataset_;
  std::unique_ptr<Batcher> batcher_;
  int64_t micro_batches_per_epoch_ = 0;
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_TEXT_BATCH_SOURCE_H_

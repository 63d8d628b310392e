#include "worker/train/text_batch_source.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/byte_tokenizer.h"

namespace foak {

absl::StatusOr<std::unique_ptr<TextBatchSource>> TextBatchSource::Create(const JobConfig& job) {
  const Hyperparameters& h = job.hyperparameters;
  TextDatasetOptions data_options;
  data_options.path = job.train_data;
  data_options.max_seq_len = h.max_seq_len;
  data_options.seed = static_cast<uint64_t>(h.seed);
  auto source = std::unique_ptr<TextBatchSource>(new TextBatchSource());
  ASSIGN_OR_RETURN(source->dataset_, TextDataset::Open(data_options));
  const TextDatasetStats& stats = source->dataset_->stats();
  const int64_t rows_per_epoch = h.packing ? stats.num_packed_rows : stats.num_examples;
  source->micro_batches_per_epoch_ = (rows_per_epoch + h.batch_size - 1) / h.batch_size;

  BatcherOptions batcher_options;
  batcher_options.batch_size = h.batch_size;
  batcher_options.max_seq_len = h.max_seq_len;
  batcher_options.packing = h.packing;
  batcher_options.pad_id = ByteTokenizer::kPadId;
  TextDataset* dataset = source->dataset_.get();
  source->batcher_ = std::make_unique<Batcher>(batcher_options, [dataset] { return dataset->Next(); });
  return source;
}

std::string TextBatchSource::Describe() const {
  const TextDatasetStats& stats = dataset_->stats();
  return absl::StrCat(stats.num_examples, " examples, ", stats.num_tokens, " tokens, ",
                      micro_batches_per_epoch_, " micro-batches per epoch");
}

}  // namespace foak

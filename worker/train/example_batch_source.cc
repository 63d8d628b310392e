#include "worker/train/example_batch_source.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/data/chat_template.h"
#include "worker/data/record.h"

namespace foak {

absl::StatusOr<EncoderOptions> MakeEncoderOptions(const JobConfig& job, const ModelConfig& config,
                                                  bool byte_tokenizer) {
  const DatasetConfig& d = job.dataset;
  EncoderOptions options;
  if (!d.chat_template_json.empty()) {
    ASSIGN_OR_RETURN(options.chat_template,
                     ParseChatTemplate(nlohmann::json::parse(d.chat_template_json),
                                       "dataset.chat_template"));
  } else if (!d.chat_template.empty()) {
    ASSIGN_OR_RETURN(options.chat_template, BuiltinChatTemplate(d.chat_template));
  } else {
    ASSIGN_OR_RETURN(options.chat_template, DefaultChatTemplate(config.model_type, byte_tokenizer));
  }
  options.train_on_prompt = d.train_on_prompt;
  options.instructions_as_chat = d.instructions_as_chat;
  options.max_seq_len = job.hyperparameters.max_seq_len;
  return options;
}

absl::StatusOr<int64_t> PadIdFor(const Tokenizer& tokenizer) {
  if (tokenizer.special().pad_id.has_value()) return *tokenizer.special().pad_id;
  if (tokenizer.special().eos_id.has_value()) return *tokenizer.special().eos_id;
  return absl::InvalidArgumentError(
      "the model's tokenizer has neither a pad nor an eos token to pad batches with; set "
      "pad_token or eos_token in tokenizer_config.json");
}

DatasetOptions MakeDatasetOptions(const JobConfig& job, const EncoderOptions& encoder,
                                  DataSplit split) {
  const DatasetConfig& d = job.dataset;
  const Hyperparameters& h = job.hyperparameters;
  DatasetOptions options;
  options.format = *ParseDataFormat(d.format);  // validated by ParseJobConfig
  options.encoder = encoder;
  options.seed = static_cast<uint64_t>(h.seed);
  options.skip_bad_lines = d.skip_bad_lines;
  if (split == DataSplit::kTrain) {
    options.path = d.train;
    options.shuffle = true;
    options.shuffle_buffer_size = static_cast<size_t>(d.shuffle_buffer_size);
    options.validation_split = d.validation_split;
    options.split = DataSplit::kTrain;
    options.packing_row_len = h.packing ? h.max_seq_len : 0;
  } else if (!d.validation.empty()) {  // a separate validation file, in file order
    options.path = d.validation;
    options.shuffle = false;
  } else {  // the held-out lines of the train file
    options.path = d.train;
    options.shuffle = false;
    options.validation_split = d.validation_split;
    options.split = DataSplit::kValidation;
  }
  return options;
}

absl::StatusOr<std::unique_ptr<ExampleBatchSource>> ExampleBatchSource::Create(
    const JobConfig& job, const EncoderOptions& encoder, const Tokenizer* tokenizer) {
  const Hyperparameters& h = job.hyperparameters;
  auto source = std::unique_ptr<ExampleBatchSource>(new ExampleBatchSource());
  ASSIGN_OR_RETURN(source->pad_id_, PadIdFor(*tokenizer));
  ASSIGN_OR_RETURN(source->dataset_,
                   ExampleDataset::Open(MakeDatasetOptions(job, encoder, DataSplit::kTrain),
                                        tokenizer));
  const DatasetStats& stats = source->dataset_->stats();
  if (stats.num_examples == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        job.dataset.train, ": no training examples (", DescribeDatasetStats(stats),
        "); check dataset.format, max_seq_len and validation_split"));
  }
  const int64_t rows_per_epoch = h.packing ? stats.num_packed_rows : stats.num_examples;
  source->micro_batches_per_epoch_ = (rows_per_epoch + h.batch_size - 1) / h.batch_size;
  source->batcher_options_.batch_size = h.batch_size;
  source->batcher_options_.max_seq_len = h.max_seq_len;
  source->batcher_options_.packing = h.packing;
  source->batcher_options_.pad_id = source->pad_id_;
  source->MakeBatcher();
  return source;
}

void ExampleBatchSource::MakeBatcher() {
  ExampleDataset* dataset = dataset_.get();
  batcher_ = std::make_unique<Batcher>(
      Batcher::FromExamples(batcher_options_, [dataset] { return dataset->Next(); }));
}

absl::Status ExampleBatchSource::Resume(int64_t micro_batches, int64_t examples) {
  if (examples < 0) return Skip(micro_batches);  // a checkpoint without the count
  RETURN_IF_ERROR(dataset_->Skip(examples));
  skipped_examples_ = examples;
  MakeBatcher();
  return absl::OkStatus();
}

std::string ExampleBatchSource::Describe() const {
  return absl::StrCat(DescribeDatasetStats(dataset_->stats()), ", ", micro_batches_per_epoch_,
                      " micro-batches per epoch");
}

std::string DescribeDatasetStats(const DatasetStats& s) {
  std::string out = absl::StrCat(DataFormatName(s.format), " format, ", s.num_examples,
                                 " examples, ", s.num_tokens, " tokens (", s.num_target_tokens,
                                 " trained)");
  if (s.num_other_split > 0) absl::StrAppend(&out, ", ", s.num_other_split, " lines held out");
  absl::StrAppend(&out, ", ", s.num_bad_lines, " bad lines skipped, ", s.num_truncated,
                  " truncated to max_seq_len, ", s.num_dropped,
                  " dropped (nothing trained left after truncation)");
  return out;
}

}  // namespace foak

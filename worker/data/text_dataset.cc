#include "worker/data/text_dataset.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace foak {

TextDataset::TextDataset(const TextDatasetOptions& options,
                         std::unique_ptr<JsonlTextReader> reader)
    : options_(options),
      reader_(std::move(reader)),
      shuffle_(std::make_unique<ShuffleBuffer<std::string>>(options.shuffle_buffer_size,
                                                            MixSeed(options.seed, 0))) {}

absl::StatusOr<std::unique_ptr<TextDataset>> TextDataset::Open(
    const TextDatasetOptions& options) {
  if (options.max_seq_len < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_seq_len = ", options.max_seq_len,
                     " is too short: an example needs at least <bos> and one more token"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<JsonlTextReader> reader, JsonlTextReader::Open(options.path));
  // The validation and counting pass.
  TextDatasetStats stats;
  int64_t row_fill = 0;
  std::string text;
  while (true) {
    ASSIGN_OR_RETURN(bool more, reader->Next(&text));
    if (!more) break;
    const int64_t len = std::min<int64_t>(static_cast<int64_t>(text.size()) + 2,
                                          options.max_seq_len);
    ++stats.num_examples;
    stats.num_tokens += len;
    if (row_fill + len > options.max_seq_len) {
      ++stats.num_packed_rows;
      row_fill = 0;
    }
    row_fill += len;
  }
  if (row_fill > 0) ++stats.num_packed_rows;
  if (stats.num_examples == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.path, ": no examples; the dataset needs lines like {\"text\": \"...\"}"));
  }
  RETURN_IF_ERROR(reader->Rewind());
  auto dataset = std::unique_ptr<TextDataset>(new TextDataset(options, std::move(reader)));
  dataset->stats_ = stats;
  return dataset;
}

absl::StatusOr<std::optional<std::string>> TextDataset::NextText() {
  std::string text;
  while (!reader_done_) {
    ASSIGN_OR_RETURN(bool more, reader_->Next(&text));
    if (!more) {
      reader_done_ = true;
      break;
    }
    std::optional<std::string> out = shuffle_->Push(std::move(text));
    if (out.has_value()) return out;
  }
  return shuffle_->Pop();
}

absl::StatusOr<std::vector<int64_t>> TextDataset::Next() {
  ASSIGN_OR_RETURN(std::optional<std::string> text, NextText());
  if (!text.has_value()) {
    // Epoch ended: rewind and reseed the shuffle for the next one.
    ++epoch_;
    RETURN_IF_ERROR(reader_->Rewind());
    reader_done_ = false;
    shuffle_ = std::make_unique<ShuffleBuffer<std::string>>(
        options_.shuffle_buffer_size, MixSeed(options_.seed, static_cast<uint64_t>(epoch_)));
    ASSIGN_OR_RETURN(text, NextText());
    if (!text.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(options_.path, ": the file has no examples any more (was it changed "
                                      "while training?)"));
    }
  }
  return tokenizer_.EncodeExample(*text, options_.max_seq_len);
}

}  // namespace foak

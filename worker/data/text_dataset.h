// TextDataset: a JSONL file of {"text": ...} lines as an endless stream of
// byte-tokenized examples, shuffled per epoch.
//
// Open() reads the whole file once, line by line, before training starts: a
// bad line fails the job up front (naming file:line) instead of hours in, and
// the counts give the number of steps per epoch. Nothing but the counts is
// kept; the examples are streamed again for each epoch.
//
// Order: epoch e streams the file through a ShuffleBuffer seeded with
// MixSeed(seed, e), so each epoch has its own order and a seed reproduces all
// of them. Texts (not token ids, which are 8x larger) sit in the buffer.
#ifndef FOAK_WORKER_DATA_TEXT_DATASET_H_
#define FOAK_WORKER_DATA_TEXT_DATASET_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/byte_tokenizer.h"
#include "worker/data/jsonl_reader.h"
#include "worker/data/shuffle_buffer.h"

namespace foak {

struct TextDatasetOptions {
  std::string path;            // JSONL file
  int64_t max_seq_len = 512;   // examples are truncated to this many tokens (>= 2)
  uint64_t seed = 42;
  size_t shuffle_buffer_size = 10000;  // examples held for shuffling; <= 1 keeps file order
};

struct TextDatasetStats {
  int64_t num_examples = 0;
  int64_t num_tokens = 0;   // after truncation, incl. <bos>/<eos>
  // Rows that packing one epoch in file order gives (see batcher.h).
  int64_t num_packed_rows = 0;
};

class TextDataset {
 public:
  static absl::StatusOr<std::unique_ptr<TextDataset>> Open(const TextDatasetOptions& options);

  const TextDatasetStats& stats() const { return stats_; }
  // The next example; after the last example of an epoch the next epoch starts.
  absl::StatusOr<std::vector<int64_t>> Next();
  // Epoch (0-based) of the example last returned.
  int64_t epoch() const { return epoch_; }

 private:
  TextDataset(const TextDatasetOptions& options, std::unique_ptr<JsonlTextReader> reader);
  absl::StatusOr<std::optional<std::string>> NextText();

  TextDatasetOptions options_;
  std::unique_ptr<JsonlTextReader> reader_;
  ByteTokenizer tokenizer_;
  TextDatasetStats stats_;
  int64_t epoch_ = 0;
  bool reader_done_ = false;
  std::unique_ptr<ShuffleBuffer<std::string>> shuffle_;
};

}  // namespace foak

#endif  // FOAK_WORKER_DATA_TEXT_DATASET_H_

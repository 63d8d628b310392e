// ExampleDataset: a JSONL training file (any format of record.h) as a stream
// of tokenized, masked Examples, shuffled per epoch, split into train and
// validation without holding anything but one bit per line in memory.
//
// Open() reads the file once before training: it detects the format ("auto"),
// parses, renders and tokenizes every line of its split, so a bad line fails
// the job up front naming file:line (or, with skip_bad_lines, is counted),
// and it counts examples, tokens and packed rows for steps-per-epoch. It then
// keeps one bit per line: does this line give an example of this split.
// Epochs re-read the file and tokenize again (no token cache: the file may be
// larger than memory).
//
// Validation split: line L (1-based, blank lines counted) belongs to
// validation when MixSeed(seed ^ kSplitSalt, L) / 2^64 < validation_split, so
// two datasets opened with the same seed and fraction, one kTrain and one
// kValidation, never share a line and together cover the file. A separate
// validation file is the same class with validation_split = 0 and kTrain.
//
// Determinism and exact resume: the example stream is a pure function of
// (file contents, options, seed). Epoch e streams the file's kept lines in
// order through a ShuffleBuffer seeded MixSeed(seed, e) (shuffle = false or a
// buffer <= 1 keeps file order). Every epoch yields exactly
// stats().num_examples examples. To resume, open the dataset with the same
// options and call Skip(n) with the number of examples already consumed
// (Batcher::examples_consumed()); Skip jumps over whole epochs arithmetically
// and within an epoch only shuffles raw lines, without parsing or tokenizing.
// The file must not change in between: its size and mtime are checked at
// every epoch start.
#ifndef FOAK_WORKER_DATA_EXAMPLE_DATASET_H_
#define FOAK_WORKER_DATA_EXAMPLE_DATASET_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/example.h"
#include "worker/data/example_encoder.h"
#include "worker/data/record.h"
#include "worker/data/shuffle_buffer.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {

enum class DataSplit { kTrain, kValidation };

struct DatasetOptions {
  std::string path;  // JSONL file
  DataFormat format = DataFormat::kAuto;
  EncoderOptions encoder;  // template, masking, max_seq_len
  uint64_t seed = 42;
  bool shuffle = true;                  // false: file order every epoch (validation)
  size_t shuffle_buffer_size = 10000;   // lines held for shuffling
  bool skip_bad_lines = false;          // false: the first bad line fails Open
  double validation_split = 0.0;        // [0, 1): fraction of lines held out
  DataSplit split = DataSplit::kTrain;  // which side of the split this dataset reads
  int64_t packing_row_len = 0;          // > 0: count packed rows of this length in stats
};

struct DatasetStats {
  DataFormat format = DataFormat::kAuto;  // resolved format
  int64_t num_lines = 0;                  // non-blank lines in the file (both splits)
  int64_t num_other_split = 0;            // non-blank lines that belong to the other split
  int64_t num_examples = 0;               // examples per epoch
  int64_t num_tokens = 0;                 // after truncation, per epoch
  int64_t num_target_tokens = 0;          // tokens with a loss, per epoch
  int64_t num_bad_lines = 0;              // skipped malformed lines (skip_bad_lines)
  int64_t num_truncated = 0;              // kept examples cut to max_seq_len
  int64_t num_dropped = 0;                // no trained token left after truncation
  int64_t num_packed_rows = 0;  // rows packing one epoch in file order gives (packing_row_len)
  std::vector<std::string> bad_line_errors;  // the first few skipped lines' errors
};

class ExampleDataset {
 public:
  // `tokenizer` must outlive the dataset.
  static absl::StatusOr<std::unique_ptr<ExampleDataset>> Open(const DatasetOptions& options,
                                                              const Tokenizer* tokenizer);
  ~ExampleDataset();
  ExampleDataset(const ExampleDataset&) = delete;
  ExampleDataset& operator=(const ExampleDataset&) = delete;

  const DatasetStats& stats() const { return stats_; }

  // The next example of the endless stream; epoch e+1 starts after epoch e.
  absl::StatusOr<Example> Next();
  // The next example of the current epoch, nullopt after its last one (the
  // stream stays there until StartEpoch). A validation pass is
  // StartEpoch(0) and NextInEpoch() until nullopt.
  absl::StatusOr<std::optional<Example>> NextInEpoch();
  // Rewinds to the start of `epoch` (0-based) with that epoch's order.
  absl::Status StartEpoch(int64_t epoch);
  // Skips `n` examples of the endless stream (see the file comment).
  absl::Status Skip(int64_t n);

  int64_t epoch() const { return epoch_; }
  // Examples returned or skipped in the current epoch.
  int64_t examples_in_epoch() const { return examples_in_epoch_; }

 private:
  struct RawLine {
    int64_t line = 0;
    std::string text;
  };
  ExampleDataset(const DatasetOptions& options, std::FILE* file, ExampleEncoder encoder);
  absl::Status ScanFile();
  bool InThisSplit(int64_t line) const;
  absl::StatusOr<std::optional<RawLine>> ReadLine();  // next non-blank physical line
  absl::StatusOr<std::optional<RawLine>> NextRaw();   // next kept line of the epoch, shuffled
  // nullopt with *error set: a malformed line; nullopt alone: dropped.
  absl::StatusOr<std::optional<Example>> EncodeLine(const RawLine& raw, std::string* error,
                                                    bool* truncated);
  std::string Where(int64_t line) const;

  DatasetOptions options_;
  std::FILE* file_;
  ExampleEncoder encoder_;
  DataFormat format_ = DataFormat::kAuto;
  int64_t format_line_ = 0;  // line the auto format was detected from
  DatasetStats stats_;
  std::vector<bool> keep_;  // keep_[line]: the line gives an example of this split
  int64_t file_size_ = 0;
  int64_t file_mtime_ns_ = 0;

  char* line_buf_ = nullptr;  // getline(3)'s buffer
  size_t line_cap_ = 0;
  int64_t line_number_ = 0;  // physical lines read in this pass
  bool reader_done_ = false;
  int64_t epoch_ = 0;
  int64_t examples_in_epoch_ = 0;
  std::unique_ptr<ShuffleBuffer<RawLine>> shuffle_;
};

}  // namespace foak

#endif  // FOAK_WORKER_DATA_EXAMPLE_DATASET_H_

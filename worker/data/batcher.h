// Batcher: turns a stream of tokenized examples (<bos> bytes <eos>, each at
// most max_seq_len tokens) into micro-batches, by packing or by padding.
//
// Packing (the default): each row has exactly max_seq_len tokens and holds
// whole examples back to back; position_ids restart at 0 for each example and
// the first token of each example gets label -100. An example that does not fit
// in the rest of the current row is CARRIED whole to the next row, and the rest
// of the row is padding (<eos> ids, labels -100, its own position run from 0).
// We carry rather than split because an example cut in two would lose its
// <bos> context and teach the model to continue text from the middle; since
// every example is at most max_seq_len tokens it always fits an empty row. The
// cost is a little padding at row ends (long examples waste more).
//
// Padding: one example per row, rows right-padded to the longest example of
// the batch (dynamic padding, as transformers' collators do) with <eos> ids and
// labels -100; position_ids are 0..len-1 over the whole row.
//
// The source is pulled lazily and is expected to be endless (epochs roll over
// inside it), so batches flow across epoch boundaries without a short batch.
#ifndef FOAK_WORKER_DATA_BATCHER_H_
#define FOAK_WORKER_DATA_BATCHER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/batch.h"

namespace foak {

struct BatcherOptions {
  int64_t batch_size = 8;     // rows per micro-batch
  int64_t max_seq_len = 512;  // row length when packing; the longest example otherwise
  bool packing = true;
  int64_t pad_id = 257;       // ByteTokenizer::kPadId
};

// Returns the next example (non-empty, at most max_seq_len tokens).
using ExampleSource = std::function<absl::StatusOr<std::vector<int64_t>>()>;

class Batcher {
 public:
  Batcher(const BatcherOptions& options, ExampleSource source)
      : options_(options), source_(std::move(source)) {}

  absl::StatusOr<Batch> Next();

  // The layouts, as pure functions (each example at most max_seq_len tokens).
  // Padded: B = examples.size(), T = the longest example.
  static Batch MakePaddedBatch(const std::vector<std::vector<int64_t>>& examples, int64_t pad_id);
  // Packed: rows[b] lists the examples of row b (total length <= T).
  static Batch MakePackedBatch(const std::vector<std::vector<std::vector<int64_t>>>& rows,
                               int64_t T, int64_t pad_id);

 private:
  absl::StatusOr<std::vector<int64_t>> Pull();
  BatcherOptions options_;
  ExampleSource source_;
  std::optional<std::vector<int64_t>> carried_;  // did not fit the previous row
};

}  // namespace foak

#endif  // FOAK_WORKER_DATA_BATCHER_H_

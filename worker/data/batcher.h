// Batcher: turns a stream of tokenized examples (each with its own labels,
// see example.h; at most max_seq_len tokens) into micro-batches, by packing or
// by padding. Labels come from the examples (prompt tokens are already -100);
// the batcher only adds -100 where a token has no predecessor of its own
// sequence and on padding.
//
// Packing (the default): each row has exactly max_seq_len tokens and holds
// whole examples back to back; position_ids restart at 0 for each example
// (the model builds a block-diagonal mask from them, so packed examples never
// attend to each other) and the first token of each example gets label -100.
// An example that does not fit in the rest of the current row is CARRIED whole
// to the next row, and the rest of the row is padding (pad ids, labels -100,
// its own position run from 0). We carry rather than split because an example
// cut in two would lose its prompt and BOS context and teach the model to
// continue text from the middle; since every example is at most max_seq_len
// tokens it always fits an empty row. The cost is a little padding at row ends.
//
// Padding: one example per row, rows right-padded to the longest example of
// the batch (dynamic padding, as transformers' collators do) with pad ids and
// labels -100; position_ids are 0..T-1 over the whole row.
//
// The source is pulled lazily and is expected to be endless (epochs roll over
// inside it), so batches flow across epoch boundaries without a short batch.
// Exact resume: examples_consumed() counts the examples that went into the
// batches returned so far (a carried example is not yet consumed); skipping
// that many examples of a dataset with the same seed and starting a fresh
// Batcher gives the same following batches.
#ifndef FOAK_WORKER_DATA_BATCHER_H_
#define FOAK_WORKER_DATA_BATCHER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/batch.h"
#include "worker/data/example.h"

namespace foak {

struct BatcherOptions {
  int64_t batch_size = 8;     // rows per micro-batch
  int64_t max_seq_len = 512;  // row length when packing; the longest example otherwise
  bool packing = true;
  int64_t pad_id = 257;  // the tokenizer's pad id (else EOS); labels mask it anyway
};

// Returns the next example (non-empty, at most max_seq_len tokens).
using LabeledExampleSource = std::function<absl::StatusOr<Example>()>;
// Legacy: token ids trained on every token (labels = ids).
using ExampleSource = std::function<absl::StatusOr<std::vector<int64_t>>()>;
// A finite source: nullopt at its end (ExampleDataset::NextInEpoch).
using FiniteExampleSource = std::function<absl::StatusOr<std::optional<Example>>()>;

class Batcher {
 public:
  // Examples with their own labels (ExampleDataset::Next).
  static Batcher FromExamples(const BatcherOptions& options, LabeledExampleSource source);
  // Legacy ids-only source: every token is a target.
  Batcher(const BatcherOptions& options, ExampleSource source);

  absl::StatusOr<Batch> Next();
  // Examples inside the batches returned so far.
  int64_t examples_consumed() const { return pulled_ - (carried_.has_value() ? 1 : 0); }

  // The layouts, as pure functions (each example at most max_seq_len tokens).
  // Padded: B = examples.size(), T = the longest example.
  static Batch PadExamples(const std::vector<Example>& examples, int64_t pad_id);
  // Packed: rows[b] lists the examples of row b (total length <= T).
  static Batch PackExamples(const std::vector<std::vector<Example>>& rows, int64_t T,
                            int64_t pad_id);
  // The same for ids-only examples (labels = ids).
  static Batch MakePaddedBatch(const std::vector<std::vector<int64_t>>& examples, int64_t pad_id);
  static Batch MakePackedBatch(const std::vector<std::vector<std::vector<int64_t>>>& rows,
                               int64_t T, int64_t pad_id);

 private:
  struct LabeledTag {};
  Batcher(const BatcherOptions& options, LabeledExampleSource source, LabeledTag)
      : options_(options), source_(std::move(source)) {}
  absl::StatusOr<Example> Pull();
  BatcherOptions options_;
  LabeledExampleSource source_;
  std::optional<Example> carried_;  // did not fit the previous row
  int64_t pulled_ = 0;
};

// One padded batch of up to `batch_size` examples from a finite source, or
// nullopt when it is exhausted: a validation pass is
//   dataset.StartEpoch(0); while (batch = NextPaddedBatch(...)) { eval }.
// The last batch may be short.
absl::StatusOr<std::optional<Batch>> NextPaddedBatch(const FiniteExampleSource& source,
                                                     int64_t batch_size, int64_t pad_id);

}  // namespace foak

#endif  // FOAK_WORKER_DATA_BATCHER_H_

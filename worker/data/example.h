// Example: one tokenized training sequence with its per-token labels, the unit
// that flows from the dataset (example_dataset.h) through the encoder
// (example_encoder.h) into the batcher (batcher.h).
//
// labels are aligned with input_ids, not shifted (transformers' causal-LM
// convention, see batch.h): labels[t] == input_ids[t] where the loss is taken
// and kIgnoreIndex (-100) where it is not (prompt tokens, template
// scaffolding, BOS). labels[0] is never a target because nothing precedes it.
#ifndef FOAK_WORKER_DATA_EXAMPLE_H_
#define FOAK_WORKER_DATA_EXAMPLE_H_

#include <cstdint>
#include <vector>

#include "worker/data/batch.h"

namespace foak {

struct Example {
  std::vector<int64_t> input_ids;  // (T)
  std::vector<int64_t> labels;     // (T), kIgnoreIndex where no loss

  int64_t size() const { return static_cast<int64_t>(input_ids.size()); }
  // Tokens the shifted loss counts: labels[t] != -100 for t >= 1.
  int64_t NumTargets() const {
    int64_t n = 0;
    for (size_t t = 1; t < labels.size(); ++t) n += labels[t] != kIgnoreIndex;
    return n;
  }
};

// An example trained on every token: labels = input_ids (plain text).
inline Example FullyTrainedExample(std::vector<int64_t> ids) {
  Example e;
  e.labels = ids;
  e.input_ids = std::move(ids);
  return e;
}

}  // namespace foak

#endif  // FOAK_WORKER_DATA_EXAMPLE_H_

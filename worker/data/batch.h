// Batch: one micro-batch as plain C++ vectors, the boundary between the data
// pipeline (no torch) and the trainer, which turns it into tensors.
//
// All three arrays are (B, T) row-major. Labels follow transformers' causal-LM
// convention: the loss shifts inside, so labels[b, t] is predicted from the
// logits at t-1; -100 marks positions that contribute no loss (padding, and
// the first token of each packed sequence, which has no predecessor in its own
// sequence). position_ids restart at 0 at every sequence start, which is also
// how the model recognises packed sequences and keeps their attention apart.
#ifndef FOAK_WORKER_DATA_BATCH_H_
#define FOAK_WORKER_DATA_BATCH_H_

#include <cstdint>
#include <vector>

namespace foak {

inline constexpr int64_t kIgnoreIndex = -100;

struct Batch {
  int64_t B = 0;
  int64_t T = 0;
  std::vector<int64_t> input_ids;     // (B, T)
  std::vector<int64_t> labels;        // (B, T), kIgnoreIndex where no loss
  std::vector<int64_t> position_ids;  // (B, T)
  int64_t num_tokens = 0;             // input tokens that are not padding

  // Positions that the shifted loss counts: labels[b, t] != -100 for t >= 1.
  int64_t NumTargetTokens() const {
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 1; t < T; ++t) n += labels[b * T + t] != kIgnoreIndex;
    }
    return n;
  }
};

}  // namespace foak

#endif  // FOAK_WORKER_DATA_BATCH_H_

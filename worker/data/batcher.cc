#include "worker/data/batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace foak {

Batch Batcher::MakePaddedBatch(const std::vector<std::vector<int64_t>>& examples,
                               int64_t pad_id) {
  Batch batch;
  batch.B = static_cast<int64_t>(examples.size());
  for (const auto& e : examples) batch.T = std::max<int64_t>(batch.T, e.size());
  const size_t n = static_cast<size_t>(batch.B * batch.T);
  batch.input_ids.assign(n, pad_id);
  batch.labels.assign(n, kIgnoreIndex);
  batch.position_ids.resize(n);
  for (int64_t b = 0; b < batch.B; ++b) {
    const auto& e = examples[b];
    for (int64_t t = 0; t < batch.T; ++t) {
      const size_t i = static_cast<size_t>(b * batch.T + t);
      batch.position_ids[i] = t;
      if (t < static_cast<int64_t>(e.size())) {
        batch.input_ids[i] = e[t];
        batch.labels[i] = e[t];
      }
    }
    batch.num_tokens += static_cast<int64_t>(e.size());
  }
  return batch;
}

Batch Batcher::MakePackedBatch(const std::vector<std::vector<std::vector<int64_t>>>& rows,
                               int64_t T, int64_t pad_id) {
  Batch batch;
  batch.B = static_cast<int64_t>(rows.size());
  batch.T = T;
  const size_t n = static_cast<size_t>(batch.B * T);
  batch.input_ids.assign(n, pad_id);
  batch.labels.assign(n, kIgnoreIndex);
  batch.position_ids.assign(n, 0);
  for (int64_t b = 0; b < batch.B; ++b) {
    int64_t t = 0;
    for (const auto& e : rows[b]) {
      for (size_t j = 0; j < e.size() && t < T; ++j, ++t) {
        const size_t i = static_cast<size_t>(b * T + t);
        batch.input_ids[i] = e[j];
        // The first token of a sequence has no predecessor within it.
        batch.labels[i] = j == 0 ? kIgnoreIndex : e[j];
        batch.position_ids[i] = static_cast<int64_t>(j);
        ++batch.num_tokens;
      }
    }
    // Padding tail: its own position run, so it forms a separate sequence.
    for (int64_t p = 0; t < T; ++t, ++p) batch.position_ids[b * T + t] = p;
  }
  return batch;
}

absl::StatusOr<std::vector<int64_t>> Batcher::Pull() {
  if (carried_.has_value()) {
    std::vector<int64_t> e = std::move(*carried_);
    carried_.reset();
    return e;
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> e, source_());
  if (e.empty() || static_cast<int64_t>(e.size()) > options_.max_seq_len) {
    return absl::InternalError(absl::StrCat("example of ", e.size(),
                                            " tokens given to a batcher with max_seq_len ",
                                            options_.max_seq_len));
  }
  return e;
}

absl::StatusOr<Batch> Batcher::Next() {
  if (!options_.packing) {
    std::vector<std::vector<int64_t>> examples;
    examples.reserve(static_cast<size_t>(options_.batch_size));
    for (int64_t b = 0; b < options_.batch_size; ++b) {
      ASSIGN_OR_RETURN(std::vector<int64_t> e, Pull());
      examples.push_back(std::move(e));
    }
    return MakePaddedBatch(examples, options_.pad_id);
  }
  std::vector<std::vector<std::vector<int64_t>>> rows(static_cast<size_t>(options_.batch_size));
  for (auto& row : rows) {
    int64_t used = 0;
    while (true) {
      ASSIGN_OR_RETURN(std::vector<int64_t> e, Pull());
      const int64_t len = static_cast<int64_t>(e.size());
      if (used + len > options_.max_seq_len) {
        carried_ = std::move(e);  // starts the next row
        break;
      }
      used += len;
      row.push_back(std::move(e));
      if (used == options_.max_seq_len) break;
    }
  }
  return MakePackedBatch(rows, options_.max_seq_len, options_.pad_id);
}

}  // namespace foak

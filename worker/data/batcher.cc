#include "worker/data/batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace foak {

Batcher Batcher::FromExamples(const BatcherOptions& options, LabeledExampleSource source) {
  return Batcher(options, std::move(source), LabeledTag{});
}

Batcher::Batcher(const BatcherOptions& options, ExampleSource source)
    : options_(options), source_([source = std::move(source)]() -> absl::StatusOr<Example> {
        ASSIGN_OR_RETURN(std::vector<int64_t> ids, source());
        return FullyTrainedExample(std::move(ids));
      }) {}

Batch Batcher::PadExamples(const std::vector<Example>& examples, int64_t pad_id) {
  Batch batch;
  batch.B = static_cast<int64_t>(examples.size());
  for (const auto& e : examples) batch.T = std::max<int64_t>(batch.T, e.size());
  const size_t n = static_cast<size_t>(batch.B * batch.T);
  batch.input_ids.assign(n, pad_id);
  batch.labels.assign(n, kIgnoreIndex);
  batch.position_ids.resize(n);
  for (int64_t b = 0; b < batch.B; ++b) {
    const Example& e = examples[b];
    for (int64_t t = 0; t < batch.T; ++t) {
      const size_t i = static_cast<size_t>(b * batch.T + t);
      batch.position_ids[i] = t;
      if (t < e.size()) {
        batch.input_ids[i] = e.input_ids[t];
        // Position 0 is never a target (the loss shifts), so it may stay as is.
        batch.labels[i] = e.labels[t];
      }
    }
    batch.num_tokens += e.size();
  }
  return batch;
}

Batch Batcher::PackExamples(const std::vector<std::vector<Example>>& rows, int64_t T,
                            int64_t pad_id) {
  Batch batch;
  batch.B = static_cast<int64_t>(rows.size());
  batch.T = T;
  const size_t n = static_cast<size_t>(batch.B * T);
  batch.input_ids.assign(n, pad_id);
  batch.labels.assign(n, kIgnoreIndex);
  batch.position_ids.assign(n, 0);
  for (int64_t b = 0; b < batch.B; ++b) {
    int64_t t = 0;
    for (const Example& e : rows[b]) {
      for (size_t j = 0; j < e.input_ids.size() && t < T; ++j, ++t) {
        const size_t i = static_cast<size_t>(b * T + t);
        batch.input_ids[i] = e.input_ids[j];
        // The first token of a sequence has no predecessor within it: without
        // this the previous example's last token would be trained to predict it.
        batch.labels[i] = j == 0 ? kIgnoreIndex : e.labels[j];
        batch.position_ids[i] = static_cast<int64_t>(j);
        ++batch.num_tokens;
      }
    }
    // Padding tail: its own position run, so it forms a separate sequence.
    for (int64_t p = 0; t < T; ++t, ++p) batch.position_ids[b * T + t] = p;
  }
  return batch;
}

Batch Batcher::MakePaddedBatch(const std::vector<std::vector<int64_t>>& examples, int64_t pad_id) {
  std::vector<Example> e;
  e.reserve(examples.size());
  for (const auto& ids : examples) e.push_back(FullyTrainedExample(ids));
  return PadExamples(e, pad_id);
}

Batch Batcher::MakePackedBatch(const std::vector<std::vector<std::vector<int64_t>>>& rows,
                               int64_t T, int64_t pad_id) {
  std::vector<std::vector<Example>> e(rows.size());
  for (size_t b = 0; b < rows.size(); ++b) {
    for (const auto& ids : rows[b]) e[b].push_back(FullyTrainedExample(ids));
  }
  return PackExamples(e, T, pad_id);
}

absl::StatusOr<Example> Batcher::Pull() {
  if (carried_.has_value()) {
    Example e = std::move(*carried_);
    carried_.reset();
    return e;
  }
  ASSIGN_OR_RETURN(Example e, source_());
  ++pulled_;
  if (e.input_ids.empty() || e.size() > options_.max_seq_len ||
      e.labels.size() != e.input_ids.size()) {
    return absl::InternalError(absl::StrCat("example of ", e.size(), " tokens and ",
                                            e.labels.size(),
                                            " labels given to a batcher with "
                                            "max_seq_len ",
                                            options_.max_seq_len));
  }
  return e;
}

absl::StatusOr<Batch> Batcher::Next() {
  if (!options_.packing) {
    std::vector<Example> examples;
    examples.reserve(static_cast<size_t>(options_.batch_size));
    for (int64_t b = 0; b < options_.batch_size; ++b) {
      ASSIGN_OR_RETURN(Example e, Pull());
      examples.push_back(std::move(e));
    }
    return PadExamples(examples, options_.pad_id);
  }
  std::vector<std::vector<Example>> rows(static_cast<size_t>(options_.batch_size));
  for (auto& row : rows) {
    int64_t used = 0;
    while (true) {
      ASSIGN_OR_RETURN(Example e, Pull());
      if (used + e.size() > options_.max_seq_len) {
        carried_ = std::move(e);  // starts the next row
        break;
      }
      used += e.size();
      row.push_back(std::move(e));
      if (used == options_.max_seq_len) break;
    }
  }
  return PackExamples(rows, options_.max_seq_len, options_.pad_id);
}

absl::StatusOr<std::optional<Batch>> NextPaddedBatch(const FiniteExampleSource& source,
                                                     int64_t batch_size, int64_t pad_id) {
  std::vector<Example> examples;
  while (static_cast<int64_t>(examples.size()) < batch_size) {
    ASSIGN_OR_RETURN(std::optional<Example> e, source());
    if (!e.has_value()) break;
    examples.push_back(std::move(*e));
  }
  if (examples.empty()) return std::optional<Batch>();
  return std::optional<Batch>(Batcher::PadExamples(examples, pad_id));
}

}  // namespace foak

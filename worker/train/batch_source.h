// BatchSource: where the training loop gets its micro-batches -- the seam
// between worker/data and the step loop (train_job.cc). A source is an endless
// stream (epochs roll over inside it) and must be DETERMINISTIC given the job
// (seed included): exact resume rebuilds it and skips the micro-batches the
// interrupted run consumed (Skip), so the resumed run sees the very same
// batches. A source that can seek faster than replaying overrides Skip.
#ifndef FOAK_WORKER_TRAIN_BATCH_SOURCE_H_
#define FOAK_WORKER_TRAIN_BATCH_SOURCE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "worker/data/batch.h"

namespace foak {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual absl::StatusOr<Batch> Next() = 0;
  // Micro-batches in one epoch (for max_steps from epochs, and epoch numbers).
  virtual int64_t micro_batches_per_epoch() const = 0;
  // One line for the log, e.g. "420 examples, 51234 tokens".
  virtual std::string Describe() const = 0;
  // Skips `n` micro-batches: replays Next(), exact for any deterministic source.
  virtual absl::Status Skip(int64_t n) {
    for (int64_t i = 0; i < n; ++i) RETURN_IF_ERROR(Next().status());
    return absl::OkStatus();
  }
  // Examples inside the batches returned so far, or -1 when the source does
  // not count them. Recorded in checkpoints next to the micro-batch count.
  virtual int64_t examples_consumed() const { return -1; }
  // Resume: continue as a source that already returned `micro_batches`
  // batches holding `examples` examples (-1 = unknown). A source that can seek
  // by examples overrides this; the default replays Skip(micro_batches).
  virtual absl::Status Resume(int64_t micro_batches, int64_t examples) {
    (void)examples;
    return Skip(micro_batches);
  }
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_BATCH_SOURCE_H_

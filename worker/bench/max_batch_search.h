// FindMaxBatch: the largest batch (rows per step) that fits on the device,
// for a benchmark job's find_max_batch (bench_job.h). Torch-free: the caller
// supplies `fits`, which trains a couple of steps at a batch and answers
// true, false (out of memory) or an error (anything else, which ends the
// search).
//
// Memory grows about linearly with the batch, so the search doubles from
// `start` while it fits (never past `limit`), then bisects between the last
// batch that fit and the first that did not. Bisection stops once the
// bracket is within an eighth of the answer (max(1, lo / 8)): each trial costs
// real device time (two steps of a large batch), and a batch within 12.5% of
// the true maximum answers "how much larger does this kernel set let me go".
// When even `start` does not fit, the search halves downwards first.
// bench/hf_peer.py implements the same rule, so both sides are comparable.
#ifndef FOAK_WORKER_BENCH_MAX_BATCH_SEARCH_H_
#define FOAK_WORKER_BENCH_MAX_BATCH_SEARCH_H_

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

struct MaxBatchSearch {
  int64_t largest = 0;  // 0 when not even one row fits
  std::vector<std::pair<int64_t, bool>> trials;  // (batch, fitted), in order
};

absl::StatusOr<MaxBatchSearch> FindMaxBatch(
    int64_t start, int64_t limit, const std::function<absl::StatusOr<bool>(int64_t)>& fits);

}  // namespace foak

#endif  // FOAK_WORKER_BENCH_MAX_BATCH_SEARCH_H_

#include "worker/bench/max_batch_search.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace foak {

absl::StatusOr<MaxBatchSearch> FindMaxBatch(
    int64_t start, int64_t limit, const std::function<absl::StatusOr<bool>(int64_t)>& fits) {
  if (limit < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max batch limit = ", limit, "; expected >= 1"));
  }
  MaxBatchSearch search;
  auto trial = [&](int64_t batch) -> absl::StatusOr<bool> {
    absl::StatusOr<bool> fitted = fits(batch);
    if (fitted.ok()) search.trials.emplace_back(batch, *fitted);
    return fitted;
  };
  int64_t lo = 0;      // largest batch known to fit (0: none yet)
  int64_t hi = -1;     // smallest batch known not to fit (-1: none yet)
  int64_t b = std::clamp<int64_t>(start, 1, limit);
  absl::StatusOr<bool> first = trial(b);
  if (!first.ok()) return first.status();
  if (*first) {
    lo = b;
    while (lo < limit) {
      const int64_t next = std::min(2 * lo, limit);
      absl::StatusOr<bool> fitted = trial(next);
      if (!fitted.ok()) return fitted.status();
      if (!*fitted) {
        hi = next;
        break;
      }
      lo = next;
    }
    if (hi < 0) {  // the limit itself fits
      search.largest = lo;
      return search;
    }
  } else {
    hi = b;
    for (int64_t down = b / 2; down >= 1; down /= 2) {
      absl::StatusOr<bool> fitted = trial(down);
      if (!fitted.ok()) return fitted.status();
      if (*fitted) {
        lo = down;
        break;
      }
      hi = down;
    }
    if (lo == 0) return search;  // not even one row fits
  }
  while (hi - lo > std::max<int64_t>(1, lo / 8)) {
    const int64_t mid = lo + (hi - lo) / 2;
    absl::StatusOr<bool> fitted = trial(mid);
    if (!fitted.ok()) return fitted.status();
    if (*fitted) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  search.largest = lo;
  return search;
}

}  // namespace foak

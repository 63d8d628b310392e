#include "worker/generate/sampler.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace foak {

absl::Status ValidateSamplingOptions(const SamplingOptions& o) {
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature = ", o.temperature, "; expected >= 0 (0 = greedy)"));
  }
  if (!(o.top_p > 0.0 && o.top_p <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_p = ", o.top_p, "; expected a value in (0, 1] (1 = off)"));
  }
  if (o.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k = ", o.top_k, "; expected >= 0 (0 = off)"));
  }
  return absl::OkStatus();
}

at::Tensor FilterLogits(const at::Tensor& logits, double top_p, int64_t top_k) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  at::Tensor out = logits;
  const int64_t v = logits.size(0);
  if (top_k > 0 && top_k < v) {
    // Keep every token at least as likely as the k-th (ties kept, as HF does).
    at::Tensor kth = std::get<0>(at::topk(out, top_k)).select(0, top_k - 1);
    out = out.masked_fill(out < kth, neg_inf);
  }
  if (top_p < 1.0) {
    auto [sorted, order] = at::sort(out, /*dim=*/0, /*descending=*/false);
    at::Tensor cumulative = sorted.softmax(0).cumsum(0);
    // Ascending order: drop the tail whose mass is at most 1 - top_p; the most
    // likely token always stays.
    at::Tensor remove_sorted = cumulative <= (1.0 - top_p);
    remove_sorted.select(0, v - 1).fill_(false);
    at::Tensor remove = at::zeros_like(remove_sorted).scatter(0, order, remove_sorted);
    out = out.masked_fill(remove, neg_inf);
  }
  return out;
}

int64_t SampleNextToken(const at::Tensor& logits, const SamplingOptions& options,
                        at::Generator& generator) {
  at::Tensor l = logits.to(at::kFloat).reshape({-1});
  if (options.temperature == 0.0) return l.argmax().item<int64_t>();
  l = FilterLogits(l / options.temperature, options.top_p, options.top_k);
  at::Tensor probs = l.softmax(0);
  return at::multinomial(probs.cpu(), 1, /*replacement=*/false, generator).item<int64_t>();
}

}  // namespace foak

// Next-token selection as Hugging Face's generate() does it: greedy when
// temperature is 0; otherwise logits / temperature, then top-k, then top-p
// (nucleus: the smallest set of most likely tokens whose probability reaches
// top_p, never empty), then one draw from the renormalised distribution with a
// seeded generator, so a seed reproduces a sample.
#ifndef FOAK_WORKER_GENERATE_SAMPLER_H_
#define FOAK_WORKER_GENERATE_SAMPLER_H_

#include <ATen/ATen.h>

#include <cstdint>

#include "absl/status/status.h"

namespace foak {

struct SamplingOptions {
  double temperature = 0.0;  // 0 = greedy (argmax)
  double top_p = 1.0;        // (0, 1]; 1 = off
  int64_t top_k = 0;         // 0 = off
  uint64_t seed = 0;
};

// Names the option that is out of range and the valid range.
absl::Status ValidateSamplingOptions(const SamplingOptions& options);

// Keeps the logits of the tokens top-k / top-p allow and sets the others to
// -inf. logits (V) fp32 after temperature; returns (V).
at::Tensor FilterLogits(const at::Tensor& logits, double top_p, int64_t top_k);

// Chooses the next token from logits (V) (any float dtype; computed in fp32).
int64_t SampleNextToken(const at::Tensor& logits, const SamplingOptions& options,
                        at::Generator& generator);

}  // namespace foak

#endif  // FOAK_WORKER_GENERATE_SAMPLER_H_

// Text continuation with a LlamaForCausalLM, for looking at what a fine-tune
// learned (`foak-worker generate`).
//
// Each step runs the model over the whole sequence so far and takes the last
// position's logits: no KV cache yet, so a step costs a full forward of the
// prefix (fine for inspecting a model; a cache belongs with the kernel work).
// Generation stops after max_new_tokens or at the first stop token (the stop
// token is not returned).
#ifndef FOAK_WORKER_GENERATE_GENERATE_H_
#define FOAK_WORKER_GENERATE_GENERATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/generate/sampler.h"
#include "worker/model/llama.h"

namespace foak {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  std::vector<int64_t> stop_ids;  // e.g. the tokenizer's EOS and end-of-turn ids
};

struct Generation {
  std::vector<int64_t> ids;  // new tokens only, without the stop token
  bool stopped = false;      // ended at a stop token (else at max_new_tokens)
};

// prompt_ids must be non-empty and within the model's vocabulary. The model is
// used as it is (device, dtype, eval mode are the caller's).
absl::StatusOr<Generation> Generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt_ids,
                                    const GenerateOptions& options);

}  // namespace foak

#endif  // FOAK_WORKER_GENERATE_GENERATE_H_

#include "worker/generate/generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>

#include <algorithm>
#include <exception>

#include "absl/strings/str_cat.h"

namespace foak {

absl::StatusOr<Generation> Generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt_ids,
                                    const GenerateOptions& options) {
  if (absl::Status s = ValidateSamplingOptions(options.sampling); !s.ok()) return s;
  if (prompt_ids.empty()) {
    return absl::InvalidArgumentError("generate: the prompt has no tokens; give some text");
  }
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens = ", options.max_new_tokens, "; expected >= 0"));
  }
  const int64_t vocab = model->config().vocab_size;
  for (int64_t id : prompt_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("generate: prompt token id ", id, " is outside the vocabulary [0, ", vocab,
                       ") of the model"));
    }
  }
  Generation result;
  try {
    torch::NoGradGuard no_grad;
    const torch::Device device = model->LmHeadWeight().device();
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.sampling.seed);
    std::vector<int64_t> ids = prompt_ids;
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      torch::Tensor input =
          torch::tensor(ids, torch::kLong).reshape({1, static_cast<int64_t>(ids.size())}).to(device);
      torch::Tensor hidden = model->Hidden(input).select(1, -1);         // (1, H)
      torch::Tensor logits = model->LogitsFromHidden(hidden).select(0, 0);  // (V)
      const int64_t next = SampleNextToken(logits, options.sampling, generator);
      if (std::find(options.stop_ids.begin(), options.stop_ids.end(), next) !=
          options.stop_ids.end()) {
        result.stopped = true;
        break;
      }
      ids.push_back(next);
      result.ids.push_back(next);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("generate: ", e.what()));
  }
  return result;
}

}  // namespace foak

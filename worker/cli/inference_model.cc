// See inference_model.h.
#include "worker/cli/inference_model.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/lora/lora_io.h"
#include "worker/model/weights.h"
#include "worker/train/trainer.h"

namespace foak {

absl::StatusOr<LlamaForCausalLM> LoadInferenceModel(const ModelConfig& config,
                                                    const InferenceModelOptions& options) {
  try {
    ModelInit init;
    init.options = torch::TensorOptions()
                       .device(options.device)
                       .dtype(options.dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat);
    init.random = false;
    LlamaForCausalLM model(config, init);
    RETURN_IF_ERROR(LoadWeights(model, options.model_dir));
    if (!options.adapter_dir.empty()) {
      RETURN_IF_ERROR(LoadLoraAdapter(model, options.adapter_dir).status());
    }
    model->eval();
    return model;
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("loading ", options.model_dir));
  }
}

}  // namespace foak

// `foak-worker init-model`: a randomly initialised model of a config.json in
// Hugging Face format. The demo and the tests need a model and there are no
// downloads, so the debug model of examples/ is made here.
#include <torch/utils.h>

#include <cstdint>
#include <exception>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/cli/commands.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/weights.h"
#include "worker/train/trainer.h"

namespace foak {
namespace {

constexpr char kInitModelUsage[] =
    "Usage: foak-worker init-model --config CONFIG.json --out DIR [--seed N]\n"
    "                              [--dtype float32|bfloat16]\n"
    "\n"
    "Writes a randomly initialised model (transformers' init: normal(0,\n"
    "initializer_range) weights, unit norms) for a Hugging Face config.json into DIR\n"
    "as config.json + model.safetensors.\n"
    "  --seed N     torch seed for the initialisation (default 42)\n"
    "  --dtype T    dtype of the saved weights (default float32)\n";

absl::Status RunInitModel(const Flags& flags) {
  const std::string config_path = flags.Get("config");
  ASSIGN_OR_RETURN(std::string dtype, ParseDtype(flags));
  int64_t seed = 42;
  if (std::string s = flags.Get("seed"); !s.empty() && (!absl::SimpleAtoi(s, &seed) || seed < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("--seed ", s, ": expected an integer >= 0"));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text, config_path));
  try {
    torch::manual_seed(static_cast<uint64_t>(seed));
    LlamaForCausalLM model(config);
    SaveOptions options;
    options.dtype = dtype;
    return SaveModel(model, flags.Get("out"), options);
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, "init-model");
  }
}

}  // namespace

Command InitModelCommand() {
  return {"init-model", kInitModelUsage, {"config", "out", "seed", "dtype"}, {}, {"config", "out"},
          nullptr,      RunInitModel};
}

}  // namespace foak

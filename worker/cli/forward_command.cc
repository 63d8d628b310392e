// `foak-worker forward`: runs a model (optionally with a LoRA adapter) on given
// token ids and writes the logits to a safetensors file, so that the GPU host
// can compare foak with transformers / PEFT without Python linking to foak.
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/cli/commands.h"
#include "worker/cli/inference_model.h"
#include "worker/model/llama.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"
#include "worker/train/train_job.h"
#include "worker/train/trainer.h"

namespace foak {
namespace {

constexpr char kForwardUsage[] =
    "Usage: foak-worker forward --model DIR --input-ids IDS --out FILE.safetensors\n"
    "                           [--position-ids IDS] [--adapter DIR]\n"
    "                           [--dtype float32|bfloat16] [--device auto|cpu|cuda[:N]]\n"
    "\n"
    "Runs the model in DIR on the token ids and writes FILE.safetensors with\n"
    "\"logits\" F32 (B, T, V), \"input_ids\" I64 (B, T) and, when given,\n"
    "\"position_ids\" I64 (B, T).\n"
    "  --input-ids IDS     rows separated by ';', ids by ',': \"1,2,3;4,5,6\" is B=2, T=3\n"
    "  --position-ids IDS  same layout (default 0..T-1 per row)\n"
    "  --adapter DIR       a LoRA adapter in PEFT's format (adapter_config.json +\n"
    "                      adapter_model.safetensors) applied on top (default none)\n"
    "  --dtype T           parameter dtype for the forward pass (default float32)\n"
    "  --device D          default auto (CUDA when available)\n";

absl::Status RunForward(const Flags& flags) {
  const std::string model_dir = flags.Get("model");
  ASSIGN_OR_RETURN(std::string dtype, ParseDtype(flags));
  ASSIGN_OR_RETURN(auto ids, ParseIdRows("input-ids", flags.Get("input-ids")));
  const int64_t B = static_cast<int64_t>(ids.size());
  const int64_t T = static_cast<int64_t>(ids[0].size());
  std::vector<std::vector<int64_t>> positions;
  if (std::string p = flags.Get("position-ids"); !p.empty()) {
    ASSIGN_OR_RETURN(positions, ParseIdRows("position-ids", p));
    if (static_cast<int64_t>(positions.size()) != B ||
        static_cast<int64_t>(positions[0].size()) != T) {
      return absl::InvalidArgumentError(absl::StrCat("--position-ids is ", positions.size(), "x",
                                                     positions[0].size(), " but --input-ids is ", B,
                                                     "x", T, "; they must have the same shape"));
    }
  }
  ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(flags.Get("device", "auto")));
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  std::vector<int64_t> flat_ids, flat_positions;
  for (const auto& row : ids) {
    for (int64_t id : row) {
      if (id < 0 || id >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("--input-ids: id ", id,
                                                       " is outside the vocabulary [0, ",
                                                       config.vocab_size, ") of ", model_dir));
      }
      flat_ids.push_back(id);
    }
  }
  for (const auto& row : positions)
    flat_positions.insert(flat_positions.end(), row.begin(), row.end());

  InferenceModelOptions options;
  options.model_dir = model_dir;
  options.adapter_dir = flags.Get("adapter");
  options.dtype = dtype;
  options.device = device;
  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadInferenceModel(config, options));
  torch::Tensor logits;
  try {
    torch::NoGradGuard no_grad;
    torch::Tensor input = torch::tensor(flat_ids, torch::kLong).reshape({B, T}).to(device);
    torch::Tensor pos;
    if (!flat_positions.empty()) {
      pos = torch::tensor(flat_positions, torch::kLong).reshape({B, T}).to(device);
    }
    logits = model->forward(input, pos).to(torch::kCPU, torch::kFloat).contiguous();  // (B, T, V)
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("forward pass of ", model_dir));
  }
  std::vector<TensorView> tensors;
  tensors.push_back({"logits",
                     DType::kF32,
                     {B, T, config.vocab_size},
                     logits.data_ptr(),
                     static_cast<uint64_t>(logits.numel()) * sizeof(float)});
  tensors.push_back(
      {"input_ids", DType::kI64, {B, T}, flat_ids.data(), flat_ids.size() * sizeof(int64_t)});
  if (!flat_positions.empty()) {
    tensors.push_back({"position_ids",
                       DType::kI64,
                       {B, T},
                       flat_positions.data(),
                       flat_positions.size() * sizeof(int64_t)});
  }
  return WriteSafetensors(flags.Get("out"), tensors);
}

}  // namespace

Command ForwardCommand() {
  return {"forward",
          kForwardUsage,
          {"model", "input-ids", "position-ids", "adapter", "out", "dtype", "device"},
          {},
          {"model", "input-ids", "out"},
          nullptr,
          RunForward};
}

}  // namespace foak

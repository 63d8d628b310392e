#include "worker/train/lora_training.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_io.h"
#include "worker/model/weights.h"
#include "worker/train/checkpoint.h"
#include "worker/train/checkpoint_dir.h"

namespace foak {

absl::StatusOr<LlamaForCausalLM> LoadQuantizedBase(const ModelConfig& config, const JobConfig& job,
                                                   torch::Device device, torch::Dtype dtype,
                                                   const KernelSet& kernels, Nf4Stats* stats) {
  try {
    ModelInit init;
    init.options = torch::TensorOptions().device(device).dtype(dtype);
    init.random = false;
    init.kernels = kernels;
    // The dense projections are dropped as they are made; LoadNf4Weights
    // fills them one by one from the checkpoint.
    init.on_decoder_linear = ReleaseOnCreateHook();
    LlamaForCausalLM model(config, init);
    Nf4Options options;
    options.double_quant = job.quantization.double_quant;
    ASSIGN_OR_RETURN(Nf4Stats loaded, LoadNf4Weights(model, job.model, options));
    if (stats != nullptr) *stats = loaded;
    return model;
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("loading the model from ", job.model, " into NF4"));
  }
}

absl::StatusOr<int64_t> PrepareLoraModel(LlamaForCausalLM& model, const JobConfig& job,
                                         const std::optional<std::string>& resume_dir) {
  try {
    if (resume_dir.has_value()) {
      ASSIGN_OR_RETURN(LoraConfig loaded, LoadLoraAdapter(model, *resume_dir));
      (void)loaded;  // the run fingerprint already checked it equals job.lora
    } else {
      RETURN_IF_ERROR(ApplyLora(model, job.lora).status());
    }
    int64_t trainable = 0;
    for (const auto& [name, p] : LoraNamedParameters(model)) trainable += p.numel();
    return trainable;
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, "attaching the LoRA adapters");
  }
}

std::function<absl::Status(Trainer&, const std::string&)> LoraSaveHook(const JobConfig& job) {
  const LoraConfig config = job.lora;
  const std::string base = job.model;
  return [config, base](Trainer& trainer, const std::string& dir) -> absl::Status {
    try {
      RETURN_IF_ERROR(SaveLoraAdapter(trainer.model(), config, dir, base));
    } catch (const std::exception& e) {
      return TorchErrorToStatus(e, absl::StrCat("saving the LoRA adapter to ", dir));
    }
    return CopyTokenizerFiles(base, dir);
  };
}

absl::Status WriteMergedModel(const JobConfig& job, const ModelConfig& config,
                              const std::string& adapter_dir, const std::string& merged_dir,
                              torch::Device device) {
  const std::string partial = merged_dir + ".partial";
  RETURN_IF_ERROR(RemoveTree(partial));
  absl::Status status = [&]() -> absl::Status {
    try {
      ModelInit init;
      init.options = torch::TensorOptions().device(device).dtype(torch::kFloat);
      init.random = false;
      if (job.Quantized()) init.on_decoder_linear = ReleaseOnCreateHook();
      LlamaForCausalLM model(config, init);
      if (job.Quantized()) {
        // The codes the run trained against: made from the weights in the
        // run's model dtype (bf16 for pure bf16, else fp32), then dequantised
        // into fp32 for the merge.
        Nf4Options options;
        options.double_quant = job.quantization.double_quant;
        std::optional<torch::Dtype> round_through;
        if (job.hyperparameters.precision == Precision::kBf16) round_through = torch::kBFloat16;
        RETURN_IF_ERROR(LoadNf4Weights(model, job.model, options, round_through).status());
        RETURN_IF_ERROR(DequantizeDecoderLinears(model, torch::kFloat));
      } else {
        RETURN_IF_ERROR(LoadWeights(model, job.model));
      }
      RETURN_IF_ERROR(LoadLoraAdapter(model, adapter_dir).status());
      RETURN_IF_ERROR(MergeLora(model));
      SaveOptions save;
      save.max_shard_bytes = static_cast<uint64_t>(job.hyperparameters.max_shard_bytes);
      RETURN_IF_ERROR(SaveModel(model, partial, save));
    } catch (const std::exception& e) {
      return TorchErrorToStatus(e, absl::StrCat("merging the adapter into ", merged_dir));
    }
    RETURN_IF_ERROR(CopyTokenizerFiles(job.model, partial));
    return FsyncTree(partial);
  }();
  if (!status.ok()) {
    RemoveTree(partial).IgnoreError();
    return status;
  }
  RETURN_IF_ERROR(RemoveTree(merged_dir));
  if (std::rename(partial.c_str(), merged_dir.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("cannot rename ", partial, " to"), merged_dir, errno);
  }
  return absl::OkStatus();
}

}  // namespace foak

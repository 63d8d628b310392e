// PEFT-format adapter files (see lora_io.h).
#include "worker/lora/lora_io.h"

#include <stdio.h>
#include <unistd.h>

#include <torch/types.h>
#include <torch/utils.h>

#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/lora/lora.h"
#include "worker/lora/lora_layer.h"
#include "worker/model/safetensors.h"
#include "worker/model/weights.h"

namespace foak {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("renaming to '", to, "'"), from, errno);
  }
  return absl::OkStatus();
}

// Writes the files into a temp folder, then swaps it in under `dir`.
absl::Status WriteAdapterFolder(const std::string& dir, const std::string& config_json,
                                const std::vector<TensorView>& views) {
  const std::string pid = std::to_string(static_cast<long>(::getpid()));
  const std::string tmp_dir = absl::StrCat(dir, ".tmp.", pid);
  const std::string old_dir = absl::StrCat(dir, ".old.", pid);
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) RETURN_IF_ERROR(MakeDirs(dir.substr(0, slash)));
  RETURN_IF_ERROR(RemoveTree(tmp_dir));  // left by an earlier crash of this pid
  RETURN_IF_ERROR(MakeDirs(tmp_dir));
  RETURN_IF_ERROR(WriteFileAtomically(JoinPath(tmp_dir, kLoraAdapterConfigFile), config_json));
  RETURN_IF_ERROR(
      WriteSafetensors(JoinPath(tmp_dir, kLoraAdapterWeightsFile), views, {{"format", "pt"}}));
  if (PathExists(dir)) {
    RETURN_IF_ERROR(RemoveTree(old_dir));
    RETURN_IF_ERROR(Rename(dir, old_dir));
    absl::Status moved = Rename(tmp_dir, dir);
    if (!moved.ok()) {
      Rename(old_dir, dir).IgnoreError();  // put the previous adapter back
      return moved;
    }
    return RemoveTree(old_dir);
  }
  return Rename(tmp_dir, dir);
}

}  // namespace

absl::Status SaveLoraAdapter(LlamaForCausalLM& model, const LoraConfig& config,
                             const std::string& adapter_dir,
                             const std::string& base_model_name_or_path) {
  std::string dir = adapter_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return absl::InvalidArgumentError("SaveLoraAdapter: empty adapter_dir");
  ASSIGN_OR_RETURN(std::string config_json,
                   LoraAdapterConfigJson(config, base_model_name_or_path));
  ASSIGN_OR_RETURN(std::vector<std::string> targets, ResolveLoraTargets(config));
  if (CountLoraAdapters(model) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("SaveLoraAdapter ", dir, ": the model has no LoRA adapters"));
  }
  // The attached adapters must be what the config describes, or PEFT would
  // build a different model from the files.
  const std::set<std::string> targeted(targets.begin(), targets.end());
  for (const NamedLinear& l : FindTargetLinears(model, LoraTargetModuleNames())) {
    const LoraAdapter* adapter = FindLoraAdapter(*l.linear);
    const std::string leaf = l.name.substr(l.name.rfind('.') + 1);
    if ((adapter != nullptr) != (targeted.count(leaf) > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SaveLoraAdapter ", dir, ": ", l.name, adapter ? " has" : " has no",
          " LoRA adapter but target_modules (", absl::StrJoin(targets, ", "), ")",
          adapter ? " does not name it" : " names it"));
    }
    if (adapter != nullptr && adapter->lora_A->weight.size(0) != config.r) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SaveLoraAdapter ", dir, ": ", l.name, " has rank ", adapter->lora_A->weight.size(0),
          " but the config says r=", config.r));
    }
  }

  std::vector<torch::Tensor> host;  // own the bytes the views point at
  std::vector<TensorView> views;
  try {
    torch::NoGradGuard no_grad;
    for (const auto& [name, param] : LoraNamedParameters(model)) {
      torch::Tensor t = param.detach().to(torch::kCPU).contiguous();
      ASSIGN_OR_RETURN(DType dtype, SafetensorsFloatDtype(t.scalar_type()));
      host.push_back(t);
      views.push_back(TensorView{kPeftNamePrefix + name, dtype,
                                 std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                                 t.data_ptr(), static_cast<uint64_t>(t.nbytes())});
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("SaveLoraAdapter ", dir,
                                            ": copying LoRA weights to the host failed: ",
                                            e.what_without_backtrace()));
  }
  return WriteAdapterFolder(dir, config_json, views);
}

absl::StatusOr<LoraConfig> LoadLoraAdapter(LlamaForCausalLM& model, const std::string& adapter_dir) {
  const std::string config_path = JoinPath(adapter_dir, kLoraAdapterConfigFile);
  const std::string weights_path = JoinPath(adapter_dir, kLoraAdapterWeightsFile);
  ASSIGN_OR_RETURN(std::string config_json, ReadFileToString(config_path));
  ASSIGN_OR_RETURN(LoraConfig config, ParseLoraAdapterConfig(config_json, config_path));
  ASSIGN_OR_RETURN(std::vector<std::string> targets, ResolveLoraTargets(config));
  if (CountLoraAdapters(model) > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "LoadLoraAdapter ", adapter_dir, ": the model already has LoRA adapters"));
  }
  if (!PathExists(weights_path)) {
    const bool has_bin = PathExists(JoinPath(adapter_dir, "adapter_model.bin"));
    return absl::NotFoundError(absl::StrCat(
        weights_path, " does not exist",
        has_bin ? " (adapter_model.bin is a pickle, which foak does not read: re-save the "
                  "adapter with safe_serialization=True)"
                : ""));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(weights_path));

  // Pass 1: every expected tensor present with the right shape and a float
  // dtype; nothing in the file left over.
  struct Expected {
    std::string file_name;
    std::vector<int64_t> shape;
  };
  std::vector<Expected> expected;
  for (const NamedLinear& l : FindTargetLinears(model, targets)) {
    const int64_t out = l.linear->out_features(), in = l.linear->in_features();
    expected.push_back({absl::StrCat(kPeftNamePrefix, l.name, ".lora_A.weight"), {config.r, in}});
    expected.push_back({absl::StrCat(kPeftNamePrefix, l.name, ".lora_B.weight"), {out, config.r}});
  }
  std::set<std::string> used;
  for (const Expected& e : expected) {
    const TensorInfo* info = file->Find(e.file_name);
    if (info == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          weights_path, " has no tensor '", e.file_name, "', which adapter_config.json's "
          "target_modules (", absl::StrJoin(targets, ", "), ") require"));
    }
    if (info->shape != e.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          weights_path, ": tensor '", e.file_name, "' has shape ", ShapeString(info->shape),
          ", expected ", ShapeString(e.shape), " (r=", config.r,
          " from adapter_config.json and the base model's layer size): is this adapter for "
          "another base model, or is its config's r wrong?"));
    }
    if (!TorchFloatDtype(info->dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(weights_path, ": tensor '", e.file_name,
                                                     "' has dtype ", std::string(DTypeName(info->dtype)),
                                                     ", expected a float dtype"));
    }
    used.insert(e.file_name);
  }
  for (const TensorInfo& info : file->tensors()) {
    if (!used.count(info.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          weights_path, " has unexpected tensor '", info.name, "': it names no LoRA weight of a "
          "module in target_modules (", absl::StrJoin(targets, ", "), ") of this base model"));
    }
  }

  // Pass 2: attach and copy (dtype converted on the way).
  ASSIGN_OR_RETURN(std::vector<torch::Tensor> params, ApplyLora(model, config));
  try {
    torch::NoGradGuard no_grad;
    std::vector<std::pair<std::string, torch::Tensor>> named = LoraNamedParameters(model);
    for (auto& [name, param] : named) {
      const TensorInfo* info = file->Find(kPeftNamePrefix + name);
      // The mapping is read-only; from_blob wants void*, but copy_ only reads.
      torch::Tensor src = torch::from_blob(const_cast<void*>(file->Data(*info)), info->shape,
                                           torch::TensorOptions().dtype(*TorchFloatDtype(info->dtype)));
      param.copy_(src);
    }
  } catch (const c10::Error& e) {
    RemoveLora(model);
    return absl::InternalError(absl::StrCat("LoadLoraAdapter: copying ", weights_path,
                                            " into the model failed: ", e.what_without_backtrace()));
  }
  return config;
}

}  // namespace foak

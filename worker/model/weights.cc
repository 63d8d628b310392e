// Weight I/O between LlamaForCausalLM and Hugging Face model folders (see
// weights.h). Loading is two passes: the first only compares names, shapes and
// dtypes against the model and gathers every problem into one message (a
// wrong config.json usually breaks many tensors at once, and the user should
// see the whole picture in one go); the second copies straight out of the
// memory mapping, converting dtype on the way, so no second full copy of the
// checkpoint is ever held in RAM.
#include "worker/model/weights.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <map>
#include <memory>
#include <string>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"

namespace foak {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string ShapeString(c10::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape.begin(), shape.end(), ","), "]");
}

// Which config.json fields determine the shape of parameter `name`, with their
// values, e.g. "num_key_value_heads=2, head_dim=16, hidden_size=64".
std::string ShapeFields(const std::string& name, const ModelConfig& c) {
  auto field = [](const char* key, int64_t value) { return absl::StrCat(key, "=", value); };
  if (EndsWith(name, "embed_tokens.weight") || EndsWith(name, "lm_head.weight")) {
    return absl::StrCat(field("vocab_size", c.vocab_size), ", ", field("hidden_size", c.hidden_size));
  }
  if (name.find("q_proj") != std::string::npos || name.find("o_proj") != std::string::npos) {
    return absl::StrCat(field("num_attention_heads", c.num_attention_heads), ", ",
                        field("head_dim", c.head_dim), ", ", field("hidden_size", c.hidden_size));
  }
  if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) {
    return absl::StrCat(field("num_key_value_heads", c.num_key_value_heads), ", ",
                        field("head_dim", c.head_dim), ", ", field("hidden_size", c.hidden_size));
  }
  if (name.find("_proj") != std::string::npos) {  // gate/up/down
    return absl::StrCat(field("intermediate_size", c.intermediate_size), ", ",
                        field("hidden_size", c.hidden_size));
  }
  return field("hidden_size", c.hidden_size);
}

absl::StatusOr<std::optional<torch::Dtype>> ParseSaveDtype(const std::string& name) {
  if (name.empty()) return std::optional<torch::Dtype>();
  if (name == "float32") return std::optional<torch::Dtype>(torch::kFloat32);
  if (name == "bfloat16") return std::optional<torch::Dtype>(torch::kBFloat16);
  if (name == "float16") return std::optional<torch::Dtype>(torch::kFloat16);
  return absl::InvalidArgumentError(absl::StrCat("SaveOptions.dtype '", name,
                                                 "' is not one of \"\", float32, bfloat16, float16"));
}

std::string TransformersDtypeName(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    case torch::kFloat64: return "float64";
    default: return "float32";
  }
}

// Tensors a checkpoint may carry that the model does not own: a tied model's
// lm_head copy and the rotary tables some older exports persisted.
bool IsIgnorableExtra(const std::string& name, const ModelConfig& config) {
  if (config.tie_word_embeddings && name == "lm_head.weight") return true;
  return EndsWith(name, "rotary_emb.inv_freq");
}

// Renaming uses POSIX rename, not std::filesystem (see common/file_util.h).
absl::Status Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("renaming to '", to, "'"), from, errno);
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<torch::Dtype> TorchFloatDtype(DType dtype) {
  switch (dtype) {
    case DType::kF64: return torch::kFloat64;
    case DType::kF32: return torch::kFloat32;
    case DType::kF16: return torch::kFloat16;
    case DType::kBF16: return torch::kBFloat16;
    default: return std::nullopt;
  }
}

absl::StatusOr<DType> SafetensorsFloatDtype(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat64: return DType::kF64;
    case torch::kFloat32: return DType::kF32;
    case torch::kFloat16: return DType::kF16;
    case torch::kBFloat16: return DType::kBF16;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor dtype ", c10::toString(dtype),
          " has no safetensors float type (float64, float32, float16, bfloat16)"));
  }
}

absl::Status LoadWeights(LlamaForCausalLM& model, const std::string& model_dir) {
  return LoadWeights(model, model_dir, {});
}

absl::Status LoadWeights(LlamaForCausalLM& model, const std::string& model_dir,
                         const std::vector<ExternalTensor>& external) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> checkpoint,
                   SafetensorsCheckpoint::Open(model_dir));
  const ModelConfig& config = model->config();

  struct Planned {
    torch::Tensor param;                 // undefined for an external tensor
    const ExternalTensor* external = nullptr;
    SafetensorsCheckpoint::Entry entry;
    torch::Dtype file_dtype;
  };
  std::vector<Planned> plan;
  std::vector<std::string> problems;
  std::map<std::string, bool> expected;
  // Checks one expected tensor against the file; plans it when it fits.
  auto check = [&](const std::string& name, c10::IntArrayRef shape, const torch::Tensor& param,
                   const ExternalTensor* ext) {
    expected[name] = true;
    absl::StatusOr<SafetensorsCheckpoint::Entry> entry = checkpoint->Find(name);
    if (!entry.ok()) {
      problems.push_back(absl::StrCat("missing tensor '", name, "' (expected shape ",
                                      ShapeString(shape), " from config.json ",
                                      ShapeFields(name, config), ")"));
      return;
    }
    const TensorInfo& info = *entry->info;
    const std::string& file = entry->file->path();
    if (c10::IntArrayRef(info.shape) != shape) {
      problems.push_back(absl::StrCat(file, ": tensor '", name, "' has shape ",
                                      ShapeString(info.shape), " but config.json (",
                                      ShapeFields(name, config), ") needs ",
                                      ShapeString(shape)));
      return;
    }
    std::optional<torch::Dtype> file_dtype = TorchFloatDtype(info.dtype);
    if (!file_dtype) {
      problems.push_back(absl::StrCat(file, ": tensor '", name, "' has dtype ",
                                      std::string(DTypeName(info.dtype)),
                                      "; a floating-point dtype (F32, BF16, F16, F64) is needed"));
      return;
    }
    plan.push_back(Planned{param, ext, *entry, *file_dtype});
  };
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    check(item.key(), item.value().sizes(), item.value(), nullptr);
  }
  for (const ExternalTensor& e : external) {
    if (expected.count(e.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LoadWeights: '", e.name, "' is both a parameter of the model and an external tensor"));
    }
    check(e.name, e.shape, torch::Tensor(), &e);
  }
  for (const std::string& name : checkpoint->TensorNames()) {
    if (expected.count(name) || IsIgnorableExtra(name, config)) continue;
    absl::StatusOr<SafetensorsCheckpoint::Entry> entry = checkpoint->Find(name);
    problems.push_back(absl::StrCat(entry.ok() ? entry->file->path() : model_dir,
                                    ": unexpected tensor '", name,
                                    "' (not a parameter of this ", config.model_type,
                                    " model with num_hidden_layers=", config.num_hidden_layers,
                                    ", tie_word_embeddings=",
                                    config.tie_word_embeddings ? "true" : "false", ")"));
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": the weights do not fit config.json (", problems.size(), " problem",
        problems.size() == 1 ? "" : "s", "):\n  ", absl::StrJoin(problems, "\n  ")));
  }

  try {
    torch::NoGradGuard no_grad;
    for (Planned& p : plan) {
      // The mapping is read-only; from_blob wants void*, but copy_ only reads
      // (and an external loader is told the tensor is read-only).
      void* data = const_cast<void*>(p.entry.file->Data(*p.entry.info));
      torch::Tensor src = torch::from_blob(data, p.entry.info->shape,
                                           torch::TensorOptions().dtype(p.file_dtype));
      if (p.external != nullptr) {
        absl::Status loaded = p.external->load(src);
        if (!loaded.ok()) {
          return absl::Status(loaded.code(), absl::StrCat(p.entry.file->path(), ": tensor '",
                                                          p.external->name, "': ",
                                                          loaded.message()));
        }
      } else {
        p.param.copy_(src);
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(model_dir, ": copying weights into the model failed: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::Status SaveModel(LlamaForCausalLM& model, const std::string& model_dir,
                       const SaveOptions& options) {
  ASSIGN_OR_RETURN(std::optional<torch::Dtype> save_dtype, ParseSaveDtype(options.dtype));
  std::string dir = model_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return absl::InvalidArgumentError("SaveModel: empty model_dir");
  const std::string pid = std::to_string(static_cast<long>(::getpid()));
  const std::string tmp_dir = absl::StrCat(dir, ".tmp.", pid);
  const std::string old_dir = absl::StrCat(dir, ".old.", pid);

  // Contiguous CPU copies in the on-disk dtype (no copy when the parameter
  // already is one); they own the bytes the TensorViews point at.
  std::vector<torch::Tensor> host;
  std::vector<TensorView> views;
  std::optional<torch::Dtype> first_dtype;
  try {
    torch::NoGradGuard no_grad;
    for (const auto& item : model->named_parameters(/*recurse=*/true)) {
      torch::Tensor p = item.value().detach();
      if (options.tensor_for) p = options.tensor_for(item.key(), p).detach();
      const torch::Dtype dtype = save_dtype.value_or(p.scalar_type());
      if (!first_dtype) first_dtype = dtype;
      ASSIGN_OR_RETURN(DType st_dtype, SafetensorsFloatDtype(dtype));
      torch::Tensor t = p.to(torch::kCPU, dtype).contiguous();
      host.push_back(t);
      views.push_back(TensorView{item.key(), st_dtype,
                                 std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                                 t.data_ptr(), static_cast<uint64_t>(t.nbytes())});
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("SaveModel ", dir, ": copying parameters to the host failed: ",
                                            e.what_without_backtrace()));
  }

  ModelConfig config = model->config();
  config.torch_dtype = TransformersDtypeName(first_dtype.value_or(torch::kFloat32));

  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) RETURN_IF_ERROR(MakeDirs(dir.substr(0, slash)));
  RETURN_IF_ERROR(RemoveTree(tmp_dir));  // left by an earlier crash of this pid
  absl::Status written = MakeDirs(tmp_dir);
  if (written.ok()) {
    written = WriteFileAtomically(JoinPath(tmp_dir, "config.json"), ModelConfigToJson(config));
  }
  if (written.ok()) written = WriteSafetensorsCheckpoint(tmp_dir, views, options.max_shard_bytes);
  if (!written.ok()) {
    // A full disk must not also keep the half-written copy (it may be large).
    RemoveTree(tmp_dir).IgnoreError();
    return written;
  }
  host.clear();

  // Swap: the final name always holds either the old or the new checkpoint.
  if (PathExists(dir)) {
    RETURN_IF_ERROR(RemoveTree(old_dir));
    RETURN_IF_ERROR(Rename(dir, old_dir));
    absl::Status moved = Rename(tmp_dir, dir);
    if (!moved.ok()) {
      Rename(old_dir, dir).IgnoreError();  // put the previous checkpoint back
      return moved;
    }
    return RemoveTree(old_dir);
  }
  return Rename(tmp_dir, dir);
}

}  // namespace foak

#include "worker/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <torch/cuda.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/model/safetensors.h"
#include "worker/train/checkpoint_dir.h"

namespace foak {
namespace {

absl::Status Rename(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("cannot rename ", from, " to"), to, errno);
  }
  return absl::OkStatus();
}

absl::Status WriteWeightsAndTokenizer(Trainer& trainer, const std::string& dir,
                                      const CheckpointOptions& options) {
  if (options.save_model) return options.save_model(trainer, dir);
  SaveOptions save;
  save.max_shard_bytes = options.max_shard_bytes;
  RETURN_IF_ERROR(trainer.SaveWeights(dir, save));
  if (options.tokenizer_source_dir.empty()) return absl::OkStatus();
  return CopyTokenizerFiles(options.tokenizer_source_dir, dir);
}

std::optional<DType> StateDtype(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat: return DType::kF32;
    case torch::kBFloat16: return DType::kBF16;
    case torch::kHalf: return DType::kF16;
    case torch::kDouble: return DType::kF64;
    default: return std::nullopt;
  }
}

std::optional<torch::Dtype> TorchDtype(DType dtype) {
  switch (dtype) {
    case DType::kF32: return torch::kFloat;
    case DType::kBF16: return torch::kBFloat16;
    case DType::kF16: return torch::kHalf;
    case DType::kF64: return torch::kDouble;
    default: return std::nullopt;
  }
}

absl::Status WriteOptimizerState(const AdamW& optimizer, Precision precision,
                                 const std::string& path,
                                 std::map<std::string, std::string> extra_metadata = {}) {
  std::vector<torch::Tensor> host;  // owns the bytes the views point at
  std::vector<TensorView> views;
  for (const auto& [name, tensor] : optimizer.NamedState()) {
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    std::optional<DType> dtype = StateDtype(t.scalar_type());
    if (!dtype) {
      return absl::InternalError(absl::StrCat("optimizer state '", name, "' has dtype ",
                                              c10::toString(t.scalar_type()),
                                              ", which checkpoints do not store"));
    }
    views.push_back(TensorView{name, *dtype, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                               t.data_ptr(), static_cast<uint64_t>(t.nbytes())});
    host.push_back(std::move(t));
  }
  extra_metadata["format"] = "foak-adamw";
  extra_metadata["step_count"] = absl::StrCat(optimizer.step_count());
  extra_metadata["precision"] = PrecisionName(precision);
  return WriteSafetensors(path, views, extra_metadata);
}

// A sharded run's slices of this rank, into `path`.
absl::Status WriteShardFile(Trainer& trainer, const std::string& path) {
  try {
    return WriteOptimizerState(trainer.optimizer(), trainer.precision(), path,
                               {{"global_step", absl::StrCat(trainer.step())},
                                {"rank", absl::StrCat(trainer.rank())},
                                {"world_size", absl::StrCat(trainer.world_size())},
                                {"shard_layout", trainer.ShardLayout()}});
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("saving the optimizer slices to ", path));
  }
}

absl::Status WriteTrainingCheckpointInto(Trainer& trainer, const TrainerState& state,
                                         const std::string& tmp,
                                         const CheckpointOptions& options) {
  RETURN_IF_ERROR(WriteWeightsAndTokenizer(trainer, tmp, options));
  if (trainer.sharded()) {
    const int world = trainer.world_size();
    RETURN_IF_ERROR(WriteShardFile(trainer, JoinPath(tmp, ShardedOptimizerFileName(0, world))));
    const std::string staging = OptimizerShardStagingDir(JoinPath(tmp, ".."), state.global_step);
    for (int r = 1; r < world; ++r) {
      const std::string name = ShardedOptimizerFileName(r, world);
      if (!PathExists(JoinPath(staging, name))) {
        return absl::FailedPreconditionError(absl::StrCat(
            "checkpoint ", state.global_step, ": rank ", r, "'s optimizer slices (",
            JoinPath(staging, name), ") are missing"));
      }
      RETURN_IF_ERROR(Rename(JoinPath(staging, name), JoinPath(tmp, name)));
    }
    RemoveTree(staging).IgnoreError();
  } else {
    try {
      RETURN_IF_ERROR(WriteOptimizerState(trainer.optimizer(), trainer.precision(),
                                          JoinPath(tmp, kOptimizerStateFile),
                                          {{"global_step", absl::StrCat(trainer.step())}}));
    } catch (const std::exception& e) {
      return TorchErrorToStatus(e, absl::StrCat("saving the optimizer state to ", tmp));
    }
  }
  return WriteFileAtomically(JoinPath(tmp, kTrainerStateFile), TrainerStateToJson(state));
}

}  // namespace

absl::Status CopyTokenizerFiles(const std::string& source_dir, const std::string& dir) {
  for (const std::string& name : TokenizerFileNames()) {
    const std::string from = JoinPath(source_dir, name);
    if (!PathExists(from)) continue;
    ASSIGN_OR_RETURN(std::string contents, ReadFileToString(from));
    RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, name), contents));
  }
  return absl::OkStatus();
}

const std::vector<std::string>& TokenizerFileNames() {
  static const std::vector<std::string> kNames = {"tokenizer.json", "tokenizer_config.json",
                                                  "special_tokens_map.json", "tokenizer.model"};
  return kNames;
}

absl::Status WriteCheckpoint(Trainer& trainer, const std::string& dir,
                             const CheckpointOptions& options) {
  const std::string partial = dir + ".partial";
  const std::string old = dir + ".old";
  RETURN_IF_ERROR(RemoveTree(partial));  // left by an earlier crash

  absl::Status written = WriteWeightsAndTokenizer(trainer, partial, options);
  if (written.ok()) written = FsyncTree(partial);
  if (!written.ok()) {
    RemoveTree(partial).IgnoreError();  // no half-written folder stays behind
    return written;
  }
  const bool had_old = PathExists(dir);
  if (had_old) {
    RETURN_IF_ERROR(RemoveTree(old));
    RETURN_IF_ERROR(Rename(dir, old));
  }
  RETURN_IF_ERROR(Rename(partial, dir));
  if (had_old) RemoveTree(old).IgnoreError();  // best effort: the new checkpoint is in place
  return absl::OkStatus();
}

absl::StatusOr<std::string> WriteTrainingCheckpoint(Trainer& trainer, TrainerState state,
                                                    const std::string& output_dir,
                                                    const CheckpointOptions& options) {
  state.global_step = trainer.step();
  state.lr_schedule = trainer.schedule().options();
  state.cpu_rng_state = CaptureCpuRngState();
  state.cuda_rng_states = CaptureCudaRngStates();
  const std::string tmp = CheckpointTempDir(output_dir, state.global_step);
  const std::string dir = JoinPath(output_dir, CheckpointDirName(state.global_step));
  RETURN_IF_ERROR(RemoveTree(tmp));
  absl::Status written = WriteTrainingCheckpointInto(trainer, state, tmp, options);
  if (written.ok()) written = CommitCheckpointDir(tmp, dir);
  if (!written.ok()) {
    RemoveTree(tmp).IgnoreError();
    // Say what is still there to resume from: nothing was replaced.
    absl::StatusOr<std::optional<CheckpointEntry>> newest = FindLatestCheckpoint(output_dir);
    const std::string kept =
        newest.ok() && newest->has_value()
            ? absl::StrCat("the newest complete checkpoint, ", (*newest)->path, ", is intact")
            : std::string("there is no earlier checkpoint to resume from");
    return absl::Status(written.code(),
                        absl::StrCat("saving ", CheckpointDirName(state.global_step), " in ",
                                     output_dir, " failed and its partial folder was removed; ",
                                     kept, ": ", written.message()));
  }
  RETURN_IF_ERROR(RotateCheckpoints(output_dir, options.save_total_limit, dir).status());
  return dir;
}

absl::Status WriteOptimizerShard(Trainer& trainer, const std::string& output_dir) {
  const std::string staging = OptimizerShardStagingDir(output_dir, trainer.step());
  RETURN_IF_ERROR(MakeDirs(staging));
  return WriteShardFile(trainer,
                        JoinPath(staging, ShardedOptimizerFileName(trainer.rank(), trainer.world_size())));
}

namespace {

// What optimizer state the checkpoint in `dir` holds, for errors.
std::string DescribeOptimizerFiles(const std::string& dir) {
  if (PathExists(JoinPath(dir, kOptimizerStateFile))) {
    return absl::StrCat("unsharded optimizer state (", kOptimizerStateFile, ")");
  }
  if (const int world = ShardedOptimizerWorldSize(dir); world > 0) {
    return absl::StrCat("state sharded over ", world, " ranks (",
                        ShardedOptimizerFileName(0, world), ", ...)");
  }
  return "no optimizer state";
}

}  // namespace

absl::Status RestoreTrainingState(Trainer& trainer, const std::string& dir,
                                  const TrainerState& state) {
  const std::string path =
      trainer.sharded() ? JoinPath(dir, ShardedOptimizerFileName(trainer.rank(), trainer.world_size()))
                        : JoinPath(dir, kOptimizerStateFile);
  if (!PathExists(path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " holds ", DescribeOptimizerFiles(dir), " but this run ",
        trainer.sharded() ? absl::StrCat("shards it over ", trainer.world_size(),
                                         " ranks (zero_stage 1)")
                          : std::string("keeps it unsharded"),
        "; resume with the ranks and zero_stage that wrote it"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  if (trainer.sharded()) {
    auto layout = file->metadata().find("shard_layout");
    if (layout == file->metadata().end() || layout->second != trainer.ShardLayout()) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": its optimizer slices were cut from other gradient buckets than this run's "
          "(hyperparameters.ddp_bucket_cap_mb or the trainable parameters differ); resume "
          "with the settings that wrote it"));
    }
  }
  // step_count counts the optimizer's updates; a step skipped for a NaN
  // (on_nonfinite = "skip") counts as a step but not as an update, so the
  // file's own global_step is what must match (files from before it was
  // written have updates = steps).
  auto meta = file->metadata().find("step_count");
  auto step_meta = file->metadata().find("global_step");
  int64_t step_count = -1;
  int64_t file_step = -1;
  const bool has_step = step_meta != file->metadata().end() &&
                        absl::SimpleAtoi(step_meta->second, &file_step);
  if (meta == file->metadata().end() || !absl::SimpleAtoi(meta->second, &step_count) ||
      step_count < 0 || (has_step ? (file_step != state.global_step || step_count > file_step)
                                  : step_count != state.global_step)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": metadata step_count is ",
        meta == file->metadata().end() ? std::string("missing") : meta->second,
        has_step ? absl::StrCat(" and global_step ", file_step) : std::string(),
        " but trainer_state.json says global_step ", state.global_step,
        "; the optimizer state belongs to another checkpoint"));
  }
  try {
    std::map<std::string, torch::Tensor> tensors;
    for (const TensorInfo& info : file->tensors()) {
      std::optional<torch::Dtype> dtype = TorchDtype(info.dtype);
      if (!dtype) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", info.name,
                                                       "' has dtype ",
                                                       std::string(DTypeName(info.dtype)),
                                                       "; expected F32, BF16, F16 or F64"));
      }
      // The mapping is read-only; copy_ only reads from it.
      tensors[info.name] = torch::from_blob(const_cast<void*>(file->Data(info)), info.shape,
                                            torch::TensorOptions().dtype(*dtype));
    }
    RETURN_IF_ERROR(trainer.optimizer().LoadNamedState(tensors, step_count, path));
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("restoring the optimizer state from ", path));
  }
  trainer.RestoreStep(state.global_step);
  return RestoreRngStates(state.cpu_rng_state, state.cuda_rng_states,
                          JoinPath(dir, kTrainerStateFile));
}

std::string CaptureCpuRngState() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  at::Tensor s = gen.get_state().contiguous();  // uint8
  return std::string(static_cast<const char*>(s.data_ptr()), static_cast<size_t>(s.nbytes()));
}

std::vector<std::string> CaptureCudaRngStates() {
  std::vector<std::string> out;
  const int64_t n = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  for (int64_t i = 0; i < n; ++i) {
    at::Generator gen = at::globalContext().defaultGenerator(
        at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
    std::lock_guard<std::mutex> lock(gen.mutex());
    at::Tensor s = gen.get_state().contiguous();
    out.emplace_back(static_cast<const char*>(s.data_ptr()), static_cast<size_t>(s.nbytes()));
  }
  return out;
}

absl::Status RestoreRngStates(const std::string& cpu, const std::vector<std::string>& cuda,
                              const std::string& source) {
  auto to_tensor = [](const std::string& bytes) {
    return torch::from_blob(const_cast<char*>(bytes.data()),
                            {static_cast<int64_t>(bytes.size())}, torch::kUInt8)
        .clone();
  };
  try {
    {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(to_tensor(cpu));
    }
    const size_t n = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
    // A run resumed on fewer or more GPUs restores the ones both have.
    for (size_t i = 0; i < n && i < cuda.size(); ++i) {
      at::Generator gen = at::globalContext().defaultGenerator(
          at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(to_tensor(cuda[i]));
    }
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat(source, ": restoring the RNG states"));
  }
  return absl::OkStatus();
}

}  // namespace foak

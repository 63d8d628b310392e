#include "worker/train/trainer.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/torch_compat.h"
#include "worker/train/grad_clip.h"
#include "worker/train/nonfinite.h"

namespace foak {
namespace {

// (B, T) int64 tensor on `device` holding a copy of `values`.
torch::Tensor ToTensor(const std::vector<int64_t>& values, int64_t B, int64_t T,
                       const torch::Device& device) {
  return torch::from_blob(const_cast<int64_t*>(values.data()), {B, T}, torch::kLong)
      .to(device, torch::kLong, /*non_blocking=*/false, /*copy=*/true);
}

absl::Status CheckBatch(const Batch& batch, size_t index, int64_t vocab_size) {
  const size_t n = static_cast<size_t>(batch.B * batch.T);
  if (batch.B <= 0 || batch.T <= 0 || batch.input_ids.size() != n || batch.labels.size() != n ||
      batch.position_ids.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "micro-batch ", index, ": B = ", batch.B, ", T = ", batch.T, " but input_ids/labels/"
        "position_ids hold ", batch.input_ids.size(), "/", batch.labels.size(), "/",
        batch.position_ids.size(), " values; each must hold B*T"));
  }
  for (size_t i = 0; i < n; ++i) {
    const int64_t id = batch.input_ids[i];
    const int64_t label = batch.labels[i];
    if (id < 0 || id >= vocab_size || (label != kIgnoreIndex && (label < 0 || label >= vocab_size))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "micro-batch ", index, " row ", i / batch.T, " position ", i % batch.T,
          ": token id ", id, " / label ", label, " is outside the model's vocabulary [0, ",
          vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status TorchErrorToStatus(const std::exception& e, const std::string& context) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        context, ": out of memory: ",
        static_cast<const c10::Error&>(e).what_without_backtrace(),
        "; lower hyperparameters.batch_size or max_seq_len (raise "
        "gradient_accumulation_steps to keep the effective batch)"));
  }
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return absl::InternalError(absl::StrCat(context, ": LibTorch error: ",
                                            c10_error->what_without_backtrace()));
  }
  return absl::InternalError(absl::StrCat(context, ": ", e.what()));
}

Trainer::Trainer(LlamaForCausalLM model, const TrainerOptions& options,
                 const torch::Device& device, std::unique_ptr<AdamW> optimizer)
    : model_(std::move(model)),
      options_(options),
      device_(device),
      optimizer_(std::move(optimizer)),
      schedule_(options.schedule) {}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(LlamaForCausalLM model,
                                                         const TrainerOptions& options,
                                                         const torch::Device& device) {
  try {
    model->to(device);
    model->train();
    AdamWOptions adam;
    adam.beta1 = options.adam_beta1;
    adam.beta2 = options.adam_beta2;
    adam.eps = options.adam_epsilon;
    adam.precision = options.precision;
    adam.allow_fused = options.allow_fused_adamw;
    const bool frozen_only = options.keep_trainable_fp32 && options.precision == Precision::kBf16Mixed;
    if (frozen_only) adam.precision = Precision::kFp32;  // fp32 trainables, no masters
    Collectives* comm = options.collectives;
    const bool parallel = comm != nullptr && comm->world_size() > 1;
    // Sharded state: GradSync casts the trainable parameters itself as it
    // moves them into its buckets.
    const bool zero = parallel && options.zero_stage >= 1;
    auto to_bf16 = [&model, frozen_only, zero] {
      // Parameters only: buffers such as RoPE's inv_freq stay fp32.
      torch::NoGradGuard no_grad;
      for (torch::Tensor& p : model->parameters()) {
        if ((frozen_only || zero) && p.requires_grad()) continue;
        p.set_data(p.detach().to(torch::kBFloat16));
      }
    };
    // bf16: moments are made like the (bf16) parameters. bf16-mixed: the
    // optimizer copies its fp32 masters before the parameters become bf16.
    std::vector<std::string> names;
    std::vector<torch::Tensor> trainable;
    for (const auto& item : model->named_parameters(/*recurse=*/true)) {
      if (!item.value().requires_grad()) continue;
      names.push_back(item.key());
      trainable.push_back(item.value());
    }
    if (parallel) {
      // Every rank starts from rank 0's trainable weights (LoRA's random A,
      // for one), before the masters are copied from them.
      absl::Status s = BroadcastTensors(*comm, trainable, 0);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("sharing rank 0's weights: ", s.message()));
      }
    }
    if (options.precision == Precision::kBf16) to_bf16();
    if (zero && !trainable.empty()) {
      // The buckets group parameters by weight decay; the optimizer gets one
      // parameter group per bucket: this rank's slice of it.
      std::vector<int> groups;
      for (const std::string& name : names) groups.push_back(IsNoDecayParameter(name) ? 1 : 0);
      GradSyncOptions sync_options = options.grad_sync;
      sync_options.shard_params = true;
      if (options.precision == Precision::kBf16Mixed && !frozen_only) {
        sync_options.param_dtype = torch::kBFloat16;
      }
      ASSIGN_OR_RETURN(std::unique_ptr<GradSync> sync,
                       GradSync::Create(comm, names, trainable, sync_options, groups));
      std::vector<ParamGroup> shard_groups;
      for (size_t k = 0; k < sync->shards().size(); ++k) {
        const GradShard& s = sync->shards()[k];
        ParamGroup g;
        g.names = {absl::StrCat("zero.bucket", k)};
        g.params = {s.params};
        g.weight_decay = s.group == 1 ? 0.0 : options.weight_decay;
        g.initial_masters = {s.initial};
        shard_groups.push_back(std::move(g));
      }
      auto optimizer = std::make_unique<AdamW>(std::move(shard_groups), adam);
      sync->DropInitialShards();
      if (options.precision == Precision::kBf16Mixed) to_bf16();  // the frozen ones
      auto trainer = std::unique_ptr<Trainer>(new Trainer(std::move(model), options, device,
                                                          std::move(optimizer)));
      trainer->grad_sync_ = std::move(sync);
      trainer->zero_ = true;
      trainer->trainable_ = std::move(trainable);
      return trainer;
    }
    auto optimizer =
        std::make_unique<AdamW>(MakeParamGroups(*model, options.weight_decay), adam);
    if (options.precision == Precision::kBf16Mixed) to_bf16();
    auto trainer = std::unique_ptr<Trainer>(new Trainer(std::move(model), options, device,
                                                        std::move(optimizer)));
    if (parallel && !trainable.empty()) {
      // After the casts: the buckets take the parameters' final dtype.
      ASSIGN_OR_RETURN(trainer->grad_sync_,
                       GradSync::Create(comm, names, trainable, options.grad_sync));
    }
    return trainer;
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, "preparing the model for training");
  }
}

absl::StatusOr<StepResult> Trainer::Step(const std::vector<Batch>& micro_batches) {
  try {
    absl::StatusOr<StepResult> result = StepUnchecked(micro_batches);
    if (!result.ok() && !absl::StartsWith(result.status().message(), "step ")) {
      // E.g. a collective that failed because another rank died.
      return absl::Status(result.status().code(),
                          absl::StrCat("step ", step_ + 1, ": ", result.status().message()));
    }
    return result;
  } catch (const std::exception& e) {
    // Leave no half-accumulated gradients behind for a caller that goes on.
    optimizer_->ZeroGrad();
    if (grad_sync_ != nullptr) grad_sync_->ResetGrads();
    return TorchErrorToStatus(e, absl::StrCat("step ", step_ + 1));
  }
}

absl::StatusOr<StepResult> Trainer::StepUnchecked(const std::vector<Batch>& micro_batches) {
  const std::string where = absl::StrCat("step ", step_ + 1);
  if (micro_batches.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no micro-batches"));
  }
  StepResult result;
  const int64_t vocab_size = model_->config().vocab_size;
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    absl::Status s = CheckBatch(micro_batches[i], i, vocab_size);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
    result.target_tokens += micro_batches[i].NumTargetTokens();
    result.input_tokens += micro_batches[i].num_tokens;
  }
  // Data parallel: the job's counts (every rank's micro-batches).
  std::vector<double> counts = {static_cast<double>(result.target_tokens),
                                static_cast<double>(result.input_tokens)};
  RETURN_IF_ERROR(AllReduceSum(counts));
  result.target_tokens = static_cast<int64_t>(counts[0]);
  result.input_tokens = static_cast<int64_t>(counts[1]);
  if (result.target_tokens == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the micro-batches have no target tokens (every label is -100)"));
  }

  const double total = static_cast<double>(result.target_tokens);
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  for (size_t k = 0; k < micro_batches.size(); ++k) {
    const Batch& batch = micro_batches[k];
    if (grad_sync_ != nullptr) grad_sync_->BeginMicroBatch(k + 1 == micro_batches.size());
    torch::Tensor input_ids = ToTensor(batch.input_ids, batch.B, batch.T, device_);
    torch::Tensor labels = ToTensor(batch.labels, batch.B, batch.T, device_);
    torch::Tensor position_ids = ToTensor(batch.position_ids, batch.B, batch.T, device_);
    CausalLmLossOptions loss_options;
    loss_options.ignore_index = kIgnoreIndex;
    loss_options.normalizer = total;
    loss_options.num_targets = batch.NumTargetTokens();
    LossParts parts = model_->Loss(input_ids, position_ids, labels, loss_options);
    parts.normalized.backward();
    loss_sum += parts.sum.detach().to(torch::kDouble);
  }

  if (grad_sync_ != nullptr) {
    absl::Status synced = grad_sync_->Finish();
    if (!synced.ok()) return absl::Status(synced.code(), absl::StrCat(where, ": ", synced.message()));
  }
  result.learning_rate = schedule_.LearningRate(step_);
  // The job's loss before the update: with the gradient norm it decides
  // whether there is an update at all. (The norm's .item() syncs anyway.)
  std::vector<double> loss = {loss_sum.item<double>()};
  RETURN_IF_ERROR(AllReduceSum(loss));
  result.loss = loss[0] / total;
  if (zero_) {
    // Each rank holds the sums of, and updates, only its slices; the norm
    // adds every rank's squared slice norms.
    for (const GradShard& s : grad_sync_->shards()) {
      torch::Tensor slice = s.params;
      slice.mutable_grad() = s.grads;
    }
    std::vector<torch::Tensor> slices = optimizer_->PrepareGrads();
    ASSIGN_OR_RETURN(result.grad_norm, ClipShardedGradNorm(slices));
  } else {
    std::vector<torch::Tensor> grads = optimizer_->PrepareGrads();
    result.grad_norm = ClipGradNorm(grads, options_.max_grad_norm);
  }
  // Every rank sees the same loss and norm (both are reduced over the
  // ranks), so every rank decides the same.
  const bool finite = std::isfinite(result.loss) && std::isfinite(result.grad_norm);
  if (finite) {
    optimizer_->Step(result.learning_rate);
    if (zero_) RETURN_IF_ERROR(grad_sync_->AllGatherParams());
  }
  optimizer_->ZeroGrad();
  if (grad_sync_ != nullptr) grad_sync_->ResetGrads();
  gathered_masters_.clear();
  if (!finite && !options_.skip_nonfinite) {
    return NonFiniteStepError(absl::StrCat(
        where, ": the loss is ", result.loss, " and the gradient norm ", result.grad_norm,
        "; training stopped before this step changed the weights (the newest checkpoint is "
        "intact). Lower hyperparameters.learning_rate, check the data around this step, or set "
        "hyperparameters.on_nonfinite = \"skip\" to drop such steps"));
  }
  result.skipped = !finite;
  ++step_;
  result.step = step_;
  return result;
}

absl::StatusOr<double> Trainer::ClipShardedGradNorm(const std::vector<torch::Tensor>& slices) {
  torch::NoGradGuard no_grad;
  // Sum of squares of this rank's slices (fp32 per tensor), summed over ranks.
  torch::Tensor sumsq = torch::zeros({1}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  if (!slices.empty()) {
    const std::vector<torch::Tensor> norms = compat::NormsFp32(slices);
    sumsq += at::stack(norms).to(torch::kDouble).pow(2).sum();
  }
  std::vector<torch::Tensor> one = {sumsq};
  RETURN_IF_ERROR(options_.collectives->AllReduceSum(one));
  torch::Tensor total = one[0].sqrt().squeeze().to(torch::kFloat);
  if (options_.max_grad_norm > 0 && !slices.empty()) {
    torch::Tensor coef = (options_.max_grad_norm / (total + 1e-6)).clamp_max(1.0);
    compat::ScaleInPlace(slices, coef);
  }
  return total.item<double>();
}

absl::Status Trainer::AllReduceSum(std::vector<double>& values) {
  Collectives* comm = options_.collectives;
  if (comm == nullptr || comm->world_size() == 1 || values.empty()) return absl::OkStatus();
  torch::Tensor t = torch::tensor(values, torch::TensorOptions().dtype(torch::kDouble)).to(device_);
  std::vector<torch::Tensor> one = {t};
  RETURN_IF_ERROR(comm->AllReduceSum(one));
  torch::Tensor host = one[0].cpu();
  for (size_t i = 0; i < values.size(); ++i) values[i] = host[static_cast<int64_t>(i)].item<double>();
  return absl::OkStatus();
}

int Trainer::rank() const {
  return options_.collectives == nullptr ? 0 : options_.collectives->rank();
}

int Trainer::world_size() const {
  return options_.collectives == nullptr ? 1 : options_.collectives->world_size();
}

absl::StatusOr<LossSums> Trainer::EvalLossSums(const Batch& batch) {
  try {
    const int64_t vocab_size = model_->config().vocab_size;
    RETURN_IF_ERROR(CheckBatch(batch, 0, vocab_size));
    torch::NoGradGuard no_grad;
    torch::Tensor input_ids = ToTensor(batch.input_ids, batch.B, batch.T, device_);
    torch::Tensor labels = ToTensor(batch.labels, batch.B, batch.T, device_);
    torch::Tensor position_ids = ToTensor(batch.position_ids, batch.B, batch.T, device_);
    CausalLmLossOptions loss_options;
    loss_options.ignore_index = kIgnoreIndex;
    loss_options.num_targets = batch.NumTargetTokens();
    LossParts parts = model_->Loss(input_ids, position_ids, labels, loss_options);
    LossSums sums;
    sums.loss_sum = parts.sum.to(torch::kDouble).item<double>();
    sums.target_tokens = batch.NumTargetTokens();
    return sums;
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, absl::StrCat("evaluating after step ", step_));
  }
}

absl::Status Trainer::PrepareSave() {
  if (!zero_ || options_.precision != Precision::kBf16Mixed || options_.keep_trainable_fp32) {
    return absl::OkStatus();
  }
  try {
    std::vector<torch::Tensor> masters;
    for (const auto& group : optimizer_->update_tensors()) masters.push_back(group[0]);
    ASSIGN_OR_RETURN(gathered_masters_, grad_sync_->GatherToHost(masters));
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, "gathering the master weights");
  }
  return absl::OkStatus();
}

absl::Status Trainer::SaveWeights(const std::string& dir, const SaveOptions& options) {
  if (zero_ && options_.precision == Precision::kBf16Mixed && !options_.keep_trainable_fp32) {
    // The masters are spread over the ranks: save the copy PrepareSave gathered.
    if (gathered_masters_.empty()) {
      return absl::FailedPreconditionError(
          "saving sharded bf16-mixed weights needs PrepareSave() on every rank first");
    }
    SaveOptions with_masters = options;
    const std::map<std::string, torch::Tensor>& masters = gathered_masters_;
    with_masters.tensor_for = [&masters](const std::string& name,
                                         const torch::Tensor& param) -> torch::Tensor {
      auto it = masters.find(name);
      return it == masters.end() ? param : it->second;
    };
    try {
      return SaveModel(model_, dir, with_masters);
    } catch (const std::exception& e) {
      return TorchErrorToStatus(e, absl::StrCat("saving ", dir));
    }
  }
  // In bf16-mixed mode point each parameter at its fp32 master for the save
  // (no copy), then restore the bf16 data, also when saving fails.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> swapped;  // (param, bf16 data)
  auto restore = [&swapped] {
    for (auto& [param, data] : swapped) param.set_data(data);
    swapped.clear();
  };
  try {
    if (options_.precision == Precision::kBf16Mixed && !options_.keep_trainable_fp32) {
      const auto& groups = optimizer_->groups();
      const auto& masters = optimizer_->update_tensors();
      for (size_t g = 0; g < groups.size(); ++g) {
        for (size_t i = 0; i < groups[g].params.size(); ++i) {
          torch::Tensor param = groups[g].params[i];
          swapped.emplace_back(param, param.detach());
          param.set_data(masters[g][i]);
        }
      }
    }
    absl::Status status = SaveModel(model_, dir, options);
    restore();
    return status;
  } catch (const std::exception& e) {
    restore();
    return TorchErrorToStatus(e, absl::StrCat("saving ", dir));
  }
}

}  // namespace foak

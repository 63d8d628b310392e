#include "worker/train/trainer.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/train/grad_clip.h"

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
    auto to_bf16 = [&model, frozen_only] {
      // Parameters only: buffers such as RoPE's inv_freq stay fp32.
      torch::NoGradGuard no_grad;
      for (torch::Tensor& p : model->parameters()) {
        if (frozen_only && p.requires_grad()) continue;
        p.set_data(p.detach().to(torch::kBFloat16));
      }
    };
    // bf16: moments are made like the (bf16) parameters. bf16-mixed: the
    // optimizer copies its fp32 masters before the parameters become bf16.
    if (options.precision == Precision::kBf16) to_bf16();
    auto optimizer =
        std::make_unique<AdamW>(MakeParamGroups(*model, options.weight_decay), adam);
    if (options.precision == Precision::kBf16Mixed) to_bf16();
    return std::unique_ptr<Trainer>(new Trainer(std::move(model), options, device,
                                                std::move(optimizer)));
  } catch (const std::exception& e) {
    return TorchErrorToStatus(e, "preparing the model for training");
  }
}

absl::StatusOr<StepResult> Trainer::Step(const std::vector<Batch>& micro_batches) {
  try {
    return StepUnchecked(micro_batches);
  } catch (const std::exception& e) {
    // Leave no half-accumulated gradients behind for a caller that goes on.
    optimizer_->ZeroGrad();
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
  if (result.target_tokens == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the micro-batches have no target tokens (every label is -100)"));
  }

  const double total = static_cast<double>(result.target_tokens);
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  for (const Batch& batch : micro_batches) {
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

  std::vector<torch::Tensor> grads = optimizer_->PrepareGrads();
  result.grad_norm = ClipGradNorm(grads, options_.max_grad_norm);
  result.learning_rate = schedule_.LearningRate(step_);
  optimizer_->Step(result.learning_rate);
  optimizer_->ZeroGrad();
  ++step_;
  result.step = step_;
  result.loss = loss_sum.item<double>() / total;
  return result;
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

absl::Status Trainer::SaveWeights(const std::string& dir, const SaveOptions& options) {
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

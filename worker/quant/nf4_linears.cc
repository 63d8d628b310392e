// NF4 decoder projections (see nf4_linears.h for the why).
#include "worker/quant/nf4_linears.h"

#include <torch/utils.h>

#include <algorithm>
#include <array>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/weights.h"

namespace foak {
namespace {

// NF4 quantises blocks of this many consecutive weights (kernels/nf4/nf4.h).
constexpr int64_t kBlock = 64;

// The callable LinearImpl::base holds: y = x dequant(W)^T + b.
struct Nf4Base {
  std::shared_ptr<const ops::Nf4Weight> weight;
  // The bias is read at call time: the trainer recasts parameters in place
  // (bf16-mixed), and the Linear outlives its own hook.
  const LinearImpl* linear = nullptr;
  torch::Tensor operator()(const torch::Tensor& x) const {  // (..., in) -> (..., out)
    return ops::Nf4Linear(x, *weight, linear->bias);
  }
};

struct NamedProjection {
  std::string name;  // "model.layers.3.mlp.down_proj"
  Linear linear;
};

// The decoder projections in named_modules() order; lm_head and anything
// outside model.layers never.
std::vector<NamedProjection> DecoderProjections(LlamaForCausalLM& model) {
  static const std::array<const char*, 7> kLeaves = {"q_proj", "k_proj",    "v_proj",  "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};
  std::vector<NamedProjection> found;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value());
    if (linear == nullptr || item.key().rfind("model.layers.", 0) != 0) continue;
    const size_t dot = item.key().rfind('.');
    const std::string leaf = item.key().substr(dot + 1);
    if (std::find(kLeaves.begin(), kLeaves.end(), leaf) != kLeaves.end()) {
      found.push_back(NamedProjection{item.key(), Linear(linear)});
    }
  }
  return found;
}

std::string ShapeText(const LinearImpl& linear) {
  return absl::StrCat("(", linear.out_features(), ", ", linear.in_features(), ")");
}

// OK when NF4 can hold the layer's weight (whole 64-blocks).
absl::Status CheckNf4Shape(const LinearImpl& linear, const std::string& name) {
  const int64_t numel = linear.out_features() * linear.in_features();
  if (numel % kBlock == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      name, ": weight ", ShapeText(linear), " has ", numel, " elements, not a multiple of the NF4 "
      "block size ", kBlock, "; this model cannot be quantised to NF4 (use method lora)"));
}

// Holds `w` (the layer's weight, any device) in NF4 from now on.
void InstallNf4(LinearImpl& linear, ops::Nf4Weight w) {
  linear.ReleaseWeight();  // frees the dense weight, keeps dtype and device
  linear.base = Nf4Base{std::make_shared<const ops::Nf4Weight>(std::move(w)), &linear};
}

void AddStats(const ops::Nf4Weight& w, Nf4Stats* stats) {
  ++stats->linears;
  stats->params += w.numel();
  stats->nf4_bytes += w.nbytes();
  stats->dense_bytes += w.numel() * static_cast<int64_t>(c10::elementSize(w.dtype));
}

}  // namespace

const ops::Nf4Weight* FindNf4Weight(const LinearImpl& linear) {
  if (!linear.base) return nullptr;
  const Nf4Base* base = linear.base.target<Nf4Base>();
  return base == nullptr ? nullptr : base->weight.get();
}

Nf4Stats CountNf4(LlamaForCausalLM& model) {
  Nf4Stats stats;
  for (const NamedProjection& p : DecoderProjections(model)) {
    if (const ops::Nf4Weight* w = FindNf4Weight(*p.linear)) AddStats(*w, &stats);
  }
  return stats;
}

absl::StatusOr<Nf4Stats> QuantizeDecoderLinears(LlamaForCausalLM& model,
                                                const Nf4Options& options) {
  std::vector<NamedProjection> todo;
  for (NamedProjection& p : DecoderProjections(model)) {
    if (FindNf4Weight(*p.linear) != nullptr) continue;
    if (p.linear->weight_released()) {
      return absl::FailedPreconditionError(absl::StrCat(
          p.name, " has no weight to quantise: it was released before any was loaded "
          "(ReleaseOnCreateHook); load the checkpoint with LoadNf4Weights"));
    }
    RETURN_IF_ERROR(CheckNf4Shape(*p.linear, p.name));
    todo.push_back(std::move(p));
  }
  try {
    torch::NoGradGuard no_grad;
    for (NamedProjection& p : todo) {
      InstallNf4(*p.linear, ops::Nf4Quantize(p.linear->weight.detach().contiguous(),
                                             options.double_quant));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("QuantizeDecoderLinears: quantising to NF4 failed: ",
                                            e.what_without_backtrace()));
  }
  return CountNf4(model);
}

std::function<void(LinearImpl&)> QuantizeOnCreateHook(const Nf4Options& options) {
  const bool double_quant = options.double_quant;
  return [double_quant](LinearImpl& linear) {
    const absl::Status shape = CheckNf4Shape(linear, "a decoder projection");
    TORCH_CHECK(shape.ok(), std::string(shape.message()));
    torch::NoGradGuard no_grad;
    InstallNf4(linear, ops::Nf4Quantize(linear.weight.detach().contiguous(), double_quant));
  };
}

std::function<void(LinearImpl&)> ReleaseOnCreateHook() {
  return [](LinearImpl& linear) { linear.ReleaseWeight(); };
}

absl::StatusOr<Nf4Stats> LoadNf4Weights(LlamaForCausalLM& model, const std::string& model_dir,
                                        const Nf4Options& options,
                                        std::optional<torch::Dtype> round_through) {
  std::vector<NamedProjection> projections = DecoderProjections(model);
  for (const NamedProjection& p : projections) {
    if (FindNf4Weight(*p.linear) != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "LoadNf4Weights ", model_dir, ": ", p.name, " is already in NF4; load into a model "
          "built with ReleaseOnCreateHook() (or a dense one)"));
    }
    RETURN_IF_ERROR(CheckNf4Shape(*p.linear, p.name));
  }
  std::vector<ExternalTensor> external;
  const bool double_quant = options.double_quant;
  for (NamedProjection& p : projections) {
    LinearImpl* linear = p.linear.get();
    linear->ReleaseWeight();  // a no-op for a placeholder; frees a dense weight
    ExternalTensor e;
    e.name = absl::StrCat(p.name, ".weight");
    e.shape = {linear->out_features(), linear->in_features()};
    e.load = [linear, double_quant, round_through](const torch::Tensor& stored) -> absl::Status {
      try {
        torch::NoGradGuard no_grad;
        torch::Tensor w = stored;
        if (round_through.has_value()) w = w.to(*round_through);
        // The placeholder's device and dtype; without a copy (same device and
        // dtype) `w` views the read-only mapping, which quantising only reads.
        w = w.to(linear->weight.device(), linear->weight.scalar_type()).contiguous();
        InstallNf4(*linear, ops::Nf4Quantize(w, double_quant));
      } catch (const c10::Error& e) {
        return absl::InternalError(absl::StrCat("quantising to NF4 failed: ",
                                                e.what_without_backtrace()));
      }
      return absl::OkStatus();
    };
    external.push_back(std::move(e));
  }
  RETURN_IF_ERROR(LoadWeights(model, model_dir, external));
  return CountNf4(model);
}

absl::Status DequantizeDecoderLinears(LlamaForCausalLM& model, std::optional<torch::Dtype> dtype) {
  std::vector<NamedProjection> nf4;
  for (NamedProjection& p : DecoderProjections(model)) {
    if (FindNf4Weight(*p.linear) != nullptr) nf4.push_back(std::move(p));
  }
  if (nf4.empty()) {
    return absl::FailedPreconditionError(
        "DequantizeDecoderLinears: the model has no NF4 projection to dequantise");
  }
  try {
    torch::NoGradGuard no_grad;
    for (NamedProjection& p : nf4) {
      LinearImpl& linear = *p.linear;
      const ops::Nf4Weight& w = *FindNf4Weight(linear);
      torch::Tensor dense = ops::Nf4Dequantize(w, dtype.value_or(w.dtype));  // (out, in)
      linear.base = nullptr;  // drops the NF4 storage
      linear.weight = linear.register_parameter("weight", dense, /*requires_grad=*/false);
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("DequantizeDecoderLinears: dequantising failed: ",
                                            e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

}  // namespace foak

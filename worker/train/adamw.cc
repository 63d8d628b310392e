#include "worker/train/adamw.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "worker/model/llama.h"
#include "worker/torch_compat.h"

namespace foak {

std::vector<ParamGroup> MakeParamGroups(torch::nn::Module& model, double weight_decay) {
  ParamGroup decay{{}, {}, weight_decay, {}};
  ParamGroup no_decay{{}, {}, 0.0, {}};
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    ParamGroup& g = IsNoDecayParameter(item.key()) ? no_decay : decay;
    g.names.push_back(item.key());
    g.params.push_back(item.value());
  }
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  return groups;
}

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options)
    : groups_(std::move(groups)), options_(options) {
  torch::NoGradGuard no_grad;
  for (const ParamGroup& group : groups_) {
    std::vector<torch::Tensor> masters, m, v, steps;
    for (size_t i = 0; i < group.params.size(); ++i) {
      const torch::Tensor& p = group.params[i];
      const torch::Tensor& from =
          i < group.initial_masters.size() ? group.initial_masters[i] : p;
      torch::Tensor master = options_.precision == Precision::kBf16Mixed
                                 ? from.detach().to(torch::kFloat, /*non_blocking=*/false,
                                                    /*copy=*/true)
                                 : p;
      m.push_back(torch::zeros_like(master));
      v.push_back(torch::zeros_like(master));
      // The fused kernel's per-tensor step counters (fp32 scalars on the device).
      steps.push_back(torch::zeros({}, master.options().dtype(torch::kFloat)));
      masters.push_back(std::move(master));
    }
    masters_.push_back(std::move(masters));
    exp_avgs_.push_back(std::move(m));
    exp_avg_sqs_.push_back(std::move(v));
    state_steps_.push_back(std::move(steps));
  }
  for (ParamGroup& group : groups_) group.initial_masters.clear();  // copied; free them
}

std::vector<torch::Tensor> AdamW::PrepareGrads() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> all;
  grads_.assign(groups_.size(), {});
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (torch::Tensor& p : groups_[g].params) {
      torch::Tensor grad = p.grad();
      if (grad.defined() && options_.precision == Precision::kBf16Mixed) {
        grad = grad.to(torch::kFloat);
        p.mutable_grad() = torch::Tensor();  // the bf16 copy is no longer needed
      }
      grads_[g].push_back(grad);
      if (grad.defined()) all.push_back(grad);
    }
  }
  prepared_ = true;
  return all;
}

void AdamW::Step(double lr) {
  if (!prepared_) PrepareGrads();
  prepared_ = false;
  ++step_;
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) StepGroup(g, lr);
}

void AdamW::StepGroup(size_t g, double lr) {
  const double wd = groups_[g].weight_decay;
  const double b1 = options_.beta1;
  const double b2 = options_.beta2;
  std::vector<torch::Tensor> params, grads, m, v, steps;
  for (size_t i = 0; i < masters_[g].size(); ++i) {
    if (!grads_[g][i].defined()) continue;
    params.push_back(masters_[g][i]);
    grads.push_back(grads_[g][i]);
    m.push_back(exp_avgs_[g][i]);
    v.push_back(exp_avg_sqs_[g][i]);
    steps.push_back(state_steps_[g][i]);
  }
  if (params.empty()) return;

  const bool fused = options_.allow_fused && compat::FusedAdamWAvailable() && params[0].is_cuda();
  if (fused) {
    compat::FusedAdamWOptions fo;
    fo.lr = lr;
    fo.beta1 = b1;
    fo.beta2 = b2;
    fo.weight_decay = wd;
    fo.eps = options_.eps;
    compat::FusedAdamWStep(params, grads, m, v, steps, fo);
  } else {
    const double t = static_cast<double>(step_);
    const double bias_correction1 = 1.0 - std::pow(b1, t);
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, t));
    const double step_size = lr / bias_correction1;
    for (size_t i = 0; i < params.size(); ++i) {
      torch::Tensor& p = params[i];
      if (wd != 0.0) p.mul_(1.0 - lr * wd);
      m[i].lerp_(grads[i], 1.0 - b1);
      v[i].mul_(b2).addcmul_(grads[i], grads[i], 1.0 - b2);
      torch::Tensor denom = (v[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
      p.addcdiv_(m[i], denom, -step_size);
      steps[i].add_(1);  // kept in step with the fused path (checkpoints carry them)
    }
  }
  if (options_.precision == Precision::kBf16Mixed) {
    for (size_t i = 0; i < masters_[g].size(); ++i) {
      if (grads_[g][i].defined()) groups_[g].params[i].copy_(masters_[g][i]);
    }
  }
}

void AdamW::ZeroGrad() {
  for (ParamGroup& group : groups_) {
    for (torch::Tensor& p : group.params) p.mutable_grad() = torch::Tensor();
  }
  grads_.clear();
  prepared_ = false;
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::NamedState() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].names.size(); ++i) {
      const std::string& name = groups_[g].names[i];
      out.emplace_back(name + ".exp_avg", exp_avgs_[g][i]);
      out.emplace_back(name + ".exp_avg_sq", exp_avg_sqs_[g][i]);
      out.emplace_back(name + ".step", state_steps_[g][i]);
      if (options_.precision == Precision::kBf16Mixed) {
        out.emplace_back(name + ".master", masters_[g][i]);
      }
    }
  }
  return out;
}

absl::Status AdamW::LoadNamedState(const std::map<std::string, torch::Tensor>& state,
                                   int64_t step_count, const std::string& source) {
  // Check everything before changing anything.
  std::vector<std::string> problems;
  std::set<std::string> expected;
  const std::vector<std::pair<std::string, torch::Tensor>> targets = NamedState();
  for (const auto& [key, target] : targets) {
    expected.insert(key);
    auto it = state.find(key);
    if (it == state.end()) {
      problems.push_back(absl::StrCat("missing '", key, "'"));
      continue;
    }
    const torch::Tensor& src = it->second;
    if (src.sizes() != target.sizes() || src.scalar_type() != target.scalar_type()) {
      problems.push_back(absl::StrCat("'", key, "' is ", c10::toString(src.scalar_type()), " ",
                                      c10::str(src.sizes()), " but this run needs ",
                                      c10::toString(target.scalar_type()), " ",
                                      c10::str(target.sizes())));
    }
  }
  for (const auto& item : state) {
    if (expected.count(item.first) == 0) {
      problems.push_back(absl::StrCat("unexpected '", item.first,
                                      "' (not a trainable parameter of this run, or another "
                                      "precision)"));
    }
  }
  if (!problems.empty()) {
    if (problems.size() > 8) {
      const size_t more = problems.size() - 8;
      problems.resize(8);
      problems.push_back(absl::StrCat("and ", more, " more"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": the optimizer state does not fit this run's trainable parameters and "
        "precision ", PrecisionName(options_.precision), ": ", absl::StrJoin(problems, "; ")));
  }
  torch::NoGradGuard no_grad;
  for (const auto& [key, target] : targets) {
    torch::Tensor t = target;  // shares storage: copies in place
    t.copy_(state.at(key));
  }
  if (options_.precision == Precision::kBf16Mixed) {
    for (size_t g = 0; g < groups_.size(); ++g) {
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        groups_[g].params[i].detach().copy_(masters_[g][i]);
      }
    }
  }
  step_ = step_count;
  grads_.clear();
  prepared_ = false;
  return absl::OkStatus();
}

}  // namespace foak

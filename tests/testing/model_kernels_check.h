// One check shared by the CPU test (tests/unit/model_kernels_test.cc) and the
// GPU test (tests/gpu/model_kernels_cuda_test.cc): the tiny Llama built with a
// kernel set gives the same loss and parameter gradients as the same model
// built without kernels (same seed, so the same weights), on packed rows with
// ignored labels, for plain, tied-embedding + Granite-scaled and llama3-rope
// configurations.
#ifndef FOAK_TESTS_TESTING_MODEL_KERNELS_CHECK_H_
#define FOAK_TESTS_TESTING_MODEL_KERNELS_CHECK_H_

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <string>
#include <vector>

#include "kernels/registry.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/tiny_config.h"
#include "worker/model/llama.h"

namespace foak::testing {

inline ModelConfig KernelTestConfig(const std::string& variant) {
  ModelConfig c = TinyLlamaConfig();
  if (variant == "tied_granite") {
    c.tie_word_embeddings = true;
    c.logits_scaling = 2.5;
  } else if (variant == "llama3_rope") {
    UseLlama3Rope(c);
  }
  return c;
}

struct LossAndGrads {
  double loss = 0;
  std::vector<std::string> names;
  std::vector<at::Tensor> grads;
};

inline LossAndGrads RunModel(const ModelConfig& config, const KernelSet& kernels,
                             const at::TensorOptions& options) {
  torch::manual_seed(5);
  ModelInit init;
  init.options = options;
  init.kernels = kernels;
  LlamaForCausalLM model(config, init);
  {
    // Norm weights away from 1 so a kernel that ignores them shows.
    at::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      if (p.key().find("norm") != std::string::npos) p.value().add_(0.1 * at::randn_like(p.value()));
    }
  }
  at::manual_seed(6);
  const int64_t b = 3, t = 24;
  auto long_opts = at::TensorOptions().dtype(at::kLong).device(options.device());
  at::Tensor ids = at::randint(0, config.vocab_size, {b, t}, long_opts);
  // Row 1 packs two sequences (positions restart at 0); row 2 has ignored labels.
  at::Tensor positions = at::arange(t, long_opts).unsqueeze(0).repeat({b, 1});
  positions[1].slice(0, 10).copy_(at::arange(t - 10, long_opts));
  at::Tensor labels = ids.clone();
  labels[2].slice(0, 0, 12).fill_(-100);
  const int64_t targets = labels.slice(1, 1).ne(-100).sum().item<int64_t>();
  CausalLmLossOptions o;
  o.normalizer = static_cast<double>(targets);
  o.num_targets = targets;
  LossParts parts = model->Loss(ids, positions, labels, o);
  parts.normalized.backward();
  LossAndGrads out;
  out.loss = parts.normalized.item<double>();
  for (auto& p : model->named_parameters()) {
    out.names.push_back(p.key());
    out.grads.push_back(p.value().grad().defined() ? p.value().grad() : at::zeros_like(p.value()));
  }
  return out;
}

// Every kernel alone and all together against no kernels.
inline void ExpectKernelSetsMatchPlain(const at::TensorOptions& options, double loss_tol,
                                       double grad_tol) {
  std::vector<std::vector<std::string>> sets = {{"rms_norm"}, {"rope"}, {"swiglu"},
                                                {"cross_entropy"}, {"fused_linear_cross_entropy"},
                                                {"foak"}, {"all"}};
  for (const std::string variant : {"plain", "tied_granite", "llama3_rope"}) {
    const ModelConfig config = KernelTestConfig(variant);
    const LossAndGrads want = RunModel(config, KernelSet{}, options);
    for (const auto& names : sets) {
      SCOPED_TRACE(variant + " with " + names[0]);
      auto set = ParseKernelSet(names);
      ASSERT_TRUE(set.ok());
      const LossAndGrads got = RunModel(config, *set, options);
      EXPECT_NEAR(got.loss, want.loss, loss_tol * std::abs(want.loss));
      ASSERT_EQ(got.names, want.names);
      for (size_t i = 0; i < got.grads.size(); ++i) {
        EXPECT_LE(RelNormErr(got.grads[i], want.grads[i]), grad_tol) << got.names[i];
      }
    }
  }
}

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_MODEL_KERNELS_CHECK_H_

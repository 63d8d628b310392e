// LlamaForCausalLM in LibTorch: one decoder for llama, mistral, qwen2 and
// granite, configured by ModelConfig. Submodules are registered under the
// Hugging Face names, so named_parameters() yields exactly the keys of the
// transformers state dict ("model.layers.0.self_attn.q_proj.weight", ...,
// "lm_head.weight" unless embeddings are tied).
//
// Numerics follow transformers: RMSNorm computes in fp32 and casts back before
// the weight multiply; RoPE tables are built in fp32 from inv_freq (with llama3
// frequency scaling); attention softmax in fp32 (SDPA on LibTorch 2.x, a plain
// masked implementation on 1.13); logits are returned in the parameter dtype
// and the loss upcasts them to fp32.
//
// Packed sequences: when position_ids restart at 0 inside a row, the tokens
// after the restart belong to a new sequence and attend only within it (a
// block-diagonal causal mask), as transformers does for packed inputs.
// Mistral's sliding window restricts attention to the last `sliding_window`
// positions.
//
// The model knows nothing of LoRA, data parallelism or checkpoint formats.
#ifndef FOAK_WORKER_MODEL_LLAMA_H_
#define FOAK_WORKER_MODEL_LLAMA_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <optional>

#include "kernels/registry.h"
#include "worker/model/model_config.h"

namespace foak {

// Where and how the parameters are created. Random init follows transformers
// (normal(0, initializer_range) for linear and embedding weights, zeros for
// biases, ones for norms) and draws from the generator of `options`' device;
// `random = false` leaves linear and embedding weights uninitialised, for a
// model whose weights are loaded next (no wasted init of an 8B model, and no
// CPU copy when it is built on the GPU).
// `kernels` picks the FOAK fused ops the model is built with (kernels/
// registry.h); empty means plain LibTorch. Each op runs its CUDA kernel on
// CUDA tensors and its CPU reference otherwise, so any set runs anywhere.
class LinearImpl;
struct ModelInit {
  torch::TensorOptions options = torch::TensorOptions().dtype(torch::kFloat);
  bool random = true;
  KernelSet kernels;
  // Called on each decoder-layer projection (q, k, v, o, gate, up, down; never
  // lm_head) right after its weight is created, from outside the model: a
  // quantised base (worker/quant/) takes the fresh weight there, so a model
  // too large for the device in bf16 is never whole in bf16.
  std::function<void(LinearImpl&)> on_decoder_linear;
};

// y = x W^T + b with transformers' parameter names ("weight", "bias").
class LinearImpl : public torch::nn::Module {
 public:
  // Extension point for code that wraps the model from outside (LoRA, see
  // worker/lora/): when set, forward returns adapter(x, x W^T + b) instead of
  // x W^T + b. The wrapper registers its own parameters as submodules of this
  // Linear, so they appear in named_parameters() under this layer's name.
  // x: (..., in), base_out: (..., out) -> (..., out).
  using Adapter =
      std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& base_out)>;

  // Extension point for a frozen weight held in another form (NF4 storage,
  // worker/quant/): when set, base(x) computes x W^T + b in place of
  // F::linear, and the hook owns the weight's storage (see ReleaseWeight).
  // The adapter, when set, still applies to base(x).
  using Base = std::function<torch::Tensor(const torch::Tensor& x)>;
  // Extension point for an op that computes the whole layer at once (fused
  // LoRA: base and adapter in one autograd node): when set, forward returns
  // fused(x) and neither base nor adapter is called.
  using Fused = std::function<torch::Tensor(const torch::Tensor& x)>;

  LinearImpl(int64_t in_features, int64_t out_features, bool bias, double std,
             const ModelInit& init);
  torch::Tensor forward(const torch::Tensor& x);
  // Unregisters and frees the "weight" parameter, for a `base` hook that keeps
  // it in another form. The Linear then has no "weight" in
  // named_parameters(); `weight` becomes a zero-element tensor with the dtype
  // and device the weight had (read them with weight.options()), and in/out
  // features stay readable. Module::to() no longer reaches the weight: the
  // hook's storage stays on the device it was made on.
  void ReleaseWeight();
  // True after ReleaseWeight (until a "weight" parameter is registered again).
  bool weight_released() const { return !parameters_.contains("weight"); }
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  torch::Tensor weight;  // (out, in); a (0) placeholder after ReleaseWeight
  torch::Tensor bias;    // (out) or undefined
  Adapter adapter;       // empty: a plain linear layer
  Base base;             // empty: F::linear(x, weight, bias)
  Fused fused;           // empty: base, then adapter

 private:
  int64_t in_features_;
  int64_t out_features_;
};
TORCH_MODULE(Linear);

// Token embedding; the `padding_idx` row gets no gradient (as in transformers).
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim, std::optional<int64_t> padding_idx,
                double std, const ModelInit& init);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;  // (num_embeddings, dim)

 private:
  std::optional<int64_t> padding_idx_;
};
TORCH_MODULE(Embedding);

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t hidden_size, double eps, const ModelInit& init = {});
  torch::Tensor forward(const torch::Tensor& x);  // (..., H)
  torch::Tensor weight;

 private:
  double eps_;
  bool fused_;  // kernels.rms_norm
};
TORCH_MODULE(RmsNorm);

// What attention needs to rotate q and k: the cos/sin tables for the
// positions, in fp32, (B, T, head_dim) each; or, with the fused rope kernel,
// which computes them itself, the positions (B, T) and inv_freq (head_dim/2).
struct RopeTables {
  torch::Tensor cos;
  torch::Tensor sin;
  torch::Tensor position_ids;
  torch::Tensor inv_freq;
};

class RotaryEmbeddingImpl : public torch::nn::Module {
 public:
  RotaryEmbeddingImpl(const ModelConfig& config, const ModelInit& init = {});
  RopeTables forward(const torch::Tensor& position_ids);  // (B, T) int64
  // Moving to a device moves inv_freq; changing the model's dtype leaves it in
  // fp32 (transformers builds it in fp32 whatever the model dtype).
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;
  torch::Tensor inv_freq;  // (head_dim/2) fp32 buffer, not a parameter
};
TORCH_MODULE(RotaryEmbedding);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& config, const ModelInit& init);
  // x: (B, T, H); mask: additive (B, 1, T, T) fp32 or undefined for plain causal.
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope,
                        const torch::Tensor& mask);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t num_heads_, num_kv_heads_, head_dim_;
  double scale_;
  bool fused_rope_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  // Extension point for code that computes the whole MLP in one op from
  // outside (fused LoRA, kernels/fused_lora/): when set, forward returns
  // runner(*this, x) instead of down(act(gate(x)) * up(x)).
  using Runner = std::function<torch::Tensor(MlpImpl& mlp, const torch::Tensor& x)>;

  MlpImpl(const ModelConfig& config, const ModelInit& init);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, H)
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  Runner runner;  // empty: the three Linears and the activation

 private:
  bool fused_swiglu_;
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& config, const ModelInit& init);
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope, const torch::Tensor& mask);
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};

 private:
  double residual_multiplier_;
};
TORCH_MODULE(DecoderLayer);

// The "model." prefix of transformers: embeddings, layers, final norm.
class LlamaBackboneImpl : public torch::nn::Module {
 public:
  LlamaBackboneImpl(const ModelConfig& config, const ModelInit& init);
  // input_ids, position_ids: (B, T) int64 -> hidden states (B, T, H).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
  RotaryEmbedding rotary_emb{nullptr};
  // Extension point for code that changes how layers run, from outside the
  // model (activation checkpointing, worker/train/activation_checkpointing.h):
  // when set, each layer runs as layer_runner(layer, x, rope, mask) instead of
  // layer.forward(x, rope, mask).
  using LayerRunner = std::function<torch::Tensor(DecoderLayerImpl& layer, const torch::Tensor& x,
                                                  const RopeTables& rope, const torch::Tensor& mask)>;
  LayerRunner layer_runner;

 private:
  ModelConfig config_;
  bool fused_rope_;
};
TORCH_MODULE(LlamaBackbone);

// Next-token loss as transformers computes it: logits[:, :-1] against
// labels[:, 1:], in fp32, ignoring `ignore_index`.
struct LossParts {
  torch::Tensor sum;         // () fp32: sum of token losses
  torch::Tensor count;       // () int64: number of target tokens
  torch::Tensor normalized;  // sum / normalizer, differentiable (when a normalizer was given)
};

struct CausalLmLossOptions {
  int64_t ignore_index = -100;
  // > 0: LossParts::normalized = sum / normalizer is what backward starts
  // from; gradient accumulation passes the step's total target tokens.
  double normalizer = 0.0;
  // The number of target tokens when the caller knows it on the host (the
  // trainer's batches are built on the CPU); lets the fused linear
  // cross-entropy drop ignored rows before its GEMMs without a sync.
  int64_t num_targets = -1;
};

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // Parameters are created with `init.options` (default fp32 on CPU), randomly
  // initialised as transformers does unless init.random is false.
  explicit LlamaForCausalLMImpl(const ModelConfig& config, const ModelInit& init = {});

  // input_ids (B, T) int64; position_ids (B, T) int64 or undefined (= 0..T-1).
  // Returns logits (B, T, V) in the parameter dtype, already divided by
  // logits_scaling.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids = {});
  // Final hidden states (B, T, H) before lm_head (for fused linear CE, issue 4).
  torch::Tensor Hidden(const torch::Tensor& input_ids, const torch::Tensor& position_ids = {});
  // lm_head (and Granite's logits_scaling) on hidden states (..., H) -> (..., V);
  // forward() = LogitsFromHidden(Hidden()). Generation applies it to the last
  // position only.
  torch::Tensor LogitsFromHidden(const torch::Tensor& hidden);
  // The lm_head weight (V, H): lm_head.weight, or the embedding when tied.
  torch::Tensor LmHeadWeight() const;

  // The training loss with the kernels the model was built with: the fused
  // linear cross-entropy (no (B, T, V) logits), the fused cross-entropy over
  // the logits, or the plain composite (forward + CausalLmLoss). A LoRA
  // adapter on lm_head falls back from the fused linear op to the logits.
  // input_ids, labels (B, T) int64; position_ids (B, T) or undefined.
  LossParts Loss(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                 const torch::Tensor& labels, const CausalLmLossOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const KernelSet& kernels() const { return kernels_; }
  LlamaBackbone model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  ModelConfig config_;
  KernelSet kernels_;
};
TORCH_MODULE(LlamaForCausalLM);

// The plain composite loss on logits (B, T, V) and labels (B, T) int64:
// {sum of token losses, number of target tokens, sum / normalizer when
// normalizer > 0}, so gradient accumulation can normalise by the total count.
LossParts CausalLmLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                       int64_t ignore_index = -100, double normalizer = 0.0);

// Names (in transformers' convention) of the parameters that take no weight
// decay: norms and biases.
bool IsNoDecayParameter(const std::string& name);

}  // namespace foak

#endif  // FOAK_WORKER_MODEL_LLAMA_H_

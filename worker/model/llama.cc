// LlamaForCausalLM: see llama.h for the numerics contract. Each formula below
// mirrors the transformers expression it reproduces, in the same operation
// order, because the parity fixtures compare against transformers at 1e-5 in
// fp32 and reordering float math (e.g. computing 1/x as a division instead of
// reciprocal-times-scalar) shifts results by ulps that RoPE then amplifies
// with the position.
#include "worker/model/llama.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/embedding.h>
#include <torch/nn/functional/linear.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>
#include <string>

#include "kernels/cross_entropy/cross_entropy_op.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy_op.h"
#include "kernels/rms_norm/rms_norm_op.h"
#include "kernels/rope/rope_op.h"
#include "kernels/swiglu/swiglu_op.h"
#include "worker/torch_compat.h"

namespace foak {
namespace {

namespace F = torch::nn::functional;

constexpr double kPi = 3.14159265358979323846;

// x (B, nH, T, d) -> cat(-x2, x1) with x1, x2 the two halves of the last dim.
torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor x1 = x.slice(-1, 0, half);
  torch::Tensor x2 = x.slice(-1, half);
  return torch::cat({-x2, x1}, -1);
}

// transformers' repeat_kv: (B, nKV, T, d) -> (B, nKV * n_rep, T, d), each kv
// head repeated n_rep times in a row (kv head j serves q heads j*n_rep ..).
torch::Tensor RepeatKv(const torch::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const int64_t b = x.size(0), kv = x.size(1), t = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, kv, n_rep, t, d}).reshape({b, kv * n_rep, t, d});
}

// transformers' _compute_default_rope_parameters plus the llama3 / linear
// frequency scaling, written in the same operation order.
torch::Tensor ComputeInvFreq(const ModelConfig& config) {
  const int64_t dim = config.head_dim;
  torch::Tensor exponent =
      torch::arange(0, dim, 2, torch::TensorOptions().dtype(torch::kInt64)).to(torch::kFloat) /
      dim;
  // 1.0 / (base ** exponent): Python evaluates `1.0 / t` as t.reciprocal() * 1.0.
  torch::Tensor inv_freq = at::pow(config.rope_theta, exponent).reciprocal() * 1.0;
  const RopeScaling& rs = config.rope_scaling;
  if (rs.rope_type == "linear") {
    inv_freq = inv_freq / rs.factor;
  } else if (rs.rope_type == "llama3") {
    const double old_context_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_freq_wavelen = old_context_len / rs.low_freq_factor;
    const double high_freq_wavelen = old_context_len / rs.high_freq_factor;
    torch::Tensor wavelen = inv_freq.reciprocal() * (2 * kPi);
    torch::Tensor inv_freq_llama =
        torch::where(wavelen > low_freq_wavelen, inv_freq / rs.factor, inv_freq);
    torch::Tensor smooth_factor = (wavelen.reciprocal() * old_context_len - rs.low_freq_factor) /
                                  (rs.high_freq_factor - rs.low_freq_factor);
    torch::Tensor smoothed_inv_freq =
        (1 - smooth_factor) * inv_freq_llama / rs.factor + smooth_factor * inv_freq_llama;
    torch::Tensor is_medium_freq =
        (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
    inv_freq = torch::where(is_medium_freq, smoothed_inv_freq, inv_freq_llama);
  }
  return inv_freq;
}

// Sequence index of every token of a packed row, as transformers'
// find_packed_sequence_indices: a new sequence starts wherever the position
// does not continue the previous one by +1 (normally: it restarts at 0).
// position_ids (B, T) -> (B, T) int64, 0 for the first sequence of a row.
torch::Tensor PackedSequenceIds(const torch::Tensor& position_ids) {
  torch::Tensor breaks = torch::ones_like(position_ids, torch::kBool);
  breaks.slice(1, 0, 1).fill_(false);
  if (position_ids.size(1) > 1) {
    torch::Tensor diff = position_ids.slice(1, 1) - position_ids.slice(1, 0, -1);
    breaks.slice(1, 1).copy_(diff != 1);
  }
  return breaks.to(torch::kInt64).cumsum(1);
}

// Fills the two derived fields when a config was built in code rather than
// parsed (ParseModelConfig already does this).
ModelConfig WithDerivedDefaults(ModelConfig config) {
  if (config.num_key_value_heads == 0) config.num_key_value_heads = config.num_attention_heads;
  if (config.head_dim == 0 && config.num_attention_heads > 0) {
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }
  return config;
}

}  // namespace

// ----------------------------------------------------- Linear, Embedding --

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool has_bias, double std,
                       const ModelInit& init)
    : in_features_(in_features), out_features_(out_features) {
  torch::NoGradGuard no_grad;
  torch::Tensor w = torch::empty({out_features, in_features}, init.options);
  if (init.random) w.normal_(0.0, std);
  weight = register_parameter("weight", w);
  if (has_bias) bias = register_parameter("bias", torch::zeros({out_features}, init.options));
  if (init.on_decoder_linear) init.on_decoder_linear(*this);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (fused) return fused(x);
  torch::Tensor out = base ? base(x) : F::linear(x, weight, bias);
  return adapter ? adapter(x, out) : out;
}

void LinearImpl::ReleaseWeight() {
  if (parameters_.contains("weight")) parameters_.erase("weight");
  // A zero-element placeholder keeps the dtype and device the weight had, for
  // code that builds tensors to match it (LoRA factors) after the release.
  weight = torch::empty({0}, weight.defined() ? weight.options() : torch::TensorOptions());
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim,
                             std::optional<int64_t> padding_idx, double std,
                             const ModelInit& init)
    : padding_idx_(padding_idx) {
  torch::NoGradGuard no_grad;
  torch::Tensor w = torch::empty({num_embeddings, dim}, init.options);
  if (init.random) {
    w.normal_(0.0, std);
    if (padding_idx) w[*padding_idx].zero_();
  }
  weight = register_parameter("weight", w);
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  auto options = F::EmbeddingFuncOptions();
  if (padding_idx_) options.padding_idx(*padding_idx_);
  return F::embedding(ids, weight, options);
}

// ---------------------------------------------------------------- RmsNorm --

RmsNormImpl::RmsNormImpl(int64_t hidden_size, double eps, const ModelInit& init)
    : eps_(eps), fused_(init.kernels.rms_norm) {
  weight = register_parameter("weight", torch::ones({hidden_size}, init.options));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  if (fused_ && x.scalar_type() == weight.scalar_type()) return ops::RmsNorm(x, weight, eps_);
  const auto input_dtype = x.scalar_type();
  torch::Tensor h = x.to(torch::kFloat);
  torch::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(variance + eps_);
  return weight * h.to(input_dtype);
}

// -------------------------------------------------------- RotaryEmbedding --

RotaryEmbeddingImpl::RotaryEmbeddingImpl(const ModelConfig& config, const ModelInit& init) {
  inv_freq = register_buffer("inv_freq", ComputeInvFreq(config).to(init.options.device()));
}

void RotaryEmbeddingImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  Module::to(device, non_blocking);  // inv_freq stays fp32 whatever the model dtype
}
void RotaryEmbeddingImpl::to(torch::Dtype dtype, bool non_blocking) {}
void RotaryEmbeddingImpl::to(torch::Device device, bool non_blocking) {
  Module::to(device, non_blocking);
}

RopeTables RotaryEmbeddingImpl::forward(const torch::Tensor& position_ids) {
  // freqs (B, T, d/2) = position * inv_freq: transformers computes it as a
  // matmul with inner dimension 1, i.e. the same single products.
  torch::Tensor freqs = position_ids.to(torch::kFloat).unsqueeze(-1) * inv_freq.to(torch::kFloat);
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);  // (B, T, d)
  RopeTables tables;
  tables.cos = emb.cos();
  tables.sin = emb.sin();
  return tables;
}

// -------------------------------------------------------------- Attention --

AttentionImpl::AttentionImpl(const ModelConfig& config, const ModelInit& init)
    : num_heads_(config.num_attention_heads),
      num_kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim),
      scale_(config.AttentionScale()),
      fused_rope_(init.kernels.rope) {
  const int64_t h = config.hidden_size;
  const double std = config.initializer_range;
  q_proj = register_module("q_proj", Linear(h, num_heads_ * head_dim_, config.QkvBias(), std, init));
  k_proj =
      register_module("k_proj", Linear(h, num_kv_heads_ * head_dim_, config.QkvBias(), std, init));
  v_proj =
      register_module("v_proj", Linear(h, num_kv_heads_ * head_dim_, config.QkvBias(), std, init));
  o_proj = register_module("o_proj", Linear(num_heads_ * head_dim_, h, config.OBias(), std, init));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const RopeTables& rope,
                                     const torch::Tensor& mask) {
  const int64_t b = x.size(0), t = x.size(1);
  torch::Tensor q, k;
  if (fused_rope_) {
    // Rotated in place in the projections' (B, T, n*d) layout.
    auto qk = ops::ApplyRope(q_proj(x).contiguous(), k_proj(x).contiguous(), rope.position_ids,
                             rope.inv_freq, head_dim_);
    q = qk.first.view({b, t, num_heads_, head_dim_}).transpose(1, 2);
    k = qk.second.view({b, t, num_kv_heads_, head_dim_}).transpose(1, 2);
  } else {
    // (B, T, n*d) -> (B, n, T, d)
    q = q_proj(x).view({b, t, num_heads_, head_dim_}).transpose(1, 2);
    k = k_proj(x).view({b, t, num_kv_heads_, head_dim_}).transpose(1, 2);
    torch::Tensor cos = rope.cos.to(x.scalar_type()).unsqueeze(1);  // (B, 1, T, d)
    torch::Tensor sin = rope.sin.to(x.scalar_type()).unsqueeze(1);
    q = q * cos + RotateHalf(q) * sin;
    k = k * cos + RotateHalf(k) * sin;
  }
  torch::Tensor v = v_proj(x).view({b, t, num_kv_heads_, head_dim_}).transpose(1, 2);

  const int64_t n_rep = num_heads_ / num_kv_heads_;
  torch::Tensor out = compat::ScaledDotProductAttention(q, RepeatKv(k, n_rep), RepeatKv(v, n_rep),
                                                        mask, scale_);  // (B, nH, T, d)
  out = out.transpose(1, 2).reshape({b, t, num_heads_ * head_dim_});
  return o_proj(out);
}

// -------------------------------------------------------------------- Mlp --

MlpImpl::MlpImpl(const ModelConfig& config, const ModelInit& init)
    : fused_swiglu_(init.kernels.swiglu) {
  const int64_t h = config.hidden_size, i = config.intermediate_size;
  const double std = config.initializer_range;
  gate_proj = register_module("gate_proj", Linear(h, i, config.mlp_bias, std, init));
  up_proj = register_module("up_proj", Linear(h, i, config.mlp_bias, std, init));
  down_proj = register_module("down_proj", Linear(i, h, config.mlp_bias, std, init));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  if (runner) return runner(*this, x);
  if (fused_swiglu_) return down_proj(ops::SwiGlu(gate_proj(x), up_proj(x)));
  return down_proj(F::silu(gate_proj(x)) * up_proj(x));
}

// ----------------------------------------------------------- DecoderLayer --

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& config, const ModelInit& init)
    : residual_multiplier_(config.residual_multiplier) {
  // Registration order = transformers' parameter order.
  self_attn = register_module("self_attn", Attention(config, init));
  mlp = register_module("mlp", Mlp(config, init));
  input_layernorm =
      register_module("input_layernorm", RmsNorm(config.hidden_size, config.rms_norm_eps, init));
  post_attention_layernorm = register_module(
      "post_attention_layernorm", RmsNorm(config.hidden_size, config.rms_norm_eps, init));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const RopeTables& rope,
                                        const torch::Tensor& mask) {
  torch::Tensor a = self_attn(input_layernorm(x), rope, mask);
  if (residual_multiplier_ != 1.0) a = a * residual_multiplier_;
  torch::Tensor h = x + a;
  torch::Tensor m = mlp(post_attention_layernorm(h));
  if (residual_multiplier_ != 1.0) m = m * residual_multiplier_;
  return h + m;
}

// ---------------------------------------------------------- LlamaBackbone --

LlamaBackboneImpl::LlamaBackboneImpl(const ModelConfig& raw_config, const ModelInit& init)
    : config_(WithDerivedDefaults(raw_config)), fused_rope_(init.kernels.rope) {
  const ModelConfig& config = config_;
  // transformers passes pad_token_id as padding_idx: that row gets no gradient.
  std::optional<int64_t> padding_idx;
  if (config.pad_token_id && *config.pad_token_id >= 0 &&
      *config.pad_token_id < config.vocab_size) {
    padding_idx = *config.pad_token_id;
  }
  embed_tokens = register_module(
      "embed_tokens", Embedding(config.vocab_size, config.hidden_size, padding_idx,
                                config.initializer_range, init));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers->push_back(DecoderLayer(config, init));
  }
  norm = register_module("norm", RmsNorm(config.hidden_size, config.rms_norm_eps, init));
  rotary_emb = register_module("rotary_emb", RotaryEmbedding(config, init));
}

torch::Tensor LlamaBackboneImpl::forward(const torch::Tensor& input_ids,
                                         const torch::Tensor& position_ids) {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be (B, T), got ", input_ids.sizes());
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  const auto device = input_ids.device();
  torch::Tensor positions = position_ids;
  if (!positions.defined()) {
    positions = torch::arange(t, torch::TensorOptions().dtype(torch::kInt64).device(device))
                    .unsqueeze(0)
                    .expand({b, t});
  }
  TORCH_CHECK(positions.sizes() == input_ids.sizes(), "position_ids ", positions.sizes(),
              " must match input_ids ", input_ids.sizes());

  // One additive mask (B, 1, T, T) for all layers when packing or a sliding
  // window makes attention more than plain causal; undefined otherwise.
  torch::Tensor mask;
  const bool windowed = config_.sliding_window.has_value() && *config_.sliding_window < t;
  torch::Tensor seq_ids;
  if (position_ids.defined()) {
    seq_ids = PackedSequenceIds(positions);
    if (seq_ids.select(1, t - 1).max().item<int64_t>() == 0) seq_ids = torch::Tensor();
  }
  if (windowed || seq_ids.defined()) {
    auto idx_options = torch::TensorOptions().dtype(torch::kInt64).device(device);
    torch::Tensor q_idx = torch::arange(t, idx_options).unsqueeze(1);  // (T, 1)
    torch::Tensor k_idx = torch::arange(t, idx_options).unsqueeze(0);  // (1, T)
    torch::Tensor visible = (k_idx <= q_idx).unsqueeze(0).expand({b, t, t});
    if (windowed) visible = visible & (k_idx > q_idx - *config_.sliding_window).unsqueeze(0);
    if (seq_ids.defined()) visible = visible & (seq_ids.unsqueeze(2) == seq_ids.unsqueeze(1));
    mask = torch::zeros({b, 1, t, t}, torch::TensorOptions().dtype(torch::kFloat).device(device))
               .masked_fill(visible.unsqueeze(1).logical_not(),
                            std::numeric_limits<float>::lowest());
  }

  torch::Tensor h = embed_tokens(input_ids);  // (B, T, H)
  if (config_.embedding_multiplier != 1.0) h = h * config_.embedding_multiplier;
  RopeTables rope;
  if (fused_rope_) {
    rope.position_ids = positions.contiguous();
    rope.inv_freq = rotary_emb->inv_freq;
  } else {
    rope = rotary_emb(positions);
  }
  for (const auto& layer : *layers) {
    DecoderLayerImpl& l = *layer->as<DecoderLayerImpl>();
    h = layer_runner ? layer_runner(l, h, rope, mask) : l.forward(h, rope, mask);
  }
  return norm(h);
}

// ------------------------------------------------------- LlamaForCausalLM --

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& raw_config, const ModelInit& init)
    : config_(WithDerivedDefaults(raw_config)), kernels_(init.kernels) {
  const ModelConfig& config = config_;
  model = register_module("model", LlamaBackbone(config, init));
  if (!config.tie_word_embeddings) {
    ModelInit head_init = init;
    head_init.on_decoder_linear = nullptr;  // the head is never quantised
    lm_head = register_module("lm_head", Linear(config.hidden_size, config.vocab_size, false,
                                                config.initializer_range, head_init));
  }
}

torch::Tensor LlamaForCausalLMImpl::Hidden(const torch::Tensor& input_ids,
                                           const torch::Tensor& position_ids) {
  return model(input_ids, position_ids);
}

torch::Tensor LlamaForCausalLMImpl::LmHeadWeight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor LlamaForCausalLMImpl::LogitsFromHidden(const torch::Tensor& hidden) {
  torch::Tensor logits = F::linear(hidden, LmHeadWeight());  // (..., V)
  if (config_.logits_scaling != 1.0) logits = logits / config_.logits_scaling;
  return logits;
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids,
                                            const torch::Tensor& position_ids) {
  return LogitsFromHidden(Hidden(input_ids, position_ids));  // (B, T, V)
}

// ------------------------------------------------------------------- Loss --

namespace {

// labels (B, T) -> (B, T) with row b holding labels[b, 1:] then ignore_index:
// the target of position t is the token at t + 1, so the loss runs over all
// B*T rows of the hidden states or logits without slicing (or copying) them.
torch::Tensor ShiftLabels(const torch::Tensor& labels, int64_t ignore_index) {
  return torch::cat({labels.slice(1, 1), torch::full({labels.size(0), 1}, ignore_index,
                                                      labels.options())},
                    1);
}

}  // namespace

LossParts LlamaForCausalLMImpl::Loss(const torch::Tensor& input_ids,
                                     const torch::Tensor& position_ids,
                                     const torch::Tensor& labels,
                                     const CausalLmLossOptions& options) {
  const bool head_adapter = lm_head && lm_head->adapter;
  if (!kernels_.fused_linear_cross_entropy && !kernels_.cross_entropy) {
    return CausalLmLoss(forward(input_ids, position_ids), labels, options.ignore_index,
                        options.normalizer);
  }
  TORCH_CHECK(labels.sizes() == input_ids.sizes(), "labels ", labels.sizes(),
              " must match input_ids ", input_ids.sizes());
  ops::LossOptions loss;
  loss.reduction = ops::LossReduction::kSum;
  loss.ignore_index = options.ignore_index;
  loss.logit_scale = 1.0 / config_.logits_scaling;
  loss.normalizer = options.normalizer;
  torch::Tensor shifted = ShiftLabels(labels, options.ignore_index);
  torch::Tensor hidden = Hidden(input_ids, position_ids);  // (B, T, H)
  ops::LossResult result;
  if (kernels_.fused_linear_cross_entropy && !head_adapter) {
    ops::FusedLinearCrossEntropyOptions o;
    o.loss = loss;
    o.num_valid = options.num_targets;
    result = ops::FusedLinearCrossEntropy(hidden, LmHeadWeight(), shifted, o);
  } else {
    // Unscaled logits: the kernel applies logits_scaling itself, and writes
    // its gradient over them.
    torch::Tensor logits = lm_head ? lm_head(hidden) : F::linear(hidden, LmHeadWeight());
    result = ops::CrossEntropy(logits, shifted, loss);
  }
  LossParts parts;
  parts.count = shifted.ne(options.ignore_index).sum();
  if (options.normalizer > 0) {
    parts.normalized = result.loss;
    parts.sum = result.loss.detach() * options.normalizer;
  } else {
    parts.sum = result.loss;
  }
  return parts;
}

LossParts CausalLmLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                       int64_t ignore_index, double normalizer) {
  TORCH_CHECK(logits.dim() == 3 && labels.dim() == 2 && logits.size(0) == labels.size(0) &&
                  logits.size(1) == labels.size(1),
              "CausalLmLoss: logits (B, T, V) and labels (B, T) disagree: ", logits.sizes(),
              " vs ", labels.sizes());
  const int64_t v = logits.size(2);
  torch::Tensor shift_logits = logits.slice(1, 0, -1).to(torch::kFloat).reshape({-1, v});
  torch::Tensor shift_labels = labels.slice(1, 1).reshape({-1});
  torch::Tensor sum = at::cross_entropy_loss(shift_logits, shift_labels, /*weight=*/{},
                                             at::Reduction::Sum, ignore_index);
  torch::Tensor count = (shift_labels != ignore_index).sum();
  return LossParts{sum, count, normalizer > 0 ? sum / normalizer : torch::Tensor()};
}

bool IsNoDecayParameter(const std::string& name) {
  auto ends_with = [&name](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with("norm.weight") || ends_with("layernorm.weight") || ends_with(".bias");
}

}  // namespace foak

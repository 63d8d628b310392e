// ModelConfig: the architecture of a Llama-family decoder, read from a Hugging
// Face config.json. One struct covers llama (incl. Llama-3 GQA and llama3 rope
// scaling), mistral (sliding window), qwen2 (q/k/v bias) and granite (the four
// multipliers). Both the transformers 4.x layout (`rope_theta`, `rope_scaling`,
// `torch_dtype`) and the 5.x layout (`rope_parameters`, `dtype`) are accepted.
// No torch here: the coordinator validates model folders with it too.
#ifndef FOAK_WORKER_MODEL_MODEL_CONFIG_H_
#define FOAK_WORKER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace foak {

struct RopeScaling {
  std::string rope_type = "default";  // "default" | "llama3" | "linear"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string model_type;  // "llama" | "mistral" | "qwen2" | "granite"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool attention_bias = false;  // q/k/v/o bias (llama, granite); qwen2: q/k/v only
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::optional<int64_t> sliding_window;  // mistral; qwen2 when use_sliding_window
  double initializer_range = 0.02;
  // Granite's multipliers; 1.0 (and attention_multiplier = 1/sqrt(head_dim))
  // reproduce plain Llama.
  double embedding_multiplier = 1.0;
  double residual_multiplier = 1.0;
  double attention_multiplier = 0.0;  // 0 = 1/sqrt(head_dim)
  double logits_scaling = 1.0;        // logits are divided by this
  std::string torch_dtype = "float32";
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::optional<int64_t> pad_token_id;

  // Does the attention have q/k/v bias? (qwen2 always; others per attention_bias)
  bool QkvBias() const { return model_type == "qwen2" || attention_bias; }
  bool OBias() const { return model_type != "qwen2" && attention_bias; }
  double AttentionScale() const;
};

// Parses config.json text. `source` (the file path) prefixes every error, which
// names the field and what was expected, e.g.
//   "model/config.json: field 'num_key_value_heads' = 3 must divide num_attention_heads = 8".
// Unsupported model_type lists the supported ones.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source);
// Reads and parses <model_dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);
// A config.json that transformers (4.x and 5.x) loads into the same architecture.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace foak

#endif  // FOAK_WORKER_MODEL_MODEL_CONFIG_H_

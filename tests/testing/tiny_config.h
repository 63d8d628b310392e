// The tiny Llama shape the model tests share: 2 layers, hidden 64, 4 heads of
// 16 with 2 kv heads (GQA), vocab 250 (not a multiple of 64, like the parity
// fixtures). Tests that need another shape start from it and change fields.
#ifndef FOAK_TESTS_TESTING_TINY_CONFIG_H_
#define FOAK_TESTS_TESTING_TINY_CONFIG_H_

#include "worker/model/model_config.h"

namespace foak::testing {

inline ModelConfig TinyLlamaConfig() {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 250;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  return c;
}

// Llama-3 rope scaling with an original context of 32 positions, so the tiny
// tests' sequences reach the scaled and smoothed frequency bands.
inline void UseLlama3Rope(ModelConfig& c) {
  c.rope_theta = 500000.0;
  c.rope_scaling.rope_type = "llama3";
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 32;
}

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_TINY_CONFIG_H_

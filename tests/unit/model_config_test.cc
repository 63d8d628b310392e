// ParseModelConfig / ModelConfigToJson: every family as real Hub configs spell
// it (4.x and 5.x layouts), transformers' defaults, one error per bad input
// (each must name the offending field), and the write -> parse round trip.
#include "worker/model/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"

namespace foak {
namespace {

// Llama-3.1-8B's config.json (4.x layout), trimmed of fields we do not read.
constexpr const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "vocab_size": 128256
})";

// A transformers 5.x save of a small llama.
constexpr const char* kLlama5x = R"({
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "vocab_size": 256, "hidden_size": 64, "intermediate_size": 160,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "head_dim": 16,
  "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64},
  "dtype": "float32",
  "tie_word_embeddings": true
})";

constexpr const char* kMistral = R"({
  "architectures": ["MistralForCausalLM"], "model_type": "mistral",
  "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
  "sliding_window": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-05,
  "max_position_embeddings": 32768, "torch_dtype": "bfloat16",
  "bos_token_id": 1, "eos_token_id": 2
})";

constexpr const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
  "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
  "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
  "max_window_layers": 21, "sliding_window": 32768, "use_sliding_window": false,
  "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151643,
  "max_position_embeddings": 32768, "rope_scaling": null
})";

constexpr const char* kGranite = R"({
  "architectures": ["GraniteForCausalLM"], "model_type": "granite",
  "vocab_size": 49155, "hidden_size": 2048, "intermediate_size": 8192,
  "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8,
  "embedding_multiplier": 12.0, "residual_multiplier": 0.22,
  "attention_multiplier": 0.015625, "logits_scaling": 8.0,
  "attention_bias": false, "mlp_bias": false, "tie_word_embeddings": true,
  "rope_theta": 10000000.0, "torch_dtype": "bfloat16", "pad_token_id": 0
})";

constexpr const char* kMinimal = R"({"model_type": "llama", "vocab_size": 100,
  "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 8})";

// kMinimal with `field` set to the JSON `value`, or left out when `value` is empty.
std::string MinimalWith(const std::string& field, const std::string& value) {
  const std::pair<std::string, std::string> fields[] = {
      {"model_type", "\"llama\""},    {"vocab_size", "100"},        {"hidden_size", "64"},
      {"intermediate_size", "128"}, {"num_hidden_layers", "2"}, {"num_attention_heads", "8"}};
  std::vector<std::string> parts;
  for (const auto& [k, v] : fields) {
    if (k != field) {
      parts.push_back(absl::StrCat("\"", k, "\": ", v));
    } else if (!value.empty()) {
      parts.push_back(absl::StrCat("\"", k, "\": ", value));
    }
  }
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

ModelConfig MustParse(const std::string& text) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(text, "test/config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig();
}

// Replaces the first occurrence of `from` in `text` (which must exist).
std::string Edit(std::string text, const std::string& from, const std::string& to) {
  size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

// Expects a parse error whose message contains every `needle`.
void ExpectError(const std::string& text, std::initializer_list<std::string> needles) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(text, "dir/config.json");
  ASSERT_FALSE(c.ok()) << "parsed unexpectedly: " << text;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  std::string msg(c.status().message());
  EXPECT_NE(msg.find("dir/config.json"), std::string::npos) << msg;
  for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << msg;
}

bool SameConfig(const ModelConfig& a, const ModelConfig& b) {
  return a.model_type == b.model_type && a.vocab_size == b.vocab_size &&
         a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
         a.num_hidden_layers == b.num_hidden_layers &&
         a.num_attention_heads == b.num_attention_heads &&
         a.num_key_value_heads == b.num_key_value_heads && a.head_dim == b.head_dim &&
         a.max_position_embeddings == b.max_position_embeddings &&
         a.rms_norm_eps == b.rms_norm_eps && a.rope_theta == b.rope_theta &&
         a.rope_scaling.rope_type == b.rope_scaling.rope_type &&
         a.rope_scaling.factor == b.rope_scaling.factor &&
         a.rope_scaling.low_freq_factor == b.rope_scaling.low_freq_factor &&
         a.rope_scaling.high_freq_factor == b.rope_scaling.high_freq_factor &&
         a.rope_scaling.original_max_position_embeddings ==
             b.rope_scaling.original_max_position_embeddings &&
         a.attention_bias == b.attention_bias && a.mlp_bias == b.mlp_bias &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.sliding_window == b.sliding_window &&
         a.initializer_range == b.initializer_range &&
         a.embedding_multiplier == b.embedding_multiplier &&
         a.residual_multiplier == b.residual_multiplier &&
         a.attention_multiplier == b.attention_multiplier &&
         a.logits_scaling == b.logits_scaling && a.torch_dtype == b.torch_dtype &&
         a.bos_token_id == b.bos_token_id && a.eos_token_id == b.eos_token_id &&
         a.pad_token_id == b.pad_token_id;
}

TEST(ModelConfigTest, Llama31With4xRopeScaling) {
  ModelConfig c = MustParse(kLlama31);
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.rope_type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_id, 128001);  // first of the list
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_FALSE(c.QkvBias());
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_DOUBLE_EQ(c.AttentionScale(), 1.0 / std::sqrt(128.0));
}

TEST(ModelConfigTest, OldStyleRopeScalingTypeKey) {
  ModelConfig c = MustParse(Edit(kMinimal, "\"vocab_size\"",
                                 R"("rope_scaling": {"type": "linear", "factor": 2.5}, "vocab_size")"));
  EXPECT_EQ(c.rope_scaling.rope_type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.5);
}

TEST(ModelConfigTest, Llama5xRopeParameters) {
  ModelConfig c = MustParse(kLlama5x);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.rope_type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(c.torch_dtype, "float32");
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(ModelConfigTest, Default5xRopeParametersKeepTheta) {
  ModelConfig c = MustParse(Edit(kMinimal, "\"vocab_size\"",
                                 R"("rope_parameters": {"rope_type": "default", "rope_theta": 1234.0}, "vocab_size")"));
  EXPECT_EQ(c.rope_scaling.rope_type, "default");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1234.0);
  // rope_parameters without rope_theta falls back to the top-level one.
  c = MustParse(Edit(kMinimal, "\"vocab_size\"",
                     R"("rope_theta": 77.0, "rope_parameters": {"rope_type": "default"}, "vocab_size")"));
  EXPECT_DOUBLE_EQ(c.rope_theta, 77.0);
}

TEST(ModelConfigTest, MistralSlidingWindow) {
  ModelConfig c = MustParse(kMistral);
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_FALSE(c.QkvBias());
  EXPECT_FALSE(c.OBias());
  // null means no window; an absent key means MistralConfig's default 4096.
  EXPECT_FALSE(MustParse(Edit(kMistral, "\"sliding_window\": 4096", "\"sliding_window\": null"))
                   .sliding_window.has_value());
  EXPECT_EQ(MustParse(Edit(kMistral, "\"sliding_window\": 4096,", "")).sliding_window, 4096);
  EXPECT_EQ(MustParse(Edit(kMistral, "\"sliding_window\": 4096", "\"sliding_window\": 100"))
                .sliding_window,
            100);
}

TEST(ModelConfigTest, Qwen2BiasAndWindow) {
  ModelConfig c = MustParse(kQwen2);
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.QkvBias());
  EXPECT_FALSE(c.OBias());
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value());  // use_sliding_window is false
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);

  // Window on every layer (max_window_layers 0) is supported ...
  std::string all = Edit(Edit(kQwen2, "\"use_sliding_window\": false", "\"use_sliding_window\": true"),
                         "\"max_window_layers\": 21", "\"max_window_layers\": 0");
  EXPECT_EQ(MustParse(all).sliding_window, 32768);
  // ... as is max_window_layers >= num_hidden_layers (no layer slides) ...
  std::string none = Edit(kQwen2, "\"use_sliding_window\": false", "\"use_sliding_window\": true");
  none = Edit(none, "\"max_window_layers\": 21", "\"max_window_layers\": 24");
  EXPECT_FALSE(MustParse(none).sliding_window.has_value());
  // ... but a mix of sliding and full layers is rejected.
  ExpectError(Edit(kQwen2, "\"use_sliding_window\": false", "\"use_sliding_window\": true"),
              {"3 of 24", "max_window_layers"});
}

TEST(ModelConfigTest, GraniteMultipliers) {
  ModelConfig c = MustParse(kGranite);
  EXPECT_EQ(c.model_type, "granite");
  EXPECT_DOUBLE_EQ(c.embedding_multiplier, 12.0);
  EXPECT_DOUBLE_EQ(c.residual_multiplier, 0.22);
  EXPECT_DOUBLE_EQ(c.attention_multiplier, 0.015625);
  EXPECT_DOUBLE_EQ(c.logits_scaling, 8.0);
  EXPECT_DOUBLE_EQ(c.AttentionScale(), 0.015625);
  EXPECT_EQ(c.pad_token_id, 0);
  // GraniteConfig's defaults: attention_multiplier 1.0 is the scale itself.
  std::string bare = Edit(kGranite,
                          R"("embedding_multiplier": 12.0, "residual_multiplier": 0.22,
  "attention_multiplier": 0.015625, "logits_scaling": 8.0,)",
                          "");
  ModelConfig d = MustParse(bare);
  EXPECT_DOUBLE_EQ(d.embedding_multiplier, 1.0);
  EXPECT_DOUBLE_EQ(d.residual_multiplier, 1.0);
  EXPECT_DOUBLE_EQ(d.AttentionScale(), 1.0);
  EXPECT_DOUBLE_EQ(d.logits_scaling, 1.0);
}

TEST(ModelConfigTest, MultipliersIgnoredOutsideGranite) {
  ModelConfig c = MustParse(Edit(kMinimal, "\"vocab_size\"", "\"logits_scaling\": 4.0, \"vocab_size\""));
  EXPECT_DOUBLE_EQ(c.logits_scaling, 1.0);
  EXPECT_DOUBLE_EQ(c.AttentionScale(), 1.0 / std::sqrt(8.0));
}

TEST(ModelConfigTest, Defaults) {
  ModelConfig c = MustParse(kMinimal);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.rope_type, "default");
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_DOUBLE_EQ(c.initializer_range, 0.02);
  EXPECT_EQ(c.torch_dtype, "float32");
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_FALSE(c.sliding_window.has_value());
  // Explicit head_dim lifts the divisibility requirement.
  ModelConfig d = MustParse(Edit(Edit(kMinimal, "\"hidden_size\": 64", "\"hidden_size\": 60"),
                                 "\"vocab_size\"", "\"head_dim\": 10, \"vocab_size\""));
  EXPECT_EQ(d.head_dim, 10);
  // "torch.bfloat16" spelling and attention/mlp bias flags.
  ModelConfig e = MustParse(Edit(kMinimal, "\"vocab_size\"",
                                 R"("torch_dtype": "torch.bfloat16", "attention_bias": true, "mlp_bias": true, "vocab_size")"));
  EXPECT_EQ(e.torch_dtype, "bfloat16");
  EXPECT_TRUE(e.QkvBias());
  EXPECT_TRUE(e.OBias());
  EXPECT_TRUE(e.mlp_bias);
}

TEST(ModelConfigTest, RejectsBadInput) {
  ExpectError(Edit(kMinimal, "\"llama\"", "\"gpt2\""),
              {"unsupported model_type 'gpt2'", "supported: llama, mistral, qwen2, granite"});
  ExpectError(Edit(kMinimal, "\"model_type\": \"llama\",", ""), {"model_type"});
  ExpectError("{\"model_type\": \"llama\",,}", {"invalid JSON", "byte 24"});
  ExpectError("[1, 2]", {"JSON object"});
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads"}) {
    SCOPED_TRACE(field);
    ExpectError(MinimalWith(field, ""), {"missing required field", field, "positive integer"});
    ExpectError(MinimalWith(field, "null"), {"missing required field", field});
    for (const char* bad : {"\"64\"", "0", "-4", "64.5", "true"}) {
      ExpectError(MinimalWith(field, bad), {field, bad, "positive integer"});
    }
  }
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"num_key_value_heads\": 3, \"vocab_size\""),
              {"num_key_value_heads", "= 3", "must divide num_attention_heads = 8"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"num_key_value_heads\": 0, \"vocab_size\""),
              {"num_key_value_heads"});
  ExpectError(Edit(kMinimal, "\"hidden_size\": 64", "\"hidden_size\": 60"),
              {"hidden_size", "60", "divisible by num_attention_heads", "head_dim"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"head_dim\": 7, \"vocab_size\""),
              {"head_dim", "7", "even"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"hidden_act\": \"gelu\", \"vocab_size\""),
              {"hidden_act", "gelu", "silu"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"rms_norm_eps\": -1, \"vocab_size\""),
              {"rms_norm_eps", "positive number"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"rope_theta\": \"big\", \"vocab_size\""),
              {"rope_theta", "positive number"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"tie_word_embeddings\": 1, \"vocab_size\""),
              {"tie_word_embeddings", "true or false"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"max_position_embeddings\": 0, \"vocab_size\""),
              {"max_position_embeddings"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"torch_dtype\": \"int8\", \"vocab_size\""),
              {"torch_dtype", "int8", "bfloat16"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"dtype\": 3, \"vocab_size\""), {"dtype"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"eos_token_id\": \"</s>\", \"vocab_size\""),
              {"eos_token_id"});
  ExpectError(Edit(kMistral, "\"sliding_window\": 4096", "\"sliding_window\": -1"),
              {"sliding_window"});
  ExpectError(Edit(kGranite, "\"logits_scaling\": 8.0", "\"logits_scaling\": 0"),
              {"logits_scaling", "positive number"});
}

TEST(ModelConfigTest, RejectsBadRope) {
  ExpectError(Edit(kLlama31, "\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""),
              {"rope_scaling.rope_type", "yarn", "supported: default, linear, llama3"});
  ExpectError(Edit(kLlama5x, "\"rope_type\": \"llama3\"", "\"rope_type\": \"dynamic\""),
              {"rope_parameters.rope_type", "dynamic", "llama3"});
  ExpectError(Edit(kLlama31, "\"original_max_position_embeddings\": 8192, ", ""),
              {"original_max_position_embeddings"});
  ExpectError(Edit(kLlama31, "\"factor\": 8.0, ", ""), {"rope_scaling.factor"});
  ExpectError(Edit(kLlama31, "\"factor\": 8.0", "\"factor\": \"8\""),
              {"rope_scaling.factor", "positive number"});
  ExpectError(Edit(kLlama31, "\"high_freq_factor\": 4.0", "\"high_freq_factor\": 1.0"),
              {"high_freq_factor", "low_freq_factor"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"", "\"rope_scaling\": 2.0, \"vocab_size\""),
              {"rope_scaling", "object or null"});
  ExpectError(Edit(kMinimal, "\"vocab_size\"",
                   R"("rope_parameters": {"rope_type": "default", "rope_theta": 0}, "vocab_size")"),
              {"rope_parameters.rope_theta"});
}

TEST(ModelConfigTest, RoundTripEveryFamily) {
  for (const char* text : {kLlama31, kLlama5x, kMistral, kQwen2, kGranite, kMinimal}) {
    ModelConfig c = MustParse(text);
    std::string json = ModelConfigToJson(c);
    ModelConfig back = MustParse(json);
    EXPECT_TRUE(SameConfig(c, back)) << json;
  }
  // Non-default values in every field, including the optional ones.
  ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 1000;
  c.hidden_size = 96;
  c.intermediate_size = 200;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 3;
  c.head_dim = 32;
  c.max_position_embeddings = 777;
  c.rms_norm_eps = 3.5e-7;
  c.rope_theta = 12345.5;
  c.rope_scaling.rope_type = "linear";
  c.rope_scaling.factor = 3.25;
  c.tie_word_embeddings = true;
  c.sliding_window = 512;
  c.initializer_range = 0.0125;
  c.torch_dtype = "float16";
  c.bos_token_id = 5;
  c.eos_token_id = 6;
  c.pad_token_id = 7;
  EXPECT_TRUE(SameConfig(c, MustParse(ModelConfigToJson(c)))) << ModelConfigToJson(c);
}

TEST(ModelConfigTest, ToJsonCarriesBothRopeLayouts) {
  ModelConfig c = MustParse(kLlama31);
  std::string json = ModelConfigToJson(c);
  EXPECT_NE(json.find("\"LlamaForCausalLM\""), std::string::npos);
  EXPECT_NE(json.find("\"rope_scaling\""), std::string::npos);
  EXPECT_NE(json.find("\"rope_parameters\""), std::string::npos);
  EXPECT_NE(json.find("\"torch_dtype\": \"bfloat16\""), std::string::npos);
  EXPECT_NE(json.find("\"dtype\": \"bfloat16\""), std::string::npos);
  // A 4.x reader sees rope_scaling only: drop rope_parameters and the rope
  // must still come out the same.
  size_t pos = json.find("\"rope_parameters\"");
  size_t end = json.find('}', pos);
  std::string only4x = json;
  only4x.erase(pos, end + 2 - pos);
  ModelConfig from4x = MustParse(only4x);
  EXPECT_TRUE(SameConfig(c, from4x)) << only4x;
  EXPECT_NE(ModelConfigToJson(MustParse(kGranite)).find("GraniteForCausalLM"), std::string::npos);
  EXPECT_NE(ModelConfigToJson(MustParse(kMistral)).find("MistralForCausalLM"), std::string::npos);
  EXPECT_NE(ModelConfigToJson(MustParse(kQwen2)).find("Qwen2ForCausalLM"), std::string::npos);
}

TEST(ModelConfigTest, LoadFromFolder) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/model_config_test_", ::getpid());
  ASSERT_TRUE(MakeDirs(dir).ok());
  absl::StatusOr<ModelConfig> missing = LoadModelConfig(dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("config.json"), std::string::npos);
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "config.json"), kMistral).ok());
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "mistral");
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "config.json"), "{\"model_type\": \"gpt2\"}").ok());
  c = LoadModelConfig(dir);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(JoinPath(dir, "config.json")), std::string::npos);
  std::remove(JoinPath(dir, "config.json").c_str());
}

}  // namespace
}  // namespace foak

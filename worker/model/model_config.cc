// config.json <-> ModelConfig.
//
// Why so strict: a config that parses "close enough" trains a different model
// than the one transformers would build from the same file, and the mismatch
// only shows up as a bad loss hours later. So every field we read is checked for
// type and range, defaults follow transformers' per-family config classes, and
// anything we cannot reproduce exactly (other rope types, other activations,
// mixed sliding/full attention layers) is rejected with a message that names
// the field, the value found and what is supported.
//
// Family rules mirrored from transformers:
//  - mistral: sliding_window defaults to 4096 when the key is absent; null = none.
//    Attention and MLP have no bias (attention_bias / mlp_bias are ignored).
//  - qwen2: q/k/v always have bias, o_proj and MLP never (the flags are ignored).
//    The window applies to layer i when use_sliding_window and
//    i >= max_window_layers (or per "layer_types" in 5.x files); we support
//    "all layers" or "no layer", not a mix.
//  - granite: the four multipliers default to 1.0 (attention_multiplier too: the
//    attention scale IS the multiplier, not 1/sqrt(head_dim)).
//  - rope: 4.x top-level rope_theta + rope_scaling, or 5.x rope_parameters (which
//    wins when both are present; its rope_theta falls back to the top level).
#include "worker/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr const char* kSupportedTypes = "llama, mistral, qwen2, granite";
constexpr const char* kSupportedRopeTypes = "default, linear, llama3";

// Reads typed fields of one JSON object; every error names `source` and the
// field path (e.g. "rope_scaling.factor").
class FieldReader {
 public:
  FieldReader(const Json& obj, std::string source, std::string prefix = "")
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  // nullptr when absent or null.
  const Json* Get(const std::string& key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool Has(const std::string& key) const { return obj_.contains(key); }

  absl::Status Error(const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field '", prefix_, key, "' ", what));
  }
  absl::Status ValueError(const std::string& key, const Json& v, const std::string& expected) const {
    return Error(key, absl::StrCat("= ", v.dump(), " must be ", expected));
  }

  absl::StatusOr<int64_t> RequiredPositiveInt(const std::string& key) const {
    const Json* v = Get(key);
    if (v == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(source_, ": missing required field '",
                                                     prefix_, key, "' (a positive integer)"));
    }
    return PositiveInt(key, *v);
  }
  absl::StatusOr<int64_t> OptionalPositiveInt(const std::string& key, int64_t def) const {
    const Json* v = Get(key);
    if (v == nullptr) return def;
    return PositiveInt(key, *v);
  }
  absl::StatusOr<int64_t> PositiveInt(const std::string& key, const Json& v) const {
    if (!v.is_number_integer() || v.get<int64_t>() <= 0) {
      return ValueError(key, v, "a positive integer");
    }
    return v.get<int64_t>();
  }
  absl::StatusOr<int64_t> NonNegativeInt(const std::string& key, int64_t def) const {
    const Json* v = Get(key);
    if (v == nullptr) return def;
    if (!v->is_number_integer() || v->get<int64_t>() < 0) {
      return ValueError(key, *v, "a non-negative integer");
    }
    return v->get<int64_t>();
  }
  absl::StatusOr<double> PositiveNumber(const std::string& key, double def) const {
    const Json* v = Get(key);
    if (v == nullptr) return def;
    if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>())) {
      return ValueError(key, *v, "a positive number");
    }
    return v->get<double>();
  }
  absl::StatusOr<double> RequiredPositiveNumber(const std::string& key) const {
    if (Get(key) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(source_, ": missing required field '",
                                                     prefix_, key, "' (a positive number)"));
    }
    return PositiveNumber(key, 0.0);
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool def) const {
    const Json* v = Get(key);
    if (v == nullptr) return def;
    if (!v->is_boolean()) return ValueError(key, *v, "true or false");
    return v->get<bool>();
  }
  absl::StatusOr<std::string> String(const std::string& key, std::string def) const {
    const Json* v = Get(key);
    if (v == nullptr) return def;
    if (!v->is_string()) return ValueError(key, *v, "a string");
    return v->get<std::string>();
  }
  // A token id: an integer, null, or (Llama-3 eos) a list whose first entry is used.
  absl::StatusOr<std::optional<int64_t>> TokenId(const std::string& key) const {
    const Json* v = Get(key);
    if (v == nullptr) return std::optional<int64_t>();
    const Json* first = v;
    if (v->is_array()) {
      if (v->empty()) return std::optional<int64_t>();
      first = &(*v)[0];
    }
    if (!first->is_number_integer()) {
      return ValueError(key, *v, "an integer token id, a list of them, or null");
    }
    return std::optional<int64_t>(first->get<int64_t>());
  }

 private:
  const Json& obj_;
  std::string source_;
  std::string prefix_;
};

// Parses a rope_scaling / rope_parameters object into `rope` (and rope_theta
// when the object carries it).
absl::Status ParseRopeObject(const Json& obj, const std::string& source,
                             const std::string& field, RopeScaling* rope, double* rope_theta) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": field '", field, "' = ", obj.dump(),
                                                   " must be an object or null"));
  }
  FieldReader r(obj, source, field + ".");
  std::string type_key = r.Get("rope_type") != nullptr ? "rope_type" : "type";
  ASSIGN_OR_RETURN(std::string type, r.String(type_key, "default"));
  if (type != "default" && type != "linear" && type != "llama3") {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field '", field, ".", type_key, "' = '", type,
                     "' is not supported; supported: ", kSupportedRopeTypes));
  }
  ASSIGN_OR_RETURN(*rope_theta, r.PositiveNumber("rope_theta", *rope_theta));
  RopeScaling out;
  out.rope_type = type;
  if (type == "linear") {
    ASSIGN_OR_RETURN(out.factor, r.RequiredPositiveNumber("factor"));
  } else if (type == "llama3") {
    // transformers requires all four keys for llama3.
    ASSIGN_OR_RETURN(out.factor, r.RequiredPositiveNumber("factor"));
    ASSIGN_OR_RETURN(out.low_freq_factor, r.RequiredPositiveNumber("low_freq_factor"));
    ASSIGN_OR_RETURN(out.high_freq_factor, r.RequiredPositiveNumber("high_freq_factor"));
    if (r.Get("original_max_position_embeddings") == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": missing required field '", field,
                       ".original_max_position_embeddings' (a positive integer) for llama3 rope"));
    }
    ASSIGN_OR_RETURN(out.original_max_position_embeddings,
                     r.OptionalPositiveInt("original_max_position_embeddings", 0));
    if (!(out.high_freq_factor > out.low_freq_factor)) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": field '", field, ".high_freq_factor' = ", out.high_freq_factor,
          " must be greater than low_freq_factor = ", out.low_freq_factor));
    }
  }
  *rope = out;
  return absl::OkStatus();
}

absl::Status ParseRope(const FieldReader& r, const std::string& source,
                       ModelConfig* c) {
  ASSIGN_OR_RETURN(c->rope_theta, r.PositiveNumber("rope_theta", 10000.0));
  if (const Json* params = r.Get("rope_parameters")) {
    return ParseRopeObject(*params, source, "rope_parameters", &c->rope_scaling, &c->rope_theta);
  }
  if (const Json* scaling = r.Get("rope_scaling")) {
    return ParseRopeObject(*scaling, source, "rope_scaling", &c->rope_scaling, &c->rope_theta);
  }
  c->rope_scaling = RopeScaling();
  return absl::OkStatus();
}

// Qwen2's window: which layers slide is decided by layer_types (5.x) or by
// use_sliding_window + max_window_layers (4.x); we model all-or-nothing.
absl::Status ParseQwen2Window(const FieldReader& r, const std::string& source, ModelConfig* c) {
  ASSIGN_OR_RETURN(bool use, r.Bool("use_sliding_window", false));
  c->sliding_window.reset();
  if (!use) return absl::OkStatus();
  const Json* window = r.Get("sliding_window");
  int64_t size = 4096;  // Qwen2Config default
  if (window != nullptr) {
    ASSIGN_OR_RETURN(size, r.PositiveInt("sliding_window", *window));
  } else if (r.Has("sliding_window")) {
    return absl::OkStatus();  // explicit null: no window anywhere
  }
  int64_t sliding_layers = 0;
  if (const Json* types = r.Get("layer_types")) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != c->num_hidden_layers) {
      return r.ValueError("layer_types", *types,
                          absl::StrCat("a list of ", c->num_hidden_layers,
                                       " \"full_attention\"/\"sliding_attention\" entries"));
    }
    for (const Json& t : *types) {
      if (t == "sliding_attention") {
        ++sliding_layers;
      } else if (t != "full_attention") {
        return r.ValueError("layer_types", *types,
                            "a list of \"full_attention\"/\"sliding_attention\" entries");
      }
    }
  } else {
    ASSIGN_OR_RETURN(int64_t max_window_layers, r.NonNegativeInt("max_window_layers", 28));
    sliding_layers = std::max<int64_t>(0, c->num_hidden_layers - max_window_layers);
  }
  if (sliding_layers == 0) return absl::OkStatus();
  if (sliding_layers != c->num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": qwen2 with a sliding window on ", sliding_layers, " of ",
        c->num_hidden_layers,
        " layers (use_sliding_window with max_window_layers/layer_types) is not supported; "
        "set max_window_layers to 0 (all layers) or use_sliding_window to false"));
  }
  c->sliding_window = size;
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseDtype(const FieldReader& r) {
  std::string key = r.Get("dtype") != nullptr ? "dtype" : "torch_dtype";
  ASSIGN_OR_RETURN(std::string dtype, r.String(key, "float32"));
  std::string_view d = dtype;
  if (d.substr(0, 6) == "torch.") d.remove_prefix(6);
  if (d == "float32" || d == "float") return std::string("float32");
  if (d == "float16" || d == "half") return std::string("float16");
  if (d == "bfloat16") return std::string("bfloat16");
  return r.Error(key, absl::StrCat("= '", dtype,
                                   "' is not supported; supported: float32, bfloat16, float16"));
}

const char* Architecture(const std::string& model_type) {
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "granite") return "GraniteForCausalLM";
  return "LlamaForCausalLM";
}

OrderedJson OptionalId(const std::optional<int64_t>& id) {
  return id.has_value() ? OrderedJson(*id) : OrderedJson(nullptr);
}

}  // namespace

double ModelConfig::AttentionScale() const {
  if (attention_multiplier != 0.0) return attention_multiplier;
  return 1.0 / std::sqrt(static_cast<double>(head_dim));
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON at byte ", e.byte,
                                                   ": ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a JSON object, found ", root.type_name()));
  }
  FieldReader r(root, source);
  ModelConfig c;
  const Json* type = r.Get("model_type");
  if (type == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": missing required field 'model_type' (one of ", kSupportedTypes, ")"));
  }
  if (!type->is_string()) return r.ValueError("model_type", *type, "a string");
  c.model_type = type->get<std::string>();
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2" &&
      c.model_type != "granite") {
    return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported model_type '",
                                                   c.model_type, "'; supported: ",
                                                   kSupportedTypes));
  }
  const bool llama_like = c.model_type == "llama" || c.model_type == "granite";

  ASSIGN_OR_RETURN(c.vocab_size, r.RequiredPositiveInt("vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, r.RequiredPositiveInt("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, r.RequiredPositiveInt("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, r.RequiredPositiveInt("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads, r.RequiredPositiveInt("num_attention_heads"));
  ASSIGN_OR_RETURN(c.num_key_value_heads,
                   r.OptionalPositiveInt("num_key_value_heads", c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": field 'num_key_value_heads' = ", c.num_key_value_heads,
        " must divide num_attention_heads = ", c.num_attention_heads));
  }
  if (r.Get("head_dim") != nullptr) {
    ASSIGN_OR_RETURN(c.head_dim, r.OptionalPositiveInt("head_dim", 0));
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": field 'hidden_size' = ", c.hidden_size,
          " must be divisible by num_attention_heads = ", c.num_attention_heads,
          " (or give head_dim explicitly)"));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": field 'head_dim' = ", c.head_dim, " must be even (rotary embeddings)"));
  }
  int64_t default_max_pos = 2048;
  if (c.model_type == "mistral") default_max_pos = 4096 * 32;
  if (c.model_type == "qwen2") default_max_pos = 32768;
  ASSIGN_OR_RETURN(c.max_position_embeddings,
                   r.OptionalPositiveInt("max_position_embeddings", default_max_pos));
  ASSIGN_OR_RETURN(c.rms_norm_eps, r.PositiveNumber("rms_norm_eps", 1e-6));
  RETURN_IF_ERROR(ParseRope(r, source, &c));

  ASSIGN_OR_RETURN(std::string act, r.String("hidden_act", "silu"));
  if (act != "silu") {
    return r.Error("hidden_act", absl::StrCat("= '", act, "' is not supported; expected 'silu'"));
  }
  if (llama_like) {
    ASSIGN_OR_RETURN(c.attention_bias, r.Bool("attention_bias", false));
    ASSIGN_OR_RETURN(c.mlp_bias, r.Bool("mlp_bias", false));
  }
  ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool("tie_word_embeddings", false));
  if (c.model_type == "mistral") {
    if (r.Has("sliding_window")) {
      if (const Json* w = r.Get("sliding_window")) {
        ASSIGN_OR_RETURN(int64_t window, r.PositiveInt("sliding_window", *w));
        c.sliding_window = window;
      }
    } else {
      c.sliding_window = 4096;  // MistralConfig default
    }
  } else if (c.model_type == "qwen2") {
    RETURN_IF_ERROR(ParseQwen2Window(r, source, &c));
  }
  ASSIGN_OR_RETURN(c.initializer_range, r.PositiveNumber("initializer_range", 0.02));
  if (c.model_type == "granite") {
    ASSIGN_OR_RETURN(c.embedding_multiplier, r.PositiveNumber("embedding_multiplier", 1.0));
    ASSIGN_OR_RETURN(c.residual_multiplier, r.PositiveNumber("residual_multiplier", 1.0));
    ASSIGN_OR_RETURN(c.attention_multiplier, r.PositiveNumber("attention_multiplier", 1.0));
    ASSIGN_OR_RETURN(c.logits_scaling, r.PositiveNumber("logits_scaling", 1.0));
  }
  ASSIGN_OR_RETURN(c.torch_dtype, ParseDtype(r));
  ASSIGN_OR_RETURN(c.bos_token_id, r.TokenId("bos_token_id"));
  ASSIGN_OR_RETURN(c.eos_token_id, r.TokenId("eos_token_id"));
  ASSIGN_OR_RETURN(c.pad_token_id, r.TokenId("pad_token_id"));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  std::string path = JoinPath(model_dir, "config.json");
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseModelConfig(text, path);
}

std::string ModelConfigToJson(const ModelConfig& c) {
  OrderedJson j;
  j["architectures"] = {Architecture(c.model_type)};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["initializer_range"] = c.initializer_range;

  // Rope, twice: 4.x reads rope_theta + rope_scaling, 5.x reads rope_parameters.
  const RopeScaling& rs = c.rope_scaling;
  OrderedJson scaling = nullptr;
  OrderedJson params;
  params["rope_type"] = rs.rope_type;
  params["rope_theta"] = c.rope_theta;
  if (rs.rope_type != "default") {
    scaling["rope_type"] = rs.rope_type;
    scaling["factor"] = rs.factor;
    params["factor"] = rs.factor;
    if (rs.rope_type == "llama3") {
      for (OrderedJson* o : {&scaling, &params}) {
        (*o)["low_freq_factor"] = rs.low_freq_factor;
        (*o)["high_freq_factor"] = rs.high_freq_factor;
        (*o)["original_max_position_embeddings"] = rs.original_max_position_embeddings;
      }
    }
  }
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = scaling;
  j["rope_parameters"] = params;

  j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type == "mistral") {
    j["sliding_window"] = OptionalId(c.sliding_window);
  } else if (c.model_type == "qwen2") {
    const bool slide = c.sliding_window.has_value();
    j["use_sliding_window"] = slide;
    j["sliding_window"] = OptionalId(c.sliding_window);
    j["max_window_layers"] = slide ? 0 : c.num_hidden_layers;
    OrderedJson types = OrderedJson::array();
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      types.push_back(slide ? "sliding_attention" : "full_attention");
    }
    j["layer_types"] = types;
  }
  if (c.model_type == "granite") {
    j["embedding_multiplier"] = c.embedding_multiplier;
    j["residual_multiplier"] = c.residual_multiplier;
    j["attention_multiplier"] = c.AttentionScale();
    j["logits_scaling"] = c.logits_scaling;
  }
  j["torch_dtype"] = c.torch_dtype;
  j["dtype"] = c.torch_dtype;
  j["bos_token_id"] = OptionalId(c.bos_token_id);
  j["eos_token_id"] = OptionalId(c.eos_token_id);
  j["pad_token_id"] = OptionalId(c.pad_token_id);
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

}  // namespace foak

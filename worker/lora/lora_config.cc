// LoraConfig validation and PEFT's adapter_config.json (see lora_config.h).
//
// Which keys foak writes: the ones PEFT's LoraConfig has had since 0.10
// (the release that added use_dora and layer_replication), each at the value
// PEFT 0.21 writes for plain LoRA. Newer PEFT keys (kasa_config, lora_bias,
// target_parameters, ...) are left out on purpose: PEFT fills absent keys
// with their defaults, while PEFT releases before 0.14 raise TypeError on a
// key they do not know, so writing them would only narrow which PEFT loads
// the adapter. tests/unit/lora_config_test.cc checks the written keys against
// the adapter_config.json that PEFT 0.21 itself wrote.
#include "worker/lora/lora_config.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace foak {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

std::string ValidNames() {
  return absl::StrCat(absl::StrJoin(LoraTargetModuleNames(), ", "), " or \"", kLoraAllLinear,
                      "\" (all seven)");
}

// True when `value` is absent-equivalent: null, false, empty list/object/string.
bool IsOff(const Json& value) {
  if (value.is_null()) return true;
  if (value.is_boolean()) return !value.get<bool>();
  if (value.is_array() || value.is_object() || value.is_string()) return value.empty();
  return false;
}

}  // namespace

const std::vector<std::string>& LoraTargetModuleNames() {
  static const std::vector<std::string>* const kNames = new std::vector<std::string>{
      "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return *kNames;
}

double LoraConfig::Scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

absl::Status ValidateLoraConfig(const LoraConfig& config) {
  if (config.r < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.r is ", config.r, ": the LoRA rank must be an integer >= 1 (e.g. 8 or 16)"));
  }
  if (!std::isfinite(config.alpha) || config.alpha <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.alpha is ", config.alpha, ": it must be a positive number (often 2 * r)"));
  }
  if (!(config.dropout >= 0.0 && config.dropout < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.dropout is ", config.dropout, ": it must be in [0, 1)"));
  }
  if (config.target_modules.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.target_modules is empty: name at least one of ", ValidNames()));
  }
  const std::vector<std::string>& valid = LoraTargetModuleNames();
  std::set<std::string> seen;
  for (const std::string& name : config.target_modules) {
    if (name == kLoraAllLinear) {
      if (config.target_modules.size() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "lora.target_modules mixes \"", kLoraAllLinear, "\" with other names (",
            absl::StrJoin(config.target_modules, ", "), "): use \"", kLoraAllLinear,
            "\" alone or list the modules"));
      }
      continue;
    }
    if (name == "lm_head") {
      return absl::InvalidArgumentError(
          "lora.target_modules names lm_head: foak (like PEFT's all-linear) never adapts the "
          "output layer; valid names are " + ValidNames());
    }
    if (std::find(valid.begin(), valid.end(), name) == valid.end()) {
      return absl::InvalidArgumentError(absl::StrCat("lora.target_modules has unknown module \"",
                                                     name, "\"; valid names are ", ValidNames()));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora.target_modules lists \"", name, "\" twice"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ResolveLoraTargets(const LoraConfig& config) {
  RETURN_IF_ERROR(ValidateLoraConfig(config));
  if (config.target_modules.front() == kLoraAllLinear) return LoraTargetModuleNames();
  std::vector<std::string> targets;
  for (const std::string& name : LoraTargetModuleNames()) {
    if (std::find(config.target_modules.begin(), config.target_modules.end(), name) !=
        config.target_modules.end()) {
      targets.push_back(name);
    }
  }
  return targets;
}

absl::StatusOr<std::string> LoraAdapterConfigJson(const LoraConfig& config,
                                                  const std::string& base_model_name_or_path) {
  ASSIGN_OR_RETURN(std::vector<std::string> targets, ResolveLoraTargets(config));
  OrderedJson j;
  j["alpha_pattern"] = Json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = base_model_name_or_path;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["loftq_config"] = Json::object();
  // PEFT types lora_alpha as int; write an int when it is one.
  if (config.alpha == std::floor(config.alpha) && std::fabs(config.alpha) < 1e15) {
    j["lora_alpha"] = static_cast<int64_t>(config.alpha);
  } else {
    j["lora_alpha"] = config.alpha;
  }
  j["lora_dropout"] = config.dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = config.r;
  j["rank_pattern"] = Json::object();
  j["revision"] = nullptr;
  j["target_modules"] = targets;
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = config.use_rslora;
  return j.dump(2) + "\n";
}

absl::StatusOr<LoraConfig> ParseLoraAdapterConfig(const std::string& json,
                                                  const std::string& source) {
  Json j = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  auto bad = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": \"", key, "\" is ", j.contains(key) ? j[key].dump() : "missing",
                     ": ", why));
  };
  if (!j.contains("peft_type") || j["peft_type"] != "LORA") {
    return bad("peft_type", "foak loads LoRA adapters only (\"LORA\")");
  }
  if (j.contains("task_type") && !j["task_type"].is_null() && j["task_type"] != "CAUSAL_LM") {
    return bad("task_type", "foak adapts causal language models (\"CAUSAL_LM\")");
  }
  if (j.contains("bias") && j["bias"] != "none") {
    return bad("bias", "foak trains no biases with LoRA (\"none\")");
  }
  // Features foak does not implement; each must be absent or off.
  for (const char* key :
       {"use_dora", "fan_in_fan_out", "lora_bias", "rank_pattern", "alpha_pattern",
        "layers_to_transform", "layer_replication", "modules_to_save", "trainable_token_indices",
        "target_parameters", "exclude_modules", "use_qalora", "alora_invocation_tokens",
        "use_bdlora"}) {
    if (j.contains(key) && !IsOff(j[key])) {
      return bad(key, "foak implements plain LoRA only; this option must be null, false or empty");
    }
  }

  LoraConfig config;
  if (!j.contains("r") || !j["r"].is_number_integer()) {
    return bad("r", "the rank must be an integer >= 1");
  }
  config.r = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number()) {
    return bad("lora_alpha", "must be a positive number");
  }
  config.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && !j["lora_dropout"].is_null()) {
    if (!j["lora_dropout"].is_number()) return bad("lora_dropout", "must be a number in [0, 1)");
    config.dropout = j["lora_dropout"].get<double>();
  }
  if (j.contains("use_rslora") && !j["use_rslora"].is_null()) {
    if (!j["use_rslora"].is_boolean()) return bad("use_rslora", "must be true or false");
    config.use_rslora = j["use_rslora"].get<bool>();
  }
  const Json& targets = j.contains("target_modules") ? j["target_modules"] : Json();
  config.target_modules.clear();
  if (targets.is_string()) {
    if (targets != kLoraAllLinear) {
      return bad("target_modules", absl::StrCat("a string is a regular expression in PEFT, which "
                                                "foak does not support; list module names (",
                                                ValidNames(), ")"));
    }
    config.target_modules.push_back(kLoraAllLinear);
  } else if (targets.is_array()) {
    for (const Json& t : targets) {
      if (!t.is_string()) return bad("target_modules", "must be a list of module names");
      config.target_modules.push_back(t.get<std::string>());
    }
  } else {
    return bad("target_modules", absl::StrCat("must be a list of ", ValidNames()));
  }
  absl::Status valid = ValidateLoraConfig(config);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", valid.message()));
  }
  return config;
}

}  // namespace foak

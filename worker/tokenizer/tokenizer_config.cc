#include "worker/tokenizer/tokenizer_config.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace foak {
namespace {

absl::StatusOr<nlohmann::json> ReadJsonIfExists(const std::string& path) {
  if (!PathExists(path)) return nlohmann::json();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return j;
}

// The token string of a "<name>_token" field: absent -> nullopt (unset), null
// -> "" (explicitly none), string or {"content": ...} -> the string.
absl::StatusOr<std::optional<std::string>> TokenField(const nlohmann::json& j,
                                                      const std::string& key,
                                                      const std::string& file) {
  if (!j.is_object()) return std::optional<std::string>();
  auto it = j.find(key);
  if (it == j.end()) return std::optional<std::string>();
  if (it->is_null()) return std::optional<std::string>("");
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return std::optional<std::string>((*it)["content"].get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      file, ": \"", key, "\" must be a token string, an AddedToken object with \"content\", or null"));
}

}  // namespace

absl::Status ApplyTokenizerConfig(const std::string& model_dir, Tokenizer* tokenizer) {
  const std::string config_path = JoinPath(model_dir, "tokenizer_config.json");
  const std::string map_path = JoinPath(model_dir, "special_tokens_map.json");
  ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonIfExists(config_path));
  ASSIGN_OR_RETURN(nlohmann::json map, ReadJsonIfExists(map_path));
  SpecialTokens special = tokenizer->special();

  struct Field {
    const char* key;
    std::optional<int64_t>* id;
  };
  for (const Field& f : {Field{"bos_token", &special.bos_id}, Field{"eos_token", &special.eos_id},
                         Field{"pad_token", &special.pad_id}, Field{"unk_token", &special.unk_id}}) {
    ASSIGN_OR_RETURN(auto token, TokenField(config, f.key, config_path));
    std::string from = config_path;
    if (!token.has_value()) {
      ASSIGN_OR_RETURN(token, TokenField(map, f.key, map_path));
      from = map_path;
    }
    if (!token.has_value()) continue;
    if (token->empty()) {
      f.id->reset();
      continue;
    }
    std::optional<int64_t> id = tokenizer->TokenToId(*token);
    if (!id.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          from, ": \"", f.key, "\" is \"", *token,
          "\", which is neither in the vocabulary nor an added token of this tokenizer"));
    }
    *f.id = id;
  }
  for (const auto& [key, flag] : {std::pair<const char*, bool*>{"add_bos_token", &special.add_bos},
                                  std::pair<const char*, bool*>{"add_eos_token", &special.add_eos}}) {
    auto it = config.is_object() ? config.find(key) : config.end();
    if (!config.is_object() || it == config.end() || it->is_null()) continue;
    if (!it->is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": \"", key, "\" must be true or false"));
    }
    *flag = it->get<bool>();
  }
  if (special.add_bos && !special.bos_id.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": add_bos_token is true but no bos_token is defined; set \"bos_token\""));
  }
  if (special.add_eos && !special.eos_id.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": add_eos_token is true but no eos_token is defined; set \"eos_token\""));
  }
  tokenizer->set_special(special);

  std::string chat_template;
  auto ct = config.is_object() ? config.find("chat_template") : config.end();
  if (config.is_object() && ct != config.end() && !ct->is_null()) {
    if (ct->is_string()) {
      chat_template = ct->get<std::string>();
    } else if (ct->is_array()) {
      for (const auto& entry : *ct) {
        if (entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
            entry["name"].get<std::string>() == "default" && entry.contains("template") &&
            entry["template"].is_string()) {
          chat_template = entry["template"].get<std::string>();
        }
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path, ": \"chat_template\" must be a string or a list of {name, template}"));
    }
  } else if (PathExists(JoinPath(model_dir, "chat_template.jinja"))) {
    ASSIGN_OR_RETURN(chat_template, ReadFileToString(JoinPath(model_dir, "chat_template.jinja")));
  }
  tokenizer->set_chat_template(std::move(chat_template));
  return absl::OkStatus();
}

}  // namespace foak

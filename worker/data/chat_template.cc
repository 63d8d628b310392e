#include "worker/data/chat_template.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace foak {
namespace {

std::string Trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string::npos) return "";
  const size_t end = s.find_last_not_of(ws);
  return s.substr(begin, end - begin + 1);
}

RoleFormat Same(const std::string& role, const std::string& before, const std::string& after,
                const std::string& suffix) {
  return RoleFormat{before + role + after, suffix};
}

ChatTemplate HeaderTemplate(std::string name, const std::string& before, const std::string& after,
                            const std::string& suffix) {
  ChatTemplate t;
  t.name = std::move(name);
  t.system = Same("system", before, after, suffix);
  t.user = Same("user", before, after, suffix);
  t.assistant = Same("assistant", before, after, suffix);
  return t;
}

}  // namespace

std::vector<Segment> ChatTemplate::Render(const std::vector<Message>& messages) const {
  std::vector<Segment> out;
  auto prompt = [&out](const std::string& text) {
    if (!text.empty()) out.push_back(Segment::Text(text, false, true));
  };
  auto content = [&out, this](const std::string& text, bool trained) {
    std::string c = trim_content ? Trim(text) : text;
    if (!c.empty()) out.push_back(Segment::Text(std::move(c), trained, false));
  };
  if (bos) out.push_back(Segment::Token(Segment::kBos, false));
  std::optional<std::string> pending_system;  // system_in_first_user: waits for the user turn
  const bool has_system = !messages.empty() && messages[0].role == Role::kSystem;
  auto render_system = [&](const std::string& text) {
    prompt(system.prefix);
    content(text, false);
    prompt(system.suffix);
  };
  if (!has_system && !default_system.empty()) {
    if (system_in_first_user) {
      pending_system = default_system;
    } else {
      render_system(default_system);
    }
  }
  for (const Message& m : messages) {
    switch (m.role) {
      case Role::kSystem:
        if (system_in_first_user) {
          pending_system = m.content;
        } else {
          render_system(m.content);
        }
        break;
      case Role::kUser:
        prompt(user.prefix);
        if (pending_system.has_value()) {
          render_system(*pending_system);
          pending_system.reset();
        }
        content(m.content, false);
        prompt(user.suffix);
        break;
      case Role::kAssistant:
        if (pending_system.has_value()) {  // a system message with no user turn after it
          render_system(*pending_system);
          pending_system.reset();
        }
        prompt(assistant.prefix);
        content(m.content, true);
        if (!assistant.suffix.empty()) out.push_back(Segment::Text(assistant.suffix, true, true));
        if (eos_after_assistant) out.push_back(Segment::Token(Segment::kEos, true));
        break;
    }
  }
  return out;
}

std::vector<Segment> ChatTemplate::RenderGenerationPrompt(
    const std::vector<Message>& messages) const {
  std::vector<Segment> out = Render(messages);
  if (!Trim(assistant.prefix).empty()) {
    out.push_back(Segment::Text(assistant.prefix, false, true));
  }
  for (Segment& s : out) s.trained = false;
  return out;
}

absl::StatusOr<ChatTemplate> BuiltinChatTemplate(std::string_view name) {
  if (name == "llama3") {
    ChatTemplate t =
        HeaderTemplate("llama3", "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>");
    t.bos = true;
    t.trim_content = true;
    return t;
  }
  if (name == "llama2") {
    ChatTemplate t;
    t.name = "llama2";
    t.system = {"<<SYS>>\n", "\n<</SYS>>\n\n"};
    t.user = {"<s>[INST] ", " [/INST]"};
    t.assistant = {" ", " </s>"};
    t.system_in_first_user = true;
    t.trim_content = true;
    return t;
  }
  if (name == "mistral") {
    ChatTemplate t;
    t.name = "mistral";
    t.system = {"", "\n\n"};
    t.user = {"[INST] ", " [/INST]"};
    t.assistant = {"", "</s>"};
    t.bos = true;
    t.system_in_first_user = true;
    return t;
  }
  if (name == "chatml" || name == "qwen2") {
    ChatTemplate t = HeaderTemplate(std::string(name), "<|im_start|>", "\n", "<|im_end|>\n");
    if (name == "qwen2") t.default_system = "You are a helpful assistant.";
    return t;
  }
  if (name == "granite") {
    return HeaderTemplate("granite", "<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>\n");
  }
  if (name == "plain") {
    ChatTemplate t;
    t.name = "plain";
    t.system = {"### System:\n", "\n\n"};
    t.user = {"### User:\n", "\n\n"};
    t.assistant = {"### Assistant:\n", ""};
    t.bos = true;
    t.eos_after_assistant = true;
    return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("chat_template = '", std::string(name),
                   "'; expected one of llama3, llama2, mistral, chatml, qwen2, granite, plain, "
                   "or an object with per-role prefix/suffix"));
}

absl::StatusOr<ChatTemplate> DefaultChatTemplate(std::string_view model_type, bool byte_tokenizer) {
  if (byte_tokenizer) return BuiltinChatTemplate("plain");
  if (model_type == "llama") return BuiltinChatTemplate("llama3");
  if (model_type == "mistral" || model_type == "qwen2" || model_type == "granite") {
    return BuiltinChatTemplate(model_type);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "no default chat template for model_type '", std::string(model_type),
      "'; set dataset.chat_template to one of llama3, llama2, mistral, chatml, qwen2, granite, "
      "plain or a custom {\"user\": {\"prefix\", \"suffix\"}, ...} object"));
}

absl::StatusOr<ChatTemplate> ParseChatTemplate(const nlohmann::json& json,
                                               const std::string& where) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     " must be a template name or an object like {\"user\": {\"prefix\": \"...\", "
                     "\"suffix\": \"...\"}, ...}, got ",
                     json.type_name()));
  }
  ChatTemplate t;
  t.name = "custom";
  auto role = [&](const nlohmann::json& v, const std::string& key,
                  RoleFormat* out) -> absl::Status {
    if (!v.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".", key, " must be an object like {\"prefix\": \"...\", \"suffix\": \"...\"}"));
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::string* field = it.key() == "prefix"   ? &out->prefix
                           : it.key() == "suffix" ? &out->suffix
                                                  : nullptr;
      if (field == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".", key, ": unknown key '", it.key(),
                                                       "'; expected prefix, suffix"));
      }
      if (!it->is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".", key, ".", it.key(),
                                                       " must be a string, got ", it->type_name()));
      }
      *field = it->get<std::string>();
    }
    return absl::OkStatus();
  };
  auto flag = [&](const nlohmann::json& v, const std::string& key, bool* out) -> absl::Status {
    if (!v.is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".", key, " must be true or false, got ", v.type_name()));
    }
    *out = v.get<bool>();
    return absl::OkStatus();
  };
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& key = it.key();
    if (key == "system") {
      RETURN_IF_ERROR(role(*it, key, &t.system));
    } else if (key == "user") {
      RETURN_IF_ERROR(role(*it, key, &t.user));
    } else if (key == "assistant") {
      RETURN_IF_ERROR(role(*it, key, &t.assistant));
    } else if (key == "bos") {
      RETURN_IF_ERROR(flag(*it, key, &t.bos));
    } else if (key == "eos") {
      RETURN_IF_ERROR(flag(*it, key, &t.eos_after_assistant));
    } else if (key == "system_in_first_user") {
      RETURN_IF_ERROR(flag(*it, key, &t.system_in_first_user));
    } else if (key == "trim") {
      RETURN_IF_ERROR(flag(*it, key, &t.trim_content));
    } else if (key == "default_system") {
      if (!it->is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".default_system must be a string, got ", it->type_name()));
      }
      t.default_system = it->get<std::string>();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown key '", key,
                       "'; expected system, user, assistant, bos, eos, system_in_first_user, trim, "
                       "default_system"));
    }
  }
  return t;
}

}  // namespace foak

// See generate_prompts.h. The "messages" checks mirror worker/data/record.cc's
// for training chats, except that a prompt ends with the user turn the model
// is to answer instead of needing an assistant turn.
#include "worker/cli/generate_prompts.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kShapes[] =
    "{\"prompt\": \"...\"} or {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}";

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::Status ParseMessages(const Json& messages, const std::string& where, PromptSpec* spec) {
  if (!messages.is_array() || messages.empty()) {
    return Bad(where, absl::StrCat("\"messages\" must be a non-empty array of {\"role\", "
                                   "\"content\"} objects ending with a user message, got ",
                                   messages.is_array() ? "an empty array" : messages.type_name()));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string()) {
      return Bad(where, absl::StrCat(at,
                                     " must be an object like {\"role\": \"user\", "
                                     "\"content\": \"...\"} with string role and content"));
    }
    const std::string role = m["role"].get<std::string>();
    Message message;
    message.content = m["content"].get<std::string>();
    if (role == "system") {
      if (i != 0) {
        return Bad(where,
                   absl::StrCat(at, " is a system message; only the first message may be one"));
      }
      message.role = Role::kSystem;
    } else if (role == "user") {
      message.role = Role::kUser;
    } else if (role == "assistant") {
      message.role = Role::kAssistant;
    } else {
      return Bad(where,
                 absl::StrCat(at, ".role = '", role, "'; expected system, user or assistant"));
    }
    spec->messages.push_back(std::move(message));
  }
  if (spec->messages.back().role != Role::kUser) {
    return Bad(where, absl::StrCat("the last message is ", RoleName(spec->messages.back().role),
                                   "; a prompt must end with the user message to answer"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PromptSpec> ParsePromptLine(const std::string& line, const std::string& where) {
  if (std::optional<size_t> bad = FindInvalidUtf8(line); bad.has_value()) {
    return Bad(where, absl::StrCat("invalid UTF-8 at byte ", *bad, "; prompts must be UTF-8"));
  }
  Json value = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return Bad(where, absl::StrCat("invalid JSON; each line must be an object like ", kShapes));
  }
  if (!value.is_object()) {
    return Bad(where, absl::StrCat("a line must be a JSON object like ", kShapes, ", got ",
                                   value.type_name()));
  }
  PromptSpec spec;
  spec.where = where;
  if (value.contains("messages")) {
    spec.is_chat = true;
    spec.messages_json = value["messages"];
    RETURN_IF_ERROR(ParseMessages(spec.messages_json, where, &spec));
    return spec;
  }
  auto prompt = value.find("prompt");
  if (prompt == value.end()) {
    return Bad(where, absl::StrCat("no \"prompt\" or \"messages\" field; expected ", kShapes));
  }
  if (!prompt->is_string()) {
    return Bad(where, absl::StrCat("field \"prompt\" must be a string, got ", prompt->type_name()));
  }
  spec.text = prompt->get<std::string>();
  return spec;
}

absl::StatusOr<std::vector<PromptSpec>> ReadPromptsFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<PromptSpec> specs;
  int64_t line_number = 0;
  for (absl::string_view piece : absl::StrSplit(text, '\n')) {
    ++line_number;
    std::string line(piece);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    ASSIGN_OR_RETURN(PromptSpec spec, ParsePromptLine(line, absl::StrCat(path, ":", line_number)));
    specs.push_back(std::move(spec));
  }
  if (specs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no prompts; expected one JSON object per line like ", kShapes));
  }
  return specs;
}

}  // namespace foak

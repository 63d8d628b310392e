#include "worker/data/record.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace foak {
namespace {

using Json = nlohmann::json;

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, what));
}

std::string Keys(const Json& object) {
  std::vector<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
  return absl::StrCat("[", absl::StrJoin(keys, ", "), "]");
}

const char* ShapeOf(DataFormat format) {
  switch (format) {
    case DataFormat::kText:
      return "{\"text\": \"...\"}";
    case DataFormat::kAlpaca:
      return "{\"instruction\": \"...\", \"input\": \"...\" (optional), \"output\": \"...\"}";
    case DataFormat::kPromptCompletion:
      return "{\"prompt\": \"...\", \"completion\": \"...\"}";
    case DataFormat::kChat:
      return "{\"messages\": [{\"role\": \"user\", \"content\": \"...\"}, {\"role\": "
             "\"assistant\", \"content\": \"...\"}]}";
    case DataFormat::kAuto:
      break;
  }
  return "{\"text\": \"...\"} or {\"messages\": [...]}";
}

absl::StatusOr<Json> ParseObject(std::string_view line, const std::string& where,
                                 DataFormat format) {
  if (std::optional<size_t> bad = FindInvalidUtf8(line); bad.has_value()) {
    return Bad(where,
               absl::StrCat("invalid UTF-8 at byte ", *bad, "; a JSONL file must be UTF-8 text"));
  }
  Json value;
  try {
    value = Json::parse(line);
  } catch (const Json::exception& e) {
    return Bad(where, absl::StrCat("invalid JSON (", e.what(),
                                   "); each line must be an object like ", ShapeOf(format)));
  }
  if (!value.is_object()) {
    return Bad(where, absl::StrCat("expected a JSON object like ", ShapeOf(format), ", got ",
                                   value.type_name()));
  }
  return value;
}

// Reads object[key] as a string; absent is an error unless `optional`.
absl::Status GetString(const Json& object, const char* key, bool optional, DataFormat format,
                       const std::string& where, std::string* out) {
  auto it = object.find(key);
  if (it == object.end() || (optional && it->is_null())) {
    if (optional) return absl::OkStatus();
    return Bad(where, absl::StrCat("missing field \"", key, "\" (keys: ", Keys(object), "); ",
                                   DataFormatName(format), " lines look like ", ShapeOf(format)));
  }
  if (!it->is_string()) {
    return Bad(where, absl::StrCat("field \"", key, "\" must be a string, got ", it->type_name()));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status ParseMessages(const Json& object, const std::string& where, Record* record) {
  auto it = object.find("messages");
  if (it == object.end()) {
    return Bad(where, absl::StrCat("missing field \"messages\" (keys: ", Keys(object),
                                   "); chat lines look like ", ShapeOf(DataFormat::kChat)));
  }
  if (!it->is_array()) {
    return Bad(where, absl::StrCat("field \"messages\" must be an array of {\"role\", \"content\"} "
                                   "objects, got ",
                                   it->type_name()));
  }
  if (it->empty())
    return Bad(where,
               "\"messages\" is empty; a chat needs at least one user and one assistant message");
  bool has_assistant = false;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& m = (*it)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) {
      return Bad(where, absl::StrCat(at,
                                     " must be an object like {\"role\": \"user\", \"content\": "
                                     "\"...\"}, got ",
                                     m.type_name()));
    }
    auto role = m.find("role");
    auto content = m.find("content");
    if (role == m.end() || !role->is_string()) {
      return Bad(where, absl::StrCat(at, ".role must be a string: system, user or assistant"));
    }
    if (content == m.end() || !content->is_string()) {
      return Bad(where,
                 absl::StrCat(at, ".content must be a string",
                              content == m.end() ? " (missing)"
                                                 : ", got " + std::string(content->type_name())));
    }
    const std::string r = role->get<std::string>();
    Message message;
    if (r == "system") {
      message.role = Role::kSystem;
      if (i != 0) {
        return Bad(where,
                   absl::StrCat(at, " is a system message; only the first message may be one"));
      }
    } else if (r == "user") {
      message.role = Role::kUser;
    } else if (r == "assistant") {
      message.role = Role::kAssistant;
      has_assistant = true;
    } else {
      return Bad(where, absl::StrCat(at, ".role = '", r, "'; expected system, user or assistant"));
    }
    message.content = content->get<std::string>();
    record->messages.push_back(std::move(message));
  }
  if (!has_assistant) {
    return Bad(where,
               "no assistant message; a chat example needs at least one assistant turn to "
               "train on");
  }
  return absl::OkStatus();
}

}  // namespace

std::string DataFormatName(DataFormat format) {
  switch (format) {
    case DataFormat::kAuto:
      return "auto";
    case DataFormat::kText:
      return "text";
    case DataFormat::kAlpaca:
      return "alpaca";
    case DataFormat::kPromptCompletion:
      return "prompt_completion";
    case DataFormat::kChat:
      return "chat";
  }
  return "?";
}

absl::StatusOr<DataFormat> ParseDataFormat(std::string_view name) {
  for (DataFormat f : {DataFormat::kAuto, DataFormat::kText, DataFormat::kAlpaca,
                       DataFormat::kPromptCompletion, DataFormat::kChat}) {
    if (name == DataFormatName(f)) return f;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("format = '", std::string(name),
                   "'; expected one of auto, text, alpaca, prompt_completion, chat"));
}

std::string RoleName(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
  }
  return "?";
}

std::optional<size_t> FindInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;  // continuation byte or 0xF8..0xFF as a lead byte
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    const uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

absl::StatusOr<DataFormat> DetectFormat(std::string_view line, const std::string& where) {
  ASSIGN_OR_RETURN(Json value, ParseObject(line, where, DataFormat::kAuto));
  if (value.contains("messages")) return DataFormat::kChat;
  if (value.contains("instruction")) return DataFormat::kAlpaca;
  if (value.contains("prompt")) return DataFormat::kPromptCompletion;
  if (value.contains("text")) return DataFormat::kText;
  return Bad(where, absl::StrCat("cannot tell the format from keys ", Keys(value),
                                 "; expected \"text\", \"instruction\"+\"output\", "
                                 "\"prompt\"+\"completion\" or \"messages\""));
}

absl::StatusOr<Record> ParseRecord(std::string_view line, DataFormat format,
                                   const std::string& where) {
  if (format == DataFormat::kAuto) {
    return absl::InternalError("ParseRecord needs a concrete format; detect it first");
  }
  ASSIGN_OR_RETURN(Json value, ParseObject(line, where, format));
  Record record;
  record.format = format;
  switch (format) {
    case DataFormat::kText:
      RETURN_IF_ERROR(GetString(value, "text", false, format, where, &record.text));
      break;
    case DataFormat::kAlpaca:
      RETURN_IF_ERROR(GetString(value, "instruction", false, format, where, &record.instruction));
      RETURN_IF_ERROR(GetString(value, "input", true, format, where, &record.input));
      RETURN_IF_ERROR(GetString(value, "output", false, format, where, &record.output));
      break;
    case DataFormat::kPromptCompletion:
      RETURN_IF_ERROR(GetString(value, "prompt", false, format, where, &record.prompt));
      RETURN_IF_ERROR(GetString(value, "completion", false, format, where, &record.completion));
      break;
    case DataFormat::kChat:
      RETURN_IF_ERROR(ParseMessages(value, where, &record));
      break;
    case DataFormat::kAuto:
      break;
  }
  return record;
}

}  // namespace foak

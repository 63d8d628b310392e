// Record: one line of a JSONL training file, parsed and checked but not yet
// rendered or tokenized. Four shapes are accepted (dataset "format"):
//
//   text               {"text": "..."}
//   alpaca             {"instruction": "...", "input": "..." (optional), "output": "..."}
//   prompt_completion  {"prompt": "...", "completion": "..."}
//   chat               {"messages": [{"role": "system|user|assistant", "content": "..."}, ...]}
//
// "auto" takes the shape of the first valid line (messages > instruction >
// prompt > text when a line has several) and holds every later line to it, so
// a file that mixes shapes fails on the first line that differs. Keys other
// than the format's are ignored (datasets carry ids and metadata).
//
// Errors have the form "<file>:<line>: what is wrong; what is expected". The
// raw line is checked for valid UTF-8 before JSON parsing so that the message
// can name the byte offset (nlohmann would only say "ill-formed UTF-8").
#ifndef FOAK_WORKER_DATA_RECORD_H_
#define FOAK_WORKER_DATA_RECORD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

enum class DataFormat { kAuto, kText, kAlpaca, kPromptCompletion, kChat };

// "auto", "text", "alpaca", "prompt_completion", "chat".
std::string DataFormatName(DataFormat format);
// The inverse; the error lists the valid names.
absl::StatusOr<DataFormat> ParseDataFormat(std::string_view name);

enum class Role { kSystem, kUser, kAssistant };
std::string RoleName(Role role);

struct Message {
  Role role = Role::kUser;
  std::string content;
};

struct Record {
  DataFormat format = DataFormat::kText;
  std::string text;                        // kText
  std::string instruction, input, output;  // kAlpaca (input may be empty)
  std::string prompt, completion;          // kPromptCompletion
  std::vector<Message> messages;           // kChat: non-empty, >= 1 assistant turn,
                                           // system only as the first message
};

// Byte offset of the first invalid UTF-8 sequence in `s` (overlong forms,
// surrogates and code points above U+10FFFF are invalid), or nullopt.
std::optional<size_t> FindInvalidUtf8(std::string_view s);

// Parses one non-blank line. `format` must not be kAuto; `where` ("file:line: ")
// prefixes every error.
absl::StatusOr<Record> ParseRecord(std::string_view line, DataFormat format,
                                   const std::string& where);

// The format a line looks like (see the order above); an error when the line
// is not a JSON object with any of the known keys.
absl::StatusOr<DataFormat> DetectFormat(std::string_view line, const std::string& where);

}  // namespace foak

#endif  // FOAK_WORKER_DATA_RECORD_H_

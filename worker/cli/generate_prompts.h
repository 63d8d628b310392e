// The prompts of `foak-worker generate`: one --prompt, or a JSONL file of
//   {"prompt": "..."}                      text (a user turn with --chat)
//   {"messages": [{"role", "content"}...]} a chat, rendered with the chat
//                                          template; it must end with a user
//                                          turn (system only first)
// Keys other than these are ignored (files carry ids); blank lines are
// skipped. The whole file is read and checked before anything is generated,
// so a bad line fails fast with "<file>:<line>: what is wrong; what is
// expected" and no partial output.
#ifndef FOAK_WORKER_CLI_GENERATE_PROMPTS_H_
#define FOAK_WORKER_CLI_GENERATE_PROMPTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/data/record.h"

namespace foak {

struct PromptSpec {
  std::string where;                     // "file:line" or "--prompt", for errors
  bool is_chat = false;                  // messages given (else text)
  std::string text;                      // !is_chat
  std::vector<Message> messages;         // is_chat: ends with a user turn
  nlohmann::ordered_json messages_json;  // is_chat: the line's "messages", echoed in the output
};

// Parses one JSONL line; `where` is "file:line".
absl::StatusOr<PromptSpec> ParsePromptLine(const std::string& line, const std::string& where);

// Reads every non-blank line of `path`. An empty file is an error.
absl::StatusOr<std::vector<PromptSpec>> ReadPromptsFile(const std::string& path);

}  // namespace foak

#endif  // FOAK_WORKER_CLI_GENERATE_PROMPTS_H_

// ChatTemplate: how a list of chat messages becomes text, rendered by foak
// itself (no Jinja). Every template the supported model families publish in
// tokenizer_config.json's "chat_template" has the same structure: per role a
// fixed prefix and suffix around the message content, an optional BOS at the
// start, and in Llama 2 / Mistral the system message folded into the first
// user turn. That structure is all a ChatTemplate holds, so a custom template
// is a small JSON object (ParseChatTemplate) rather than a program.
//
// Rendering yields Segments, not one string, because the loss mask needs to
// know which characters came from where: assistant content and the assistant
// suffix (the end-of-turn token, so the model learns to stop) are `trained`;
// everything else is prompt. Scaffolding segments are tokenized with special
// tokens parsed ("<|eot_id|>" -> its id); message content is tokenized with
// parse_special = false, so text in a dataset cannot inject control tokens.
//
// The built-in templates reproduce the published Jinja templates' output
// character for character for the messages foak accepts (system only first);
// the expected strings in tests/unit/data_template_test.cc were written by
// hand from those templates:
//   llama3   Meta-Llama-3-8B-Instruct: <|begin_of_text|><|start_header_id|>ROLE
//            <|end_header_id|>\n\nCONTENT(trimmed)<|eot_id|>
//   llama2   Llama-2-chat: <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s>, each
//            user turn starting with <s>, contents stripped
//   mistral  Mistral-7B-Instruct-v0.2: <s>[INST] U [/INST]A</s>[INST] ...; it has no
//            system role, so a system message is put before the first user
//            message with "\n\n" (as Mistral's later templates do)
//   chatml   <|im_start|>ROLE\nCONTENT<|im_end|>\n, no BOS
//   qwen2    chatml plus Qwen2's default system message "You are a helpful
//            assistant." when the chat has none
//   granite  granite-3.0-instruct: <|start_of_role|>ROLE<|end_of_role|>CONTENT
//            <|end_of_text|>\n
//   plain    for the byte-tokenizer debug model: <bos>### User:\nU\n\n###
//            Assistant:\nA<eos> (readable, no special tokens but BOS/EOS)
#ifndef FOAK_WORKER_DATA_CHAT_TEMPLATE_H_
#define FOAK_WORKER_DATA_CHAT_TEMPLATE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/data/record.h"

namespace foak {

// A piece of rendered text, or one special token given by kind (BOS/EOS ids
// come from the tokenizer, so templates stay tokenizer-independent).
struct Segment {
  enum Kind { kText, kBos, kEos };
  Kind kind = kText;
  std::string text;           // kText only
  bool trained = false;       // labels = ids (else -100)
  bool parse_special = true;  // kText: tokenize special-token strings as specials

  static Segment Text(std::string text, bool trained, bool parse_special) {
    Segment s;
    s.text = std::move(text);
    s.trained = trained;
    s.parse_special = parse_special;
    return s;
  }
  static Segment Token(Kind kind, bool trained) {
    Segment s;
    s.kind = kind;
    s.trained = trained;
    return s;
  }
};

struct RoleFormat {
  std::string prefix;
  std::string suffix;
};

struct ChatTemplate {
  std::string name;
  RoleFormat system, user, assistant;
  bool bos = false;                  // start with the tokenizer's BOS id (skipped if it has none)
  bool eos_after_assistant = false;  // the tokenizer's EOS id after each assistant suffix (trained)
  // true: system prefix + content + suffix go inside the first user turn,
  // after the user prefix (Llama 2, Mistral); false: the system message is a
  // turn of its own.
  bool system_in_first_user = false;
  bool trim_content = false;   // strip leading/trailing whitespace of each content
  std::string default_system;  // used when the chat has no system message ("" = none)

  // Segments of a chat (messages as ParseRecord accepts them).
  std::vector<Segment> Render(const std::vector<Message>& messages) const;

  // The prompt a model continues to write the next assistant turn (the
  // published templates' add_generation_prompt): Render(messages) followed by
  // the assistant prefix. `messages` should end with a user turn (system
  // only first). An assistant prefix of only whitespace (llama2's " ") is left
  // out, as Llama 2's template ends the prompt at "[/INST]": the answer's
  // first token brings the space. Every segment is untrained.
  std::vector<Segment> RenderGenerationPrompt(const std::vector<Message>& messages) const;
};

// "llama3", "llama2", "mistral", "chatml", "qwen2", "granite", "plain"; the
// error lists them.
absl::StatusOr<ChatTemplate> BuiltinChatTemplate(std::string_view name);

// The template a model family uses, from config.json's model_type: llama ->
// llama3 (Llama 2 chat models need "llama2" set explicitly: both share
// model_type "llama"), mistral -> mistral, qwen2 -> qwen2, granite -> granite.
// `byte_tokenizer` (a model folder without tokenizer files) -> plain.
absl::StatusOr<ChatTemplate> DefaultChatTemplate(std::string_view model_type, bool byte_tokenizer);

// A custom template from the job, e.g.
//   {"system": {"prefix": "<|system|>\n", "suffix": "\n"},
//    "user": {"prefix": "<|user|>\n", "suffix": "\n"},
//    "assistant": {"prefix": "<|assistant|>\n", "suffix": "<|end|>\n"},
//    "bos": true, "eos": false, "system_in_first_user": false, "trim": false,
//    "default_system": ""}
// Every key is optional (strings default to "", flags to false); an unknown
// key or a wrong type is an error naming `where` + the key.
absl::StatusOr<ChatTemplate> ParseChatTemplate(const nlohmann::json& json,
                                               const std::string& where);

}  // namespace foak

#endif  // FOAK_WORKER_DATA_CHAT_TEMPLATE_H_

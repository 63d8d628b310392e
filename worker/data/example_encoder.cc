#include "worker/data/example_encoder.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace foak {
namespace {

// Stanford Alpaca's PROMPT_DICT (prompt_input / prompt_no_input).
constexpr char kAlpacaWithInput[] =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n";
constexpr char kAlpacaNoInput[] =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n";

// One segment's ids: text tokenized per its parse_special, BOS/EOS as the
// tokenizer's ids (none when it lacks them, e.g. Qwen2 has no BOS).
std::vector<int64_t> SegmentIds(const Segment& s, const Tokenizer& tokenizer) {
  if (s.kind == Segment::kText) {
    if (s.text.empty()) return {};
    return tokenizer.Encode(s.text, s.parse_special);
  }
  const SpecialTokens& special = tokenizer.special();
  const std::optional<int64_t>& id = s.kind == Segment::kBos ? special.bos_id : special.eos_id;
  if (!id.has_value()) return {};
  return {*id};
}

}  // namespace

std::vector<int64_t> EncodeSegments(const std::vector<Segment>& segments,
                                    const Tokenizer& tokenizer) {
  std::vector<int64_t> ids;
  for (const Segment& s : segments) {
    std::vector<int64_t> part = SegmentIds(s, tokenizer);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

absl::StatusOr<ExampleEncoder> ExampleEncoder::Create(const EncoderOptions& options,
                                                      const Tokenizer* tokenizer) {
  if (options.max_seq_len < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_seq_len = ", options.max_seq_len, "; it must be >= 2 (a token and its successor)"));
  }
  if (options.chat_template.eos_after_assistant && !tokenizer->special().eos_id.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chat template '", options.chat_template.name,
        "' ends assistant turns with EOS but the tokenizer has no eos_token; set eos_token in "
        "tokenizer_config.json or use a template whose assistant suffix ends the turn"));
  }
  return ExampleEncoder(options, tokenizer);
}

std::vector<Segment> ExampleEncoder::Render(const Record& record) const {
  const bool as_chat = options_.instructions_as_chat;
  std::vector<Segment> out;
  auto bos = [&] {
    if (tokenizer_->special().add_bos) out.push_back(Segment::Token(Segment::kBos, false));
  };
  auto eos = [&] { out.push_back(Segment::Token(Segment::kEos, true)); };
  switch (record.format) {
    case DataFormat::kText:
      bos();
      out.push_back(Segment::Text(record.text, true, true));
      eos();
      return out;
    case DataFormat::kAlpaca:
      if (as_chat) {
        std::string user = record.instruction;
        if (!record.input.empty()) absl::StrAppend(&user, "\n\n", record.input);
        return options_.chat_template.Render(
            {Message{Role::kUser, std::move(user)}, Message{Role::kAssistant, record.output}});
      }
      bos();
      out.push_back(
          Segment::Text(record.input.empty() ? kAlpacaNoInput : kAlpacaWithInput, false, true));
      out.push_back(Segment::Text(record.instruction, false, false));
      if (!record.input.empty()) {
        out.push_back(Segment::Text("\n\n### Input:\n", false, true));
        out.push_back(Segment::Text(record.input, false, false));
      }
      out.push_back(Segment::Text("\n\n### Response:\n", false, true));
      out.push_back(Segment::Text(record.output, true, false));
      eos();
      return out;
    case DataFormat::kPromptCompletion:
      if (as_chat) {
        return options_.chat_template.Render(
            {Message{Role::kUser, record.prompt}, Message{Role::kAssistant, record.completion}});
      }
      bos();
      out.push_back(Segment::Text(record.prompt, false, true));
      out.push_back(Segment::Text(record.completion, true, true));
      eos();
      return out;
    case DataFormat::kChat:
      return options_.chat_template.Render(record.messages);
    case DataFormat::kAuto:
      break;
  }
  return out;
}

EncodeResult ExampleEncoder::Encode(const Record& record) const {
  Example e;
  for (const Segment& s : Render(record)) {
    const std::vector<int64_t> ids = SegmentIds(s, *tokenizer_);
    const bool trained = s.trained || options_.train_on_prompt;
    for (int64_t id : ids) {
      e.input_ids.push_back(id);
      e.labels.push_back(trained ? id : kIgnoreIndex);
    }
  }
  EncodeResult result;
  if (e.size() > options_.max_seq_len) {
    e.input_ids.resize(static_cast<size_t>(options_.max_seq_len));
    e.labels.resize(static_cast<size_t>(options_.max_seq_len));
    result.truncated = true;
  }
  if (e.NumTargets() > 0) result.example = std::move(e);
  return result;
}

}  // namespace foak

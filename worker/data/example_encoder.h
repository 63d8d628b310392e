// ExampleEncoder: Record -> Example. Renders a parsed line into Segments
// (chat template, instruction template or plain text), tokenizes each segment
// with the job's Tokenizer, and builds the loss mask.
//
// What is trained (labels = ids) and what is not (-100), as TRL's
// completion-only / assistant-only loss:
//   text               every token (BOS excepted: nothing predicts it)
//   alpaca             only the output and the EOS after it; the classic
//                      Stanford Alpaca prompt ("Below is an instruction ...
//                      ### Instruction:\n...\n\n### Input:\n...\n\n### Response:\n")
//                      is prompt
//   prompt_completion  the completion and its EOS; prompt + completion are
//                      concatenated as is (TRL's default)
//   chat               assistant content and each assistant turn's suffix
//                      (its end-of-turn token: the model must learn to stop)
// train_on_prompt turns the mask off (every token trained).
//
// BOS/EOS: text, alpaca and prompt_completion start with BOS when the
// tokenizer's special().add_bos says so and always end with EOS when the
// tokenizer has one (TRL appends EOS so that a completion ends; without it
// packed examples would run into each other). Chat templates say themselves
// where BOS/EOS go.
//
// Special tokens: raw-text fields (text, prompt, completion) are tokenized
// with special-token strings parsed, because users put pre-rendered templates
// there; structured content (alpaca fields, chat messages) is not, so that a
// "<|eot_id|>" inside data stays text. Template scaffolding is always parsed.
//
// Segments are tokenized one by one and concatenated. That equals tokenizing
// the whole rendered string whenever segment boundaries fall where the
// tokenizer's pre-tokenizer splits anyway; the built-in templates put every
// boundary after a special token or a newline, where byte-level BPE (Llama 3,
// Qwen2, Granite) splits. SentencePiece tokenizers (Llama 2, Mistral) may
// tokenize the first word of an answer differently from the whole string.
//
// Truncation keeps the first max_seq_len tokens (transformers' default
// truncation_side = "right"). An example left with no trained token after
// truncation (its response was cut off) is dropped, and counted by the caller.
#ifndef FOAK_WORKER_DATA_EXAMPLE_ENCODER_H_
#define FOAK_WORKER_DATA_EXAMPLE_ENCODER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/chat_template.h"
#include "worker/data/example.h"
#include "worker/data/record.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {

struct EncoderOptions {
  ChatTemplate chat_template;    // for chat lines (and alpaca/prompt_completion below)
  bool train_on_prompt = false;  // true: loss on every token
  // true: alpaca and prompt_completion lines become a user turn (instruction
  // + "\n\n" + input, or prompt) and an assistant turn (output, completion)
  // rendered with chat_template, as for an instruction-tuned model.
  bool instructions_as_chat = false;
  int64_t max_seq_len = 512;  // >= 2
};

struct EncodeResult {
  std::optional<Example> example;  // nullopt: dropped, no trained token left
  bool truncated = false;
};

class ExampleEncoder {
 public:
  // `tokenizer` must outlive the encoder. Fails when max_seq_len < 2 or the
  // template needs an EOS id the tokenizer lacks.
  static absl::StatusOr<ExampleEncoder> Create(const EncoderOptions& options,
                                               const Tokenizer* tokenizer);

  // The segments a record renders to (before tokenization).
  std::vector<Segment> Render(const Record& record) const;
  EncodeResult Encode(const Record& record) const;

  const EncoderOptions& options() const { return options_; }

 private:
  ExampleEncoder(const EncoderOptions& options, const Tokenizer* tokenizer)
      : options_(options), tokenizer_(tokenizer) {}
  EncoderOptions options_;
  const Tokenizer* tokenizer_;
};

// The ids of rendered segments, tokenized one by one exactly as Encode does
// (kBos/kEos become the tokenizer's ids, skipped when it has none), with no
// labels and no truncation: a prompt for generation, e.g.
// EncodeSegments(chat_template.RenderGenerationPrompt(messages), tokenizer).
std::vector<int64_t> EncodeSegments(const std::vector<Segment>& segments,
                                    const Tokenizer& tokenizer);

}  // namespace foak

#endif  // FOAK_WORKER_DATA_EXAMPLE_ENCODER_H_

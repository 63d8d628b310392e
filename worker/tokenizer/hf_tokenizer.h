// HfTokenizer: a Hugging Face tokenizer.json with a BPE model (GPT-2, Llama 3,
// Qwen2 byte-level BPE; Llama 2 / Mistral BPE with byte fallback).
//
// Encoding follows tokenizers' order so that ids match the real library:
//  1. added tokens with "normalized": false are cut out of the raw text
//     (leftmost-longest match; lstrip/rstrip swallow the whitespace beside
//     them; single_word needs non-word characters around them); special ones
//     only when parse_special;
//  2. each remaining segment is normalized, then added tokens with
//     "normalized": true are cut out of it;
//  3. each segment is pre-tokenized into words (pre_tokenizer.h) and each
//     word goes through the BPE model (bpe_model.h).
// Decoding maps ids to token strings (added tokens by content) and runs the
// decoder chain (decoder.h).
//
// Text that is not valid UTF-8 is first made valid (U+FFFD per invalid
// subsequence): tokenizers only accepts Rust strings, so there is no
// reference behaviour to follow for it.
#ifndef FOAK_WORKER_TOKENIZER_HF_TOKENIZER_H_
#define FOAK_WORKER_TOKENIZER_HF_TOKENIZER_H_

#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/tokenizer/bpe_model.h"
#include "worker/tokenizer/decoder.h"
#include "worker/tokenizer/pre_tokenizer.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {

class HfTokenizer : public Tokenizer {
 public:
  // Parses tokenizer.json at `path`. special() starts from the post-processor
  // (a TemplateProcessing that puts a special token before/after $A sets
  // bos/eos and add_bos/add_eos); tokenizer_config.json is applied later by
  // LoadTokenizer.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromFile(const std::string& path);

  std::vector<int64_t> Encode(std::string_view text, bool parse_special = true) const override;
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int64_t> TokenToId(std::string_view token) const override;
  bool IsSpecial(int64_t id) const override { return special_ids_.count(id) > 0; }

  struct AddedToken {
    std::string content;
    int64_t id = 0;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
    bool normalized = false;
  };

 private:
  // FromFile after parsing; may throw nlohmann::json::exception on a value of
  // an unexpected type deep in the file, which FromFile turns into an error.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(const nlohmann::json& j,
                                                               const std::string& path);

  // A cut of text: an added token (id >= 0) or plain text (id < 0).
  struct Segment {
    std::string text;
    int64_t id;
    bool at_start;
  };
  // Cuts the added tokens of `group` (0: not normalized, 1: normalized) out of `text`.
  void SplitAdded(const std::string& text, bool at_start, int group, bool parse_special,
                  std::vector<Segment>* out) const;

  std::unique_ptr<tokenizer::BpeModel> model_;
  std::unique_ptr<tokenizer::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<tokenizer::Decoder> decoder_;
  std::vector<AddedToken> added_;
  // Per group, indexes into added_ by first byte, longest first.
  std::array<std::array<std::vector<int>, 256>, 2> by_first_byte_;
  std::array<bool, 2> has_group_{};
  std::unordered_map<std::string, int64_t> added_by_content_;
  std::unordered_map<int64_t, int> added_by_id_;
  std::unordered_set<int64_t> special_ids_;
  int64_t vocab_size_ = 0;
};

}  // namespace foak

#endif  // FOAK_WORKER_TOKENIZER_HF_TOKENIZER_H_

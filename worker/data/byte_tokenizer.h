// ByteTokenizer: the simplest tokenizer that can train a language model on any
// text without a vocabulary file. Every UTF-8 byte is its own token (ids
// 0-255); two specials frame each example: <bos> = 256 starts it, <eos> = 257
// ends it (and pads rows, see batcher.h). A model trained with it needs
// vocab_size >= 258. Real tokenizers (tokenizer.json) arrive with issue 3.
//
// Decoding drops the specials and returns the raw bytes, so a round trip of any
// byte string (valid UTF-8 or not) is exact.
#ifndef FOAK_WORKER_DATA_BYTE_TOKENIZER_H_
#define FOAK_WORKER_DATA_BYTE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace foak {

class ByteTokenizer {
 public:
  static constexpr int64_t kBosId = 256;
  static constexpr int64_t kEosId = 257;
  static constexpr int64_t kPadId = kEosId;  // padding reuses <eos>; labels mask it
  static constexpr int64_t kVocabSize = 258;

  // Bytes only, no specials.
  std::vector<int64_t> Encode(std::string_view text) const;
  // <bos> + bytes + <eos>, truncated to `max_seq_len` tokens (the <eos> is
  // lost when the text is too long, as with a truncating HF tokenizer).
  // max_seq_len must be >= 1.
  std::vector<int64_t> EncodeExample(std::string_view text, int64_t max_seq_len) const;
  // Bytes of ids 0-255; specials are skipped. Ids outside [0, 258) are skipped too.
  std::string Decode(const std::vector<int64_t>& ids) const;

  // OK when a model with `model_vocab_size` embeddings can take every id this
  // tokenizer produces; otherwise names both sizes and what to change.
  static absl::Status CheckModelVocab(int64_t model_vocab_size);
};

}  // namespace foak

#endif  // FOAK_WORKER_DATA_BYTE_TOKENIZER_H_

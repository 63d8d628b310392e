// RawByteTokenizer: the byte tokenizer (ids 0-255 = bytes, <bos> = 256,
// <eos> = 257, which also pads). It is what LoadTokenizer returns for a model
// folder without tokenizer files, so the debug model of examples/ trains
// through the same interface as a real model. The ids must never change:
// checkpoints of the debug model depend on them.
#ifndef FOAK_WORKER_TOKENIZER_RAW_BYTE_TOKENIZER_H_
#define FOAK_WORKER_TOKENIZER_RAW_BYTE_TOKENIZER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "worker/tokenizer/tokenizer.h"

namespace foak {

class RawByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kBosId = 256;
  static constexpr int64_t kEosId = 257;
  static constexpr int64_t kVocabSize = 258;

  RawByteTokenizer();

  // Every byte is its id. With parse_special, the literal strings "<bos>" and
  // "<eos>" become 256 and 257.
  std::vector<int64_t> Encode(std::string_view text, bool parse_special = true) const override;
  // Bytes of ids 0-255; <bos>/<eos> are written as "<bos>"/"<eos>" unless
  // skip_special; ids outside [0, 258) are skipped.
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return kVocabSize; }
  std::optional<int64_t> TokenToId(std::string_view token) const override;
  bool IsSpecial(int64_t id) const override { return id == kBosId || id == kEosId; }
};

}  // namespace foak

#endif  // FOAK_WORKER_TOKENIZER_RAW_BYTE_TOKENIZER_H_

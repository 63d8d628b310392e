#include "worker/data/byte_tokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace foak {

std::vector<int64_t> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

std::vector<int64_t> ByteTokenizer::EncodeExample(std::string_view text,
                                                  int64_t max_seq_len) const {
  std::vector<int64_t> ids;
  const size_t limit = static_cast<size_t>(std::max<int64_t>(max_seq_len, 1));
  ids.reserve(std::min(text.size() + 2, limit));
  ids.push_back(kBosId);
  for (char c : text) {
    if (ids.size() >= limit) return ids;
    ids.push_back(static_cast<unsigned char>(c));
  }
  if (ids.size() < limit) ids.push_back(kEosId);
  return ids;
}

std::string ByteTokenizer::Decode(const std::vector<int64_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
  }
  return out;
}

absl::Status ByteTokenizer::CheckModelVocab(int64_t model_vocab_size) {
  if (model_vocab_size >= kVocabSize) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the model's vocab_size = ", model_vocab_size, " is smaller than the byte tokenizer's ",
      kVocabSize, " ids (256 bytes + <bos> 256 + <eos> 257); use a model whose config.json has "
      "vocab_size >= ", kVocabSize));
}

}  // namespace foak

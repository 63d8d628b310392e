#include "worker/tokenizer/raw_byte_tokenizer.h"

namespace foak {
namespace {
constexpr std::string_view kBos = "<bos>";
constexpr std::string_view kEos = "<eos>";
}  // namespace

RawByteTokenizer::RawByteTokenizer() {
  special_.bos_id = kBosId;
  special_.eos_id = kEosId;
  special_.pad_id = kEosId;
  special_.add_bos = true;
  special_.add_eos = true;
}

std::vector<int64_t> RawByteTokenizer::Encode(std::string_view text, bool parse_special) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (parse_special && text[i] == '<') {
      std::string_view rest = text.substr(i);
      if (rest.substr(0, kBos.size()) == kBos) {
        ids.push_back(kBosId);
        i += kBos.size() - 1;
        continue;
      }
      if (rest.substr(0, kEos.size()) == kEos) {
        ids.push_back(kEosId);
        i += kEos.size() - 1;
        continue;
      }
    }
    ids.push_back(static_cast<unsigned char>(text[i]));
  }
  return ids;
}

std::string RawByteTokenizer::Decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    if (id >= 0 && id < 256) {
      out.push_back(static_cast<char>(id));
    } else if (!skip_special && id == kBosId) {
      out.append(kBos);
    } else if (!skip_special && id == kEosId) {
      out.append(kEos);
    }
  }
  return out;
}

std::optional<int64_t> RawByteTokenizer::TokenToId(std::string_view token) const {
  if (token == kBos) return kBosId;
  if (token == kEos) return kEosId;
  if (token.size() == 1) return static_cast<unsigned char>(token[0]);
  return std::nullopt;
}

}  // namespace foak

#include "worker/tokenizer/bpe_model.h"

#include <array>
#include <cstdio>
#include <queue>

#include "absl/strings/str_cat.h"
#include "worker/tokenizer/unicode_util.h"

namespace foak::tokenizer {
namespace {

absl::Status Bad(const std::string& file, const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", path, ": ", what));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model,
                                                             const std::string& file) {
  auto bpe = std::make_unique<BpeModel>();
  const auto get_bool = [&](const char* key) {
    auto it = model.find(key);
    return it != model.end() && it->is_boolean() && it->get<bool>();
  };
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && it->is_string() && !it->get<std::string>().empty()) {
      return Bad(file, absl::StrCat("model.", key),
                 absl::StrCat("is \"", it->get<std::string>(),
                              "\"; only null or \"\" is supported (Llama/GPT-2-style BPE)"));
    }
  }
  auto dropout = model.find("dropout");
  if (dropout != model.end() && dropout->is_number() && dropout->get<double>() > 0) {
    return Bad(file, "model.dropout", "BPE dropout is not supported; set it to null");
  }
  bpe->byte_fallback_ = get_bool("byte_fallback");
  bpe->fuse_unk_ = get_bool("fuse_unk");
  bpe->ignore_merges_ = get_bool("ignore_merges");

  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return Bad(file, "model.vocab", "missing or not an object of token -> id");
  }
  int64_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<uint64_t>() > static_cast<uint64_t>(kMaxTokenId)) {
      return Bad(file, absl::StrCat("model.vocab[\"", it.key(), "\"]"),
                 absl::StrCat("is ", it.value().dump(), "; expected an integer id from 0 to ",
                              kMaxTokenId));
    }
    max_id = std::max<int64_t>(max_id, it.value().get<int64_t>());
  }
  bpe->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  bpe->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const int32_t id = it.value().get<int32_t>();
    bpe->vocab_.emplace(it.key(), id);
    bpe->id_to_token_[static_cast<size_t>(id)] = it.key();
  }
  auto unk = model.find("unk_token");
  if (unk != model.end() && unk->is_string()) {
    auto id = bpe->vocab_.find(unk->get<std::string>());
    if (id == bpe->vocab_.end()) {
      return Bad(file, "model.unk_token",
                 absl::StrCat("\"", unk->get<std::string>(), "\" is not in model.vocab"));
    }
    bpe->unk_id_ = id->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto id = bpe->vocab_.find(name);
    bpe->byte_ids_[static_cast<size_t>(b)] = id == bpe->vocab_.end() ? -1 : id->second;
  }

  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return Bad(file, "model.merges", "missing or not an array of \"a b\" or [a, b] pairs");
  }
  bpe->merges_.reserve(merges->size());
  int32_t rank = 0;
  for (const auto& m : *merges) {
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return Bad(file, absl::StrCat("model.merges[", rank, "]"),
                   absl::StrCat("\"", s, "\" is not two tokens separated by one space"));
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return Bad(file, absl::StrCat("model.merges[", rank, "]"),
                 "must be \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = bpe->vocab_.find(a), ib = bpe->vocab_.find(b), inew = bpe->vocab_.find(a + b);
    if (ia == bpe->vocab_.end() || ib == bpe->vocab_.end() || inew == bpe->vocab_.end()) {
      return Bad(file, absl::StrCat("model.merges[", rank, "]"),
                 absl::StrCat("merge \"", a, "\" + \"", b,
                              "\" names a token (or result) missing from model.vocab"));
    }
    bpe->merges_.emplace(PairKey(ia->second, ib->second), MergeResult{rank, inew->second});
    ++rank;
  }
  return bpe;
}

std::optional<int64_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::IdToToken(int64_t id) const {
  static const std::string* empty = new std::string();
  if (id < 0 || id >= size()) return *empty;
  return id_to_token_[static_cast<size_t>(id)];
}

void BpeModel::Tokenize(std::string_view word, std::vector<int64_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  TokenizeUncached(word, &ids);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::move(key), std::move(ids));
  }
}

void BpeModel::TokenizeUncached(std::string_view word, std::vector<int32_t>* out) const {
  // Symbols as a doubly linked list over a vector; len 0 marks a merged-away one.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool last_was_unk = false;
  std::string ch;
  for (size_t i = 0; i < word.size();) {
    const size_t start = i;
    NextCodepoint(word, &i);
    ch.assign(word.substr(start, i - start));
    auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      symbols.push_back({it->second, 0, 0, true});
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : ch) all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : ch) symbols.push_back({byte_ids_[static_cast<unsigned char>(c)], 0, 0, true});
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_.has_value()) {
      if (!(fuse_unk_ && last_was_unk)) symbols.push_back({*unk_id_, 0, 0, true});
      last_was_unk = true;
    }
  }
  const int32_t n = static_cast<int32_t>(symbols.size());
  for (int32_t k = 0; k < n; ++k) {
    symbols[static_cast<size_t>(k)].prev = k - 1;
    symbols[static_cast<size_t>(k)].next = k + 1 < n ? k + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto push_pair = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t next = symbols[static_cast<size_t>(pos)].next;
    if (next < 0) return;
    auto m = merges_.find(PairKey(symbols[static_cast<size_t>(pos)].id,
                                  symbols[static_cast<size_t>(next)].id));
    if (m != merges_.end()) queue.push({m->second.rank, pos, m->second.new_id});
  };
  for (int32_t k = 0; k + 1 < n; ++k) push_pair(k);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<size_t>(top.pos)];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    auto m = merges_.find(PairKey(left.id, right.id));
    if (m == merges_.end() || m->second.new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = top.pos;
    push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t k = 0; k >= 0 && k < n; k = symbols[static_cast<size_t>(k)].next) {
    out->push_back(symbols[static_cast<size_t>(k)].id);
  }
}

}  // namespace foak::tokenizer

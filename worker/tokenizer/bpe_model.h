// BpeModel: the "model" part of a Hugging Face tokenizer.json of type BPE.
// It turns one pre-tokenized word into ids: the word is split into
// characters (unknown characters become <0xXX> byte tokens with
// byte_fallback, else <unk>, fused when fuse_unk), then the adjacent pair of
// lowest merge rank is merged, leftmost first, until no ranked pair is left.
// That is the order Hugging Face's Word::merge_all uses, so ids match exactly.
// With ignore_merges (Llama 3) a word that is itself in the vocabulary is
// emitted as one id before any merging.
//
// Results are cached per word (words repeat heavily in real text); the cache
// is shared by threads behind a mutex and stops growing at kCacheCapacity.
#ifndef FOAK_WORKER_TOKENIZER_BPE_MODEL_H_
#define FOAK_WORKER_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace foak::tokenizer {

// The largest token id a tokenizer.json may use (vocabulary and added
// tokens). The id table is dense, so an id is also an allocation: 2^24 - 1 is
// 64 times the largest released vocabulary (256K) and keeps a hostile file
// from asking for gigabytes.
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

class BpeModel {
 public:
  static constexpr size_t kCacheCapacity = 1 << 18;
  static constexpr size_t kMaxCachedWordBytes = 128;

  // `model` is tokenizer.json's "model" object; `file` names it in errors.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model,
                                                            const std::string& file);

  // Appends the ids of `word` to `out`.
  void Tokenize(std::string_view word, std::vector<int64_t>* out) const;

  std::optional<int64_t> TokenToId(std::string_view token) const;
  // "" for ids outside the vocabulary.
  const std::string& IdToToken(int64_t id) const;
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  struct MergeResult {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void TokenizeUncached(std::string_view word, std::vector<int32_t>* out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, MergeResult> merges_;
  std::optional<int32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_{};  // <0xXX> ids, -1 where missing
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace foak::tokenizer

#endif  // FOAK_WORKER_TOKENIZER_BPE_MODEL_H_

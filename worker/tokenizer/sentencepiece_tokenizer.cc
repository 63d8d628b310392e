#include "worker/tokenizer/sentencepiece_tokenizer.h"

#include "absl/strings/str_cat.h"

#ifdef FOAK_HAVE_SENTENCEPIECE
#include "worker/tokenizer/sentencepiece_backend.h"

#include <vector>
#endif

namespace foak {

#ifdef FOAK_HAVE_SENTENCEPIECE
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<tokenizer::SpBackend> sp)
      : sp_(std::move(sp)) {
    const auto set = [](int id, std::optional<int64_t>* out) {
      if (id >= 0) *out = id;
    };
    set(sp_->bos_id(), &special_.bos_id);
    set(sp_->eos_id(), &special_.eos_id);
    set(sp_->unk_id(), &special_.unk_id);
    set(sp_->pad_id(), &special_.pad_id);
    special_.add_bos = special_.bos_id.has_value();
    special_.add_eos = false;
    for (int id = 0; id < sp_->size(); ++id) {
      if (sp_->IsControl(id)) controls_.push_back({sp_->IdToPiece(id), id});
    }
  }

  std::vector<int64_t> Encode(std::string_view text, bool parse_special) const override {
    std::vector<int64_t> ids;
    size_t emitted = 0;
    const auto encode_chunk = [&](std::string_view chunk) {
      if (chunk.empty()) return;
      const std::vector<int> chunk_ids = sp_->Encode(chunk);
      ids.insert(ids.end(), chunk_ids.begin(), chunk_ids.end());
    };
    for (size_t i = 0; parse_special && i < text.size(); ++i) {
      for (const auto& [piece, id] : controls_) {
        if (!piece.empty() && text.compare(i, piece.size(), piece) == 0) {
          encode_chunk(text.substr(emitted, i - emitted));
          ids.push_back(id);
          emitted = i + piece.size();
          i = emitted - 1;
          break;
        }
      }
    }
    encode_chunk(text.substr(emitted));
    return ids;
  }

  std::string Decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::vector<int> in;
    std::string out;
    const auto flush = [&] {
      if (!in.empty()) out += sp_->Decode(in);
      in.clear();
    };
    for (int64_t id : ids) {
      if (id < 0 || id >= sp_->size()) continue;
      if (sp_->IsControl(static_cast<int>(id))) {
        flush();
        if (!skip_special) out += sp_->IdToPiece(static_cast<int>(id));
        continue;
      }
      in.push_back(static_cast<int>(id));
    }
    flush();
    return out;
  }

  int64_t vocab_size() const override { return sp_->size(); }
  std::optional<int64_t> TokenToId(std::string_view token) const override {
    const int id = sp_->PieceToId(token);
    if (id == sp_->unk_id() && token != sp_->IdToPiece(id)) return std::nullopt;
    return id;
  }
  bool IsSpecial(int64_t id) const override {
    return id >= 0 && id < sp_->size() &&
           (sp_->IsControl(static_cast<int>(id)) || sp_->IsUnknown(static_cast<int>(id)));
  }

 private:
  std::unique_ptr<tokenizer::SpBackend> sp_;
  std::vector<std::pair<std::string, int>> controls_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path) {
  std::string error;
  auto sp = tokenizer::SpBackend::Load(path, &error);
  if (sp == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a SentencePiece model: ", error));
  }
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(std::move(sp)));
}
#else
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path) {
  return absl::UnimplementedError(absl::StrCat(
      path, ": this foak build has no SentencePiece support (libsentencepiece-dev was not found "
      "when it was configured); provide a tokenizer.json instead, or install libsentencepiece-dev "
      "and rebuild"));
}
#endif

}  // namespace foak

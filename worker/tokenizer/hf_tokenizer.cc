#include "worker/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/tokenizer/unicode_util.h"

namespace foak {
namespace {

bool IsSpaceByte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsWordByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

// Reads the post-processor's TemplateProcessing "single" template: special
// tokens before $A are BOS, after it EOS (Llama 3 and Llama 2 add <bos> so).
// Pieces of other shapes are skipped; an id that is no token id of this
// tokenizer is an error (the trainer would index the embedding table with it).
absl::Status ReadTemplate(const nlohmann::json& pp, const std::string& where, int64_t vocab_size,
                          const std::string& file, SpecialTokens* special) {
  if (!pp.is_object()) return absl::OkStatus();
  auto type = pp.find("type");
  if (type == pp.end() || !type->is_string()) return absl::OkStatus();
  auto processors = pp.find("processors");
  if (type->get<std::string>() == "Sequence" && processors != pp.end() && processors->is_array()) {
    for (size_t i = 0; i < processors->size(); ++i) {
      RETURN_IF_ERROR(ReadTemplate((*processors)[i], absl::StrCat(where, ".processors[", i, "]"),
                                   vocab_size, file, special));
    }
    return absl::OkStatus();
  }
  auto single = pp.find("single");
  auto specials = pp.find("special_tokens");
  if (type->get<std::string>() != "TemplateProcessing" || single == pp.end() ||
      !single->is_array() || specials == pp.end() || !specials->is_object()) {
    return absl::OkStatus();
  }
  bool seen_sequence = false;
  for (const auto& piece : *single) {
    if (!piece.is_object()) continue;
    if (piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    auto token = piece.find("SpecialToken");
    if (token == piece.end() || !token->is_object()) continue;
    auto name = token->find("id");
    if (name == token->end() || !name->is_string()) continue;
    auto it = specials->find(name->get<std::string>());
    if (it == specials->end() || !it->is_object()) continue;
    auto ids = it->find("ids");
    if (ids == it->end() || !ids->is_array() || ids->empty()) continue;
    const nlohmann::json& first = (*ids)[0];
    if (!first.is_number_integer() || first.get<int64_t>() < 0 ||
        first.get<uint64_t>() >= static_cast<uint64_t>(vocab_size)) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": ", where, ".special_tokens[", nlohmann::json(it.key()).dump(), "].ids[0] = ",
          first.dump(), "; expected a token id from 0 to ", vocab_size - 1,
          " (the vocabulary and added tokens)"));
    }
    const int64_t id = first.get<int64_t>();
    if (!seen_sequence) {
      special->bos_id = id;
      special->add_bos = true;
    } else {
      special->eos_id = id;
      special->add_eos = true;
    }
  }
  return absl::OkStatus();
}

// An optional boolean of added_tokens[i]; `fallback` when absent or null.
absl::StatusOr<bool> AddedTokenFlag(const nlohmann::json& token, const char* key, bool fallback,
                                    size_t index, const std::string& file) {
  auto it = token.find(key);
  if (it == token.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": added_tokens[", index, "].", key,
                                                   " = ", it->dump(), "; expected true or false"));
  }
  return it->get<bool>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  // The fields foak checks name themselves in errors; for the rest (an option
  // of a normalizer, pre-tokenizer or decoder of the wrong type) nlohmann's
  // message says which type was expected.
  try {
    return FromJson(j, path);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": a field has the wrong JSON type (", e.what(),
        "); expected the layout Hugging Face tokenizers writes"));
  }
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(const nlohmann::json& j,
                                                                   const std::string& path) {
  auto tok = std::unique_ptr<HfTokenizer>(new HfTokenizer());
  const nlohmann::json null_json;
  const auto field = [&](const char* key) -> const nlohmann::json& {
    auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };
  const nlohmann::json& model = field("model");
  const std::string type = model.is_object() ? model.value("type", "") : "";
  if (type != "BPE") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": model.type is \"", type,
        "\"; only \"BPE\" is supported (byte-level BPE as GPT-2/Llama 3/Qwen2, or BPE with "
        "byte_fallback as Llama 2/Mistral); for a SentencePiece model provide tokenizer.model"));
  }
  ASSIGN_OR_RETURN(tok->model_, tokenizer::BpeModel::FromJson(model, path));
  ASSIGN_OR_RETURN(tok->pre_tokenizer_, tokenizer::PreTokenizer::FromJson(
                                            field("normalizer"), field("pre_tokenizer"), path));
  ASSIGN_OR_RETURN(tok->decoder_, tokenizer::Decoder::FromJson(field("decoder"), path));
  tok->vocab_size_ = tok->model_->size();

  const nlohmann::json& added = field("added_tokens");
  if (!added.is_null() && !added.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": added_tokens must be an array"));
  }
  for (size_t i = 0; added.is_array() && i < added.size(); ++i) {
    const auto& a = added[i];
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string() ||
        a["content"].get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": added_tokens[", i, "] needs an integer \"id\" and a non-empty \"content\""));
    }
    if (a["id"].get<int64_t>() < 0 ||
        a["id"].get<uint64_t>() > static_cast<uint64_t>(tokenizer::kMaxTokenId)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": added_tokens[", i, "].id = ",
                                                     a["id"].dump(), "; expected an id from 0 to ",
                                                     tokenizer::kMaxTokenId));
    }
    AddedToken t;
    t.content = a["content"].get<std::string>();
    t.id = a["id"].get<int64_t>();
    ASSIGN_OR_RETURN(t.special, AddedTokenFlag(a, "special", false, i, path));
    ASSIGN_OR_RETURN(t.lstrip, AddedTokenFlag(a, "lstrip", false, i, path));
    ASSIGN_OR_RETURN(t.rstrip, AddedTokenFlag(a, "rstrip", false, i, path));
    ASSIGN_OR_RETURN(t.single_word, AddedTokenFlag(a, "single_word", false, i, path));
    ASSIGN_OR_RETURN(t.normalized, AddedTokenFlag(a, "normalized", !t.special, i, path));
    tok->added_by_content_[t.content] = t.id;
    tok->added_by_id_[t.id] = static_cast<int>(tok->added_.size());
    if (t.special) tok->special_ids_.insert(t.id);
    tok->vocab_size_ = std::max(tok->vocab_size_, t.id + 1);
    tok->added_.push_back(std::move(t));
  }
  for (int k = 0; k < static_cast<int>(tok->added_.size()); ++k) {
    const AddedToken& t = tok->added_[static_cast<size_t>(k)];
    const int group = t.normalized ? 1 : 0;
    // Normalized tokens are matched in their normalized form, as tokenizers does.
    const std::string key = t.normalized ? tok->pre_tokenizer_->Normalize(t.content, false) : t.content;
    if (key.empty()) continue;
    tok->by_first_byte_[static_cast<size_t>(group)][static_cast<unsigned char>(key[0])].push_back(k);
    tok->has_group_[static_cast<size_t>(group)] = true;
  }
  for (auto& group : tok->by_first_byte_) {
    for (auto& list : group) {
      std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
        return tok->added_[static_cast<size_t>(a)].content.size() >
               tok->added_[static_cast<size_t>(b)].content.size();
      });
    }
  }
  RETURN_IF_ERROR(
      ReadTemplate(field("post_processor"), "post_processor", tok->vocab_size_, path, &tok->special_));
  return tok;
}

void HfTokenizer::SplitAdded(const std::string& text, bool at_start, int group, bool parse_special,
                             std::vector<Segment>* out) const {
  if (!has_group_[static_cast<size_t>(group)]) {
    if (!text.empty()) out->push_back({text, -1, at_start});
    return;
  }
  const auto& index = by_first_byte_[static_cast<size_t>(group)];
  size_t emitted = 0;  // text before this offset is already in `out`
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    size_t hit_len = 0;
    for (int k : index[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = added_[static_cast<size_t>(k)];
      if (t.special && !parse_special) continue;
      const std::string key = t.normalized ? pre_tokenizer_->Normalize(t.content, false) : t.content;
      if (text.compare(i, key.size(), key) != 0) continue;
      if (t.single_word && ((i > 0 && IsWordByte(text[i - 1])) ||
                            (i + key.size() < text.size() && IsWordByte(text[i + key.size()])))) {
        continue;
      }
      hit = &t;
      hit_len = key.size();
      break;
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t begin = i, end = i + hit_len;
    if (hit->lstrip) {
      while (begin > emitted && IsSpaceByte(text[begin - 1])) --begin;
    }
    if (hit->rstrip) {
      while (end < text.size() && IsSpaceByte(text[end])) ++end;
    }
    if (begin > emitted) out->push_back({text.substr(emitted, begin - emitted), -1, at_start && emitted == 0});
    out->push_back({hit->content, hit->id, false});
    emitted = i = end;
  }
  if (emitted < text.size()) out->push_back({text.substr(emitted), -1, at_start && emitted == 0});
}

std::vector<int64_t> HfTokenizer::Encode(std::string_view text, bool parse_special) const {
  std::string input = tokenizer::IsValidUtf8(text) ? std::string(text) : tokenizer::Utf8Lossy(text);
  std::vector<Segment> raw;
  SplitAdded(input, /*at_start=*/true, /*group=*/0, parse_special, &raw);
  std::vector<int64_t> ids;
  ids.reserve(input.size() / 3 + 4);
  std::vector<tokenizer::Piece> pieces;
  std::vector<Segment> normalized;
  for (Segment& seg : raw) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    normalized.clear();
    const bool split_normalized = has_group_[1];
    if (split_normalized) {
      SplitAdded(pre_tokenizer_->Normalize(std::move(seg.text), seg.at_start), seg.at_start, 1,
                 parse_special, &normalized);
    } else {
      normalized.push_back(std::move(seg));
    }
    for (Segment& part : normalized) {
      if (part.id >= 0) {
        ids.push_back(part.id);
        continue;
      }
      pieces.clear();
      pre_tokenizer_->Run(std::move(part.text), part.at_start, split_normalized, &pieces);
      for (const tokenizer::Piece& p : pieces) model_->Tokenize(p.text, &ids);
    }
  }
  return ids;
}

std::string HfTokenizer::Decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) {
      const AddedToken& t = added_[static_cast<size_t>(it->second)];
      if (!(skip_special && t.special)) tokens.push_back(t.content);
      continue;
    }
    const std::string& token = model_->IdToToken(id);
    if (!token.empty()) tokens.push_back(token);
  }
  return decoder_->Decode(std::move(tokens));
}

std::optional<int64_t> HfTokenizer::TokenToId(std::string_view token) const {
  auto it = added_by_content_.find(std::string(token));
  if (it != added_by_content_.end()) return it->second;
  return model_->TokenToId(token);
}

}  // namespace foak

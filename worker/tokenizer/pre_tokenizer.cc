#include "worker/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "worker/tokenizer/unicode_util.h"

#ifdef FOAK_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif
#ifdef FOAK_HAVE_UTF8PROC
#include <utf8proc.h>

#include <cstdlib>
#endif

namespace foak::tokenizer {
namespace {

constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

absl::Status Unsupported(const std::string& file, const std::string& path,
                         const std::string& what, const std::string& supported) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": ", path, ": ", what, " is not supported; supported: ", supported));
}

std::string JsonString(const nlohmann::json& j, const char* key, const std::string& dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}

class PrependStep : public Step {
 public:
  explicit PrependStep(std::string s) : s_(std::move(s)) {}
  void Apply(std::vector<Piece>* pieces) const override {
    for (Piece& p : *pieces) {
      if (!p.text.empty()) p.text.insert(0, s_);
    }
  }

 private:
  std::string s_;
};

#ifdef FOAK_HAVE_UTF8PROC
// Unicode NFC (canonical composition), as Qwen2's tokenizer.json asks: "e" +
// U+0301 becomes "é" before the regex and the BPE see it. Compatibility
// characters (ligatures, full-width forms) are left alone, as NFC does.
class NfcStep : public Step {
 public:
  void Apply(std::vector<Piece>* pieces) const override {
    for (Piece& p : *pieces) {
      if (p.text.empty()) continue;
      utf8proc_uint8_t* out = nullptr;
      const utf8proc_ssize_t n = utf8proc_map(
          reinterpret_cast<const utf8proc_uint8_t*>(p.text.data()),
          static_cast<utf8proc_ssize_t>(p.text.size()), &out,
          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      if (n >= 0 && out != nullptr) p.text.assign(reinterpret_cast<const char*>(out), n);
      std::free(out);  // invalid UTF-8 (n < 0) is left as it is
    }
  }
};
#endif

class ReplaceStep : public Step {
 public:
  ReplaceStep(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void Apply(std::vector<Piece>* pieces) const override {
    for (Piece& p : *pieces) {
      if (p.text.find(from_) != std::string::npos) {
        p.text = absl::StrReplaceAll(p.text, {{from_, to_}});
      }
    }
  }

 private:
  std::string from_, to_;
};

#ifdef FOAK_HAVE_PCRE2
// Splits every piece at the matches of a regex; matches and the gaps between
// them become pieces (Isolated) or only the gaps do (Removed).
class RegexSplitStep : public Step {
 public:
  static absl::StatusOr<std::unique_ptr<RegexSplitStep>> Create(const std::string& pattern,
                                                                 bool literal, bool removed,
                                                                 const std::string& where) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
    if (literal) options |= PCRE2_LITERAL;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     options, &err, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": regex /", pattern, "/ does not compile with PCRE2 at offset ", offset, ": ",
          reinterpret_cast<const char*>(msg)));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
    return std::unique_ptr<RegexSplitStep>(new RegexSplitStep(code, removed));
  }
  ~RegexSplitStep() override { pcre2_code_free(code_); }

  void Apply(std::vector<Piece>* pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces->size() * 4);
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    for (Piece& p : *pieces) {
      const std::string& s = p.text;
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
      size_t pos = 0, last = 0;
      bool start = p.at_start;
      const auto emit = [&](size_t a, size_t b) {
        if (b > a) out.push_back({s.substr(a, b - a), start && a == 0});
      };
      while (pos < s.size()) {
        const int rc = pcre2_match(code_, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b == a) {  // empty match: step over one character
          size_t next = a;
          if (next < s.size()) NextCodepoint(s, &next);
          pos = next;
          continue;
        }
        emit(last, a);
        if (!removed_) emit(a, b);
        last = pos = b;
      }
      emit(last, s.size());
    }
    pcre2_match_data_free(md);
    *pieces = std::move(out);
  }

 private:
  RegexSplitStep(pcre2_code* code, bool removed) : code_(code), removed_(removed) {}
  pcre2_code* code_;
  bool removed_;
};
#endif

// GPT-2's ByteLevel: optional prefix space, optional GPT-2 regex split, then
// every byte becomes its printable stand-in character.
class ByteLevelStep : public Step {
 public:
  ByteLevelStep(bool add_prefix_space, std::unique_ptr<Step> split)
      : add_prefix_space_(add_prefix_space), split_(std::move(split)) {}
  void Apply(std::vector<Piece>* pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : *pieces) {
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, " ");
      }
    }
    if (split_) split_->Apply(pieces);
    const auto& table = ByteToUnicode();
    std::string mapped;
    for (Piece& p : *pieces) {
      mapped.clear();
      for (char c : p.text) mapped.append(table[static_cast<unsigned char>(c)]);
      p.text.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Step> split_;
};

class MetaspaceStep : public Step {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  MetaspaceStep(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void Apply(std::vector<Piece>* pieces) const override {
    std::vector<Piece> out;
    for (Piece& p : *pieces) {
      std::string s = absl::StrReplaceAll(p.text, {{" ", replacement_}});
      const bool starts = s.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && p.at_start))) {
        s.insert(0, replacement_);
      }
      if (!split_) {
        out.push_back({std::move(s), p.at_start});
        continue;
      }
      // MergedWithNext: each replacement char starts a new piece.
      size_t begin = 0;
      for (size_t i = replacement_.size(); i <= s.size(); ++i) {
        if (i == s.size() || s.compare(i, replacement_.size(), replacement_) == 0) {
          if (i > begin) out.push_back({s.substr(begin, i - begin), p.at_start && begin == 0});
          begin = i;
        }
      }
    }
    *pieces = std::move(out);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

absl::Status Build(const nlohmann::json& j, const std::string& path, bool normalizer,
                   const std::string& file, std::vector<std::unique_ptr<Step>>* steps) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = JsonString(j, "type", "");
  const std::string kNormalizers = "null, Sequence, Prepend, Replace (String pattern), NFC";
  const std::string kPreTokenizers =
      "null, Sequence, Split (Isolated/Removed, not inverted), ByteLevel, Metaspace";
  if (type == "Sequence") {
    const char* key = normalizer ? "normalizers" : "pretokenizers";
    auto list = j.find(key);
    if (list == j.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", path, ".", key, ": missing or not an array"));
    }
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(Build((*list)[i], absl::StrCat(path, ".", key, "[", i, "]"), normalizer,
                            file, steps));
    }
    return absl::OkStatus();
  }
  if (normalizer) {
    if (type == "NFC") {
#ifdef FOAK_HAVE_UTF8PROC
      steps->push_back(std::make_unique<NfcStep>());
      return absl::OkStatus();
#else
      return absl::UnimplementedError(absl::StrCat(
          file, ": ", path, ": the NFC normalizer needs utf8proc, which this build lacks "
          "(install libutf8proc-dev and rebuild)"));
#endif
    }
    if (type == "Prepend") {
      steps->push_back(std::make_unique<PrependStep>(JsonString(j, "prepend", "")));
      return absl::OkStatus();
    }
    if (type == "Replace") {
      auto pattern = j.find("pattern");
      if (pattern == j.end() || !pattern->contains("String")) {
        return Unsupported(file, path + ".pattern", "a Replace pattern other than String",
                           "{\"String\": ...}");
      }
      steps->push_back(std::make_unique<ReplaceStep>((*pattern)["String"].get<std::string>(),
                                                     JsonString(j, "content", "")));
      return absl::OkStatus();
    }
    return Unsupported(file, path, absl::StrCat("normalizer type \"", type, "\""), kNormalizers);
  }
  if (type == "Split" || type == "ByteLevel") {
#ifdef FOAK_HAVE_PCRE2
    std::unique_ptr<Step> split;
    if (type == "Split") {
      const std::string behavior = JsonString(j, "behavior", "");
      if (behavior != "Isolated" && behavior != "Removed") {
        return Unsupported(file, path + ".behavior", absl::StrCat("\"", behavior, "\""),
                           "Isolated, Removed");
      }
      if (j.value("invert", false)) {
        return Unsupported(file, path + ".invert", "true", "false");
      }
      auto pattern = j.find("pattern");
      if (pattern == j.end() || !pattern->is_object() ||
          !(pattern->contains("Regex") || pattern->contains("String"))) {
        return absl::InvalidArgumentError(absl::StrCat(
            file, ": ", path, ".pattern: must be {\"Regex\": ...} or {\"String\": ...}"));
      }
      const bool literal = pattern->contains("String");
      const std::string text = (*pattern)[literal ? "String" : "Regex"].get<std::string>();
      ASSIGN_OR_RETURN(auto step, RegexSplitStep::Create(text, literal, behavior == "Removed",
                                                         file + ": " + path + ".pattern"));
      steps->push_back(std::move(step));
      return absl::OkStatus();
    }
    if (j.value("use_regex", true)) {
      ASSIGN_OR_RETURN(split, RegexSplitStep::Create(kGpt2Pattern, false, false, file + ": " + path));
    }
    steps->push_back(
        std::make_unique<ByteLevelStep>(j.value("add_prefix_space", false), std::move(split)));
    return absl::OkStatus();
#else
    return absl::UnimplementedError(absl::StrCat(
        file, ": ", path, ": pre-tokenizer ", type,
        " needs regex support, but foak was built without PCRE2 (install libpcre2-dev and "
        "rebuild)"));
#endif
  }
  if (type == "Metaspace") {
    const std::string scheme = JsonString(j, "prepend_scheme", "");
    MetaspaceStep::Prepend prepend;
    if (scheme == "always") {
      prepend = MetaspaceStep::Prepend::kAlways;
    } else if (scheme == "first") {
      prepend = MetaspaceStep::Prepend::kFirst;
    } else if (scheme == "never") {
      prepend = MetaspaceStep::Prepend::kNever;
    } else if (scheme.empty()) {  // older files: add_prefix_space
      prepend = j.value("add_prefix_space", true) ? MetaspaceStep::Prepend::kAlways
                                                  : MetaspaceStep::Prepend::kNever;
    } else {
      return Unsupported(file, path + ".prepend_scheme", absl::StrCat("\"", scheme, "\""),
                         "always, first, never");
    }
    steps->push_back(std::make_unique<MetaspaceStep>(JsonString(j, "replacement", "\u2581"),
                                                     prepend, j.value("split", true)));
    return absl::OkStatus();
  }
  return Unsupported(file, path, absl::StrCat("pre_tokenizer type \"", type, "\""),
                     kPreTokenizers);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(
    const nlohmann::json& normalizer, const nlohmann::json& pre_tokenizer,
    const std::string& file) {
  auto pt = std::make_unique<PreTokenizer>();
  RETURN_IF_ERROR(Build(normalizer, "normalizer", true, file, &pt->normalizer_));
  RETURN_IF_ERROR(Build(pre_tokenizer, "pre_tokenizer", false, file, &pt->pre_tokenizer_));
  return pt;
}

std::string PreTokenizer::Normalize(std::string text, bool at_start) const {
  std::vector<Piece> pieces{{std::move(text), at_start}};
  for (const auto& step : normalizer_) step->Apply(&pieces);
  return std::move(pieces[0].text);
}

void PreTokenizer::Run(std::string text, bool at_start, bool normalized,
                       std::vector<Piece>* out) const {
  std::vector<Piece> pieces{{std::move(text), at_start}};
  if (!normalized) {
    for (const auto& step : normalizer_) step->Apply(&pieces);
  }
  for (const auto& step : pre_tokenizer_) step->Apply(&pieces);
  for (Piece& p : pieces) out->push_back(std::move(p));
}

}  // namespace foak::tokenizer

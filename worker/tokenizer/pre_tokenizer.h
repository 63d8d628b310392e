// PreTokenizer: tokenizer.json's "normalizer" and "pre_tokenizer" as one
// pipeline of steps over text pieces, mirroring Hugging Face tokenizers:
//   normalizers:     Sequence, Prepend, Replace (String pattern)
//   pre-tokenizers:  Sequence, Split (Regex or String pattern; Isolated or
//                    Removed), ByteLevel (GPT-2 regex when use_regex,
//                    add_prefix_space), Metaspace (replacement,
//                    prepend_scheme always/first/never, split)
// Anything else is rejected at load time with the JSON path and this list.
//
// Regexes are PCRE2 with UTF + UCP (\p{L}, \p{N}, lookahead: what the
// Oniguruma patterns of tokenizer.json need; std::regex has neither) and JIT.
// Without PCRE2 (FOAK_HAVE_PCRE2 undefined) Split and ByteLevel(use_regex)
// fail to load with an error that says so.
#ifndef FOAK_WORKER_TOKENIZER_PRE_TOKENIZER_H_
#define FOAK_WORKER_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace foak::tokenizer {

// One piece of text on its way to the model. `at_start`: the piece begins at
// offset 0 of the original text (Metaspace's prepend_scheme "first").
struct Piece {
  std::string text;
  bool at_start = false;
};

class Step {
 public:
  virtual ~Step() = default;
  virtual void Apply(std::vector<Piece>* pieces) const = 0;
};

class PreTokenizer {
 public:
  // `normalizer` and `pre_tokenizer` are the JSON values (null allowed).
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(
      const nlohmann::json& normalizer, const nlohmann::json& pre_tokenizer,
      const std::string& file);

  // Applies only the normalizer steps to one string (added tokens with
  // "normalized": true are matched on normalized text).
  std::string Normalize(std::string text, bool at_start) const;
  // Normalizer (unless `normalized` says the text already went through it)
  // then pre-tokenizer steps on one segment of text.
  void Run(std::string text, bool at_start, bool normalized, std::vector<Piece>* out) const;
  bool has_normalizer() const { return !normalizer_.empty(); }

 private:
  std::vector<std::unique_ptr<Step>> normalizer_;
  std::vector<std::unique_ptr<Step>> pre_tokenizer_;
};

}  // namespace foak::tokenizer

#endif  // FOAK_WORKER_TOKENIZER_PRE_TOKENIZER_H_

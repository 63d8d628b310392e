// EncodeExample and the loader that picks a tokenizer for a model folder (the
// order is documented in tokenizer.h).
#include "worker/tokenizer/tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/tokenizer/hf_tokenizer.h"
#include "worker/tokenizer/raw_byte_tokenizer.h"
#include "worker/tokenizer/sentencepiece_tokenizer.h"
#include "worker/tokenizer/tokenizer_config.h"

namespace foak {

std::vector<int64_t> Tokenizer::EncodeExample(std::string_view text) const {
  std::vector<int64_t> body = Encode(text, /*parse_special=*/true);
  std::vector<int64_t> ids;
  ids.reserve(body.size() + 2);
  if (special_.add_bos && special_.bos_id.has_value()) ids.push_back(*special_.bos_id);
  ids.insert(ids.end(), body.begin(), body.end());
  if (special_.add_eos && special_.eos_id.has_value()) ids.push_back(*special_.eos_id);
  return ids;
}

std::unique_ptr<Tokenizer> MakeByteTokenizer() { return std::make_unique<RawByteTokenizer>(); }

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  if (!PathExists(model_dir)) {
    return absl::NotFoundError(absl::StrCat("model folder ", model_dir, " does not exist"));
  }
  std::unique_ptr<Tokenizer> tokenizer;
  const std::string json_path = JoinPath(model_dir, "tokenizer.json");
  const std::string sp_path = JoinPath(model_dir, "tokenizer.model");
  if (PathExists(json_path)) {
    ASSIGN_OR_RETURN(tokenizer, HfTokenizer::FromFile(json_path));
  } else if (PathExists(sp_path)) {
    ASSIGN_OR_RETURN(tokenizer, LoadSentencePieceTokenizer(sp_path));
  } else {
    return MakeByteTokenizer();
  }
  RETURN_IF_ERROR(ApplyTokenizerConfig(model_dir, tokenizer.get()));
  return tokenizer;
}

}  // namespace foak

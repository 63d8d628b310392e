// ApplyTokenizerConfig: BOS/EOS/PAD/UNK and the chat template as transformers
// resolves them for a model folder. Precedence, per field:
//   tokenizer_config.json ("bos_token" etc. as a string or an AddedToken
//   object {"content": ...}; "add_bos_token"/"add_eos_token")
//   > special_tokens_map.json (token strings)
//   > what the tokenizer itself reported (tokenizer.json's TemplateProcessing
//     post-processor, or SentencePiece's own ids).
// "chat_template" may be a string or a list of {"name", "template"}; the one
// named "default" is kept. A chat_template.jinja file is read when the config
// has none (newer transformers save it there).
#ifndef FOAK_WORKER_TOKENIZER_TOKENIZER_CONFIG_H_
#define FOAK_WORKER_TOKENIZER_TOKENIZER_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {

// Errors name the file and field: a token string that is not in the
// vocabulary, a field of the wrong type, add_bos_token true without a BOS.
absl::Status ApplyTokenizerConfig(const std::string& model_dir, Tokenizer* tokenizer);

}  // namespace foak

#endif  // FOAK_WORKER_TOKENIZER_TOKENIZER_CONFIG_H_

// SentencePieceTokenizer: a tokenizer.model (SentencePiece protobuf) through
// libsentencepiece, for models that ship no tokenizer.json. Built only where
// the library is found (FOAK_HAVE_SENTENCEPIECE); elsewhere Load returns an
// error saying so. With parse_special, the control pieces (<s>, </s>)
// written literally in the text become their ids and the text between them
// is encoded separately, as transformers' slow LlamaTokenizer does; plain
// SentencePiece (parse_special false) encodes them as text.
// Defaults: BOS/EOS/UNK/PAD from the model, add_bos true, add_eos false (the
// Llama convention); tokenizer_config.json can override them.
#ifndef FOAK_WORKER_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
#define FOAK_WORKER_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/tokenizer/tokenizer.h"

namespace foak {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path);

}  // namespace foak

#endif  // FOAK_WORKER_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

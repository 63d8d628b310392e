// Tokenizer: the interface every tokenizer of foak implements, and the loader
// that picks one from a Hugging Face model folder.
//
// Loading order in a model folder (as transformers' AutoTokenizer prefers the
// fast tokenizer): tokenizer.json (Hugging Face tokenizers: byte-level BPE as
// in GPT-2 / Llama 3 / Qwen2, or BPE with byte fallback as in Llama 2 /
// Mistral); else tokenizer.model (SentencePiece); else no tokenizer files at
// all gives the ByteTokenizer (ids 0-255 = bytes, <bos> = 256, <eos> = 257),
// which the debug model of examples/ uses. BOS/EOS/PAD and whether BOS/EOS
// are added come from tokenizer_config.json (add_bos_token, add_eos_token,
// bos_token, eos_token, pad_token) and, where that is silent, from the
// tokenizer.json post-processor, as transformers resolves them.
//
// No torch here: this library builds in seconds and is shared by the worker,
// the data pipeline and the benchmarks.
#ifndef FOAK_WORKER_TOKENIZER_TOKENIZER_H_
#define FOAK_WORKER_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

struct SpecialTokens {
  std::optional<int64_t> bos_id;
  std::optional<int64_t> eos_id;
  std::optional<int64_t> pad_id;
  std::optional<int64_t> unk_id;
  bool add_bos = false;  // EncodeExample prepends bos_id
  bool add_eos = false;  // EncodeExample appends eos_id
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text -> ids, with no BOS/EOS added. Added/special tokens written literally
  // in `text` (e.g. "<|eot_id|>") become their ids when `parse_special` is
  // true, as Hugging Face tokenizers do by default.
  virtual std::vector<int64_t> Encode(std::string_view text, bool parse_special = true) const = 0;
  // Ids -> text; special tokens are dropped when `skip_special`.
  virtual std::string Decode(const std::vector<int64_t>& ids, bool skip_special = false) const = 0;
  // One more than the highest id it can produce (added tokens included).
  virtual int64_t vocab_size() const = 0;
  // Id of a vocabulary or added token given as its string form, if any.
  virtual std::optional<int64_t> TokenToId(std::string_view token) const = 0;
  virtual bool IsSpecial(int64_t id) const = 0;

  const SpecialTokens& special() const { return special_; }
  // tokenizer_config.json's "chat_template" (Jinja source, kept for reference;
  // foak renders chats with its own templates, see worker/data), "" if none.
  const std::string& chat_template() const { return chat_template_; }

  // Encode + BOS/EOS per special(): what one training example starts from.
  std::vector<int64_t> EncodeExample(std::string_view text) const;

  // Set by LoadTokenizer from tokenizer_config.json (and by tests).
  void set_special(const SpecialTokens& special) { special_ = special; }
  void set_chat_template(std::string chat_template) { chat_template_ = std::move(chat_template); }

 protected:
  SpecialTokens special_;
  std::string chat_template_;
};

// Loads the tokenizer of a model folder (see the order above). Errors name the
// file and the field that is wrong.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

// The byte tokenizer (ids 0-255 bytes, 256 <bos>, 257 <eos> = pad; add_bos
// and add_eos true).
std::unique_ptr<Tokenizer> MakeByteTokenizer();

}  // namespace foak

#endif  // FOAK_WORKER_TOKENIZER_TOKENIZER_H_

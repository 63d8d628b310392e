// Fuzzes tokenizer.json loading (worker/tokenizer: LoadTokenizer ->
// HfTokenizer::FromFile, the BPE model, normalizers, pre-tokenizers, decoders,
// added tokens and the post-processor). A model folder is user input: foakd
// accepts any folder with a config.json, and the worker loads its tokenizer.
//
// The input is the whole tokenizer.json, written into a scratch model folder;
// what follows a line "//tokenizer_config.json" becomes that file (bos/eos/
// pad tokens, add_bos_token, chat_template), which LoadTokenizer applies.
// A tokenizer that loads then encodes and decodes a few texts (ASCII, added-
// token look-alikes, multi-byte UTF-8, invalid UTF-8, whitespace runs): every
// id must lie in [0, vocab_size), because the trainer indexes the embedding
// table with it.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

const char* const kTexts[] = {
    "Hello, world! It's 2024 and we've 12345 tokens.",
    "<|begin_of_text|><s></s><|im_start|>user\nhi<|im_end|>\n<|eot_id|>",
    "  leading and   inner   spaces\t\ttabs\n\n\nnewlines  ",
    "h\xC3\xA9llo w\xC3\xB6rld \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 \xE2\x96\x81x",
    "bad utf-8: \xFF\xFE \xC3 \xED\xA0\x80 end",
    "",
};

constexpr std::string_view kConfigMarker = "\n//tokenizer_config.json\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = foak::fuzz::AsText(data, size);
  const size_t marker = input.find(kConfigMarker);
  foak::fuzz::WriteScratchFile("tokenizer.json", input.substr(0, marker));
  if (marker == std::string_view::npos) {
    foak::fuzz::RemoveScratchFile("tokenizer_config.json");
  } else {
    foak::fuzz::WriteScratchFile("tokenizer_config.json", input.substr(marker + kConfigMarker.size()));
  }
  absl::StatusOr<std::unique_ptr<foak::Tokenizer>> tok =
      foak::LoadTokenizer(foak::fuzz::ScratchDir());
  foak::fuzz::Explain("LoadTokenizer", tok.status());
  if (!tok.ok()) return 0;
  const int64_t vocab = (*tok)->vocab_size();
  FUZZ_CHECK(vocab >= 0);
  for (const char* text : kTexts) {
    for (bool parse_special : {true, false}) {
      const std::vector<int64_t> ids = (*tok)->Encode(text, parse_special);
      for (int64_t id : ids) FUZZ_CHECK(id >= 0 && id < vocab);
      (void)(*tok)->Decode(ids, /*skip_special=*/false);
      (void)(*tok)->Decode(ids, /*skip_special=*/true);
    }
    const std::vector<int64_t> example = (*tok)->EncodeExample(text);
    for (int64_t id : example) FUZZ_CHECK(id >= 0 && id < vocab);
  }
  // Ids the tokenizer did not produce (out of range included) must decode
  // without crashing: generation samples from the model's vocabulary, which
  // may be larger than the tokenizer's.
  (void)(*tok)->Decode({-1, 0, vocab - 1, vocab, vocab + 7, INT64_MAX}, false);
  (void)(*tok)->TokenToId("hello");
  return 0;
}

// Decoder: tokenizer.json's "decoder" as a chain over token strings, exactly
// as Hugging Face's decode_chain runs it: ByteLevel (stand-in characters back
// to bytes, then lossy UTF-8), Replace (String), ByteFallback (<0xXX> runs to
// UTF-8, U+FFFD per byte when invalid), Fuse, Strip, Metaspace, Sequence.
// With no decoder, tokens are joined with spaces (as Hugging Face does).
#ifndef FOAK_WORKER_TOKENIZER_DECODER_H_
#define FOAK_WORKER_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace foak::tokenizer {

class Decoder {
 public:
  static absl::StatusOr<std::unique_ptr<Decoder>> FromJson(const nlohmann::json& decoder,
                                                           const std::string& file);
  std::string Decode(std::vector<std::string> tokens) const;

  struct Op {
    enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
    std::string a, b;  // Replace: pattern, content; Strip: content; Metaspace: replacement
    int start = 0, stop = 0;
    bool prepend = true;  // Metaspace: prepend_scheme != never
  };

 private:
  std::vector<Op> ops_;
  bool none_ = false;
};

}  // namespace foak::tokenizer

#endif  // FOAK_WORKER_TOKENIZER_DECODER_H_

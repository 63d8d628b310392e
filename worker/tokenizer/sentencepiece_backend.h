// SpBackend: the only translation unit that includes <sentencepiece_processor.h>.
// Debian's SentencePiece 0.1.97 header defines its own absl::string_view
// (= std::string_view), which clashes with real Abseil's, so nothing of
// Abseil may be included beside it: this facade speaks plain std types.
#ifndef FOAK_WORKER_TOKENIZER_SENTENCEPIECE_BACKEND_H_
#define FOAK_WORKER_TOKENIZER_SENTENCEPIECE_BACKEND_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace foak::tokenizer {

class SpBackend {
 public:
  // nullptr and *error set when `path` is not a SentencePiece model.
  static std::unique_ptr<SpBackend> Load(const std::string& path, std::string* error);
  ~SpBackend();

  std::vector<int> Encode(std::string_view text) const;
  std::string Decode(const std::vector<int>& ids) const;
  int size() const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;
  int pad_id() const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  std::string IdToPiece(int id) const;
  int PieceToId(std::string_view piece) const;

 private:
  struct Impl;
  explicit SpBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace foak::tokenizer

#endif  // FOAK_WORKER_TOKENIZER_SENTENCEPIECE_BACKEND_H_

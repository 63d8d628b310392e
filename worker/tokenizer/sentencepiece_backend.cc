// The SentencePiece module (libfoak_spm.so): see sentencepiece_backend.h for
// why it is a separately loaded shared object.
#include "worker/tokenizer/sentencepiece_backend.h"

#include <sentencepiece_processor.h>

namespace foak::tokenizer {
namespace {

class SpBackendImpl : public SpBackend {
 public:
  std::vector<int> Encode(std::string_view text) const override {
    std::vector<int> ids;
    sp_.Encode(text, &ids).IgnoreError();
    return ids;
  }
  std::string Decode(const std::vector<int>& ids) const override {
    std::string text;
    sp_.Decode(ids, &text).IgnoreError();
    return text;
  }
  int size() const override { return sp_.GetPieceSize(); }
  int bos_id() const override { return sp_.bos_id(); }
  int eos_id() const override { return sp_.eos_id(); }
  int unk_id() const override { return sp_.unk_id(); }
  int pad_id() const override { return sp_.pad_id(); }
  bool IsControl(int id) const override { return sp_.IsControl(id); }
  bool IsUnknown(int id) const override { return sp_.IsUnknown(id); }
  std::string IdToPiece(int id) const override { return sp_.IdToPiece(id); }
  int PieceToId(std::string_view piece) const override { return sp_.PieceToId(piece); }

  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace
}  // namespace foak::tokenizer

extern "C" __attribute__((visibility("default"))) foak::tokenizer::SpBackend* foak_spm_load_model(
    const char* model_path, std::string* error) {
  auto impl = new foak::tokenizer::SpBackendImpl();
  const auto status = impl->sp_.Load(model_path);
  if (!status.ok()) {
    *error = status.ToString();
    delete impl;
    return nullptr;
  }
  return impl;
}

#include "worker/tokenizer/sentencepiece_backend.h"

#include <sentencepiece_processor.h>

namespace foak::tokenizer {

struct SpBackend::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SpBackend::SpBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SpBackend::~SpBackend() = default;

std::unique_ptr<SpBackend> SpBackend::Load(const std::string& path, std::string* error) {
  auto impl = std::make_unique<Impl>();
  const auto status = impl->sp.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SpBackend>(new SpBackend(std::move(impl)));
}

std::vector<int> SpBackend::Encode(std::string_view text) const {
  std::vector<int> ids;
  impl_->sp.Encode(text, &ids).IgnoreError();
  return ids;
}

std::string SpBackend::Decode(const std::vector<int>& ids) const {
  std::string text;
  impl_->sp.Decode(ids, &text).IgnoreError();
  return text;
}

int SpBackend::size() const { return impl_->sp.GetPieceSize(); }
int SpBackend::bos_id() const { return impl_->sp.bos_id(); }
int SpBackend::eos_id() const { return impl_->sp.eos_id(); }
int SpBackend::unk_id() const { return impl_->sp.unk_id(); }
int SpBackend::pad_id() const { return impl_->sp.pad_id(); }
bool SpBackend::IsControl(int id) const { return impl_->sp.IsControl(id); }
bool SpBackend::IsUnknown(int id) const { return impl_->sp.IsUnknown(id); }
std::string SpBackend::IdToPiece(int id) const { return impl_->sp.IdToPiece(id); }
int SpBackend::PieceToId(std::string_view piece) const { return impl_->sp.PieceToId(piece); }

}  // namespace foak::tokenizer

// SpBackend: SentencePiece behind a plain-std interface, implemented in a
// separate shared module (libfoak_spm.so) that foak loads with dlopen.
//
// Why a module: Debian's libsentencepiece exports its own bundled copy of
// protobuf-lite. Linked into a process that also has libprotobuf (every
// LibTorch process does), its symbols interpose libprotobuf's and the process
// crashes in protobuf's static initialisers before main. Loaded with
// RTLD_LOCAL | RTLD_DEEPBIND, the module and libsentencepiece keep their
// symbols to themselves and bind to their own protobuf first.
// Also, its header defines its own absl::string_view, which clashes with real
// Abseil's: only sentencepiece_backend.cc includes it, and this facade speaks
// std types only.
#ifndef FOAK_WORKER_TOKENIZER_SENTENCEPIECE_BACKEND_H_
#define FOAK_WORKER_TOKENIZER_SENTENCEPIECE_BACKEND_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace foak::tokenizer {

class SpBackend {
 public:
  virtual ~SpBackend() = default;
  virtual std::vector<int> Encode(std::string_view text) const = 0;
  virtual std::string Decode(const std::vector<int>& ids) const = 0;
  virtual int size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int unk_id() const = 0;
  virtual int pad_id() const = 0;
  virtual bool IsControl(int id) const = 0;
  virtual bool IsUnknown(int id) const = 0;
  virtual std::string IdToPiece(int id) const = 0;
  virtual int PieceToId(std::string_view piece) const = 0;

  // Loads the module (FOAK_SPM_MODULE in the environment, else the path the
  // build recorded, else libfoak_spm.so beside the executable) and the model.
  // nullptr and *error set on failure (no module, or not a SentencePiece model).
  static std::unique_ptr<SpBackend> Load(const std::string& path, std::string* error);
};

// The module's one exported entry point (C linkage, found with dlsym).
extern "C" typedef SpBackend* (*SpBackendFactory)(const char* model_path, std::string* error);
constexpr char kSpBackendFactorySymbol[] = "foak_spm_load_model";

}  // namespace foak::tokenizer

#endif  // FOAK_WORKER_TOKENIZER_SENTENCEPIECE_BACKEND_H_

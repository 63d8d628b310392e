// Finds and dlopens libfoak_spm.so (see sentencepiece_backend.h).
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "worker/tokenizer/sentencepiece_backend.h"

namespace foak::tokenizer {
namespace {

std::string ExecutableDir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// dlopen()s the module once per process; the handle stays open.
SpBackendFactory LoadFactory(std::string* error) {
  static std::once_flag once;
  static SpBackendFactory factory = nullptr;
  static std::string load_error;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("FOAK_SPM_MODULE"); env != nullptr && *env != '\0') {
      candidates.push_back(env);
    }
#ifdef FOAK_SPM_MODULE_PATH
    candidates.push_back(FOAK_SPM_MODULE_PATH);
#endif
    candidates.push_back(ExecutableDir() + "/libfoak_spm.so");
    for (const std::string& path : candidates) {
      void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle == nullptr) {
        load_error += (load_error.empty() ? "" : "; ") + std::string(::dlerror());
        continue;
      }
      factory = reinterpret_cast<SpBackendFactory>(::dlsym(handle, kSpBackendFactorySymbol));
      if (factory != nullptr) return;
      load_error += "; " + path + " has no " + kSpBackendFactorySymbol;
    }
  });
  if (factory == nullptr) *error = "cannot load the SentencePiece module: " + load_error;
  return factory;
}

}  // namespace

std::unique_ptr<SpBackend> SpBackend::Load(const std::string& path, std::string* error) {
  SpBackendFactory factory = LoadFactory(error);
  if (factory == nullptr) return nullptr;
  return std::unique_ptr<SpBackend>(factory(path.c_str(), error));
}

}  // namespace foak::tokenizer

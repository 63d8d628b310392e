#include "fuzz/fuzz_util.h"

#include <unistd.h>

#include <cstdlib>

#include "common/file_util.h"

namespace foak::fuzz {

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/foak-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror(("foak fuzz: mkdtemp " + pattern).c_str());
      std::abort();
    }
    // Removed at exit so that long runs of many processes leave nothing behind.
    static std::string path = pattern;
    std::atexit([] { (void)RemoveTree(path); });
    return &path;
  }();
  return *dir;
}

std::string WriteScratchFile(const std::string& name, std::string_view contents) {
  const std::string path = JoinPath(ScratchDir(), name);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(contents.data(), 1, contents.size(), f) != contents.size() ||
      std::fclose(f) != 0) {
    std::perror(("foak fuzz: cannot write " + path).c_str());
    std::abort();
  }
  return path;
}

void RemoveScratchFile(const std::string& name) {
  ::unlink(JoinPath(ScratchDir(), name).c_str());
}

void Explain(const char* what, const absl::Status& status) {
  static const bool verbose = [] {
    const char* v = std::getenv("FOAK_FUZZ_VERBOSE");
    return v != nullptr && std::string(v) == "1";
  }();
  if (verbose) std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
}

}  // namespace foak::fuzz

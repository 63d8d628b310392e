// A main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput
// once on each file named on the command line (a folder: each file in it,
// sorted). This is how the GCC sanitizer build (FOAK_SANITIZE) replays the
// seed corpus as a test, so a parser change that crashes on a known input
// fails CI without clang. Arguments starting with '-' are libFuzzer flags and
// are ignored, so `<target> -runs=0 corpus/` works with either main.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/file_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!arg.empty() && arg[0] == '-') continue;
    if (!IsDir(arg)) {
      files.push_back(arg);
      continue;
    }
    absl::StatusOr<std::vector<std::string>> names = foak::ListDir(arg);
    if (!names.ok()) {
      std::fprintf(stderr, "replay: %s\n", std::string(names.status().message()).c_str());
      return 2;
    }
    std::vector<std::string> sorted = *names;
    std::sort(sorted.begin(), sorted.end());
    for (const std::string& name : sorted) {
      const std::string path = foak::JoinPath(arg, name);
      if (!IsDir(path)) files.push_back(path);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s FILE_OR_FOLDER... (inputs to replay; none found)\n", argv[0]);
    return 2;
  }
  for (const std::string& path : files) {
    absl::StatusOr<std::string> bytes = foak::ReadFileToString(path);
    if (!bytes.ok()) {
      std::fprintf(stderr, "replay: %s\n", std::string(bytes.status().message()).c_str());
      return 2;
    }
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), bytes->size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size());
  }
  std::fprintf(stderr, "replay: %zu inputs, no crash\n", files.size());
  return 0;
}

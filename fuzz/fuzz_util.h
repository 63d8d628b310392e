// Helpers shared by the fuzz targets of fuzz/.
//
// Several parsers take a path, not bytes (tokenizer.json, JSONL datasets),
// because that is how the worker meets them; their targets write each input
// to a scratch file first. One scratch folder per process, made on first use
// and reused for every input: libFuzzer runs inputs one after another in one
// process, so nothing else writes there at the same time.
//
// FUZZ_CHECK states an invariant of a successful parse (offsets inside the
// file, ids inside the vocabulary, ...). A broken invariant aborts, which
// libFuzzer reports as a crash with the input saved, like a sanitizer finding.
#ifndef FOAK_FUZZ_FUZZ_UTIL_H_
#define FOAK_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/status/status.h"

#define FUZZ_CHECK(cond)                                                             \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

namespace foak::fuzz {

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// This process's scratch folder ($TMPDIR or /tmp), created on first call.
const std::string& ScratchDir();

// Writes `contents` to ScratchDir()/name (replacing it) and returns the path.
// Aborts when the file cannot be written: that is the harness failing, not the
// code under test.
std::string WriteScratchFile(const std::string& name, std::string_view contents);

// Removes ScratchDir()/name if present.
void RemoveScratchFile(const std::string& name);

// With FOAK_FUZZ_VERBOSE=1 in the environment, prints what a parse of the
// current input returned, so one can check that a seed is accepted (or which
// check refuses it): FOAK_FUZZ_VERBOSE=1 build-fuzz/fuzz/job_spec_fuzz SEED.
void Explain(const char* what, const absl::Status& status);

}  // namespace foak::fuzz

#endif  // FOAK_FUZZ_FUZZ_UTIL_H_

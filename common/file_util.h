// File helpers. Every write in foak goes through WriteFileAtomically (temp file
// in the same folder, fsync, rename) so a crash never leaves a half-written
// file under the final name.
#ifndef FOAK_COMMON_FILE_UTIL_H_
#define FOAK_COMMON_FILE_UTIL_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace foak {

// Reads a whole (small) file. NOT_FOUND names the path when it does not exist.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Reads a file of any size in pieces of up to `chunk_bytes`, handing each to
// `consume` in order; stops at the first error (of the read or of `consume`).
absl::Status ReadFileChunks(const std::string& path, size_t chunk_bytes,
                            const std::function<absl::Status(std::string_view)>& consume);

// Writes `contents` to `path` through `path + ".tmp.<pid>"` + fsync + rename.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);

// Creates `path` and its parents; OK when it already exists as a folder.
absl::Status MakeDirs(const std::string& path);

// Joins two path components with exactly one '/'.
std::string JoinPath(std::string_view a, std::string_view b);
// The last component of `path`, trailing slashes ignored ("/m/llama-3.2-1b/"
// -> "llama-3.2-1b").
std::string BaseName(std::string path);

bool PathExists(const std::string& path);

// Removes a file or a folder tree (like `rm -rf`); OK when `path` is absent.
// POSIX only: LibTorch 2.x from pip exports its own std::filesystem symbols,
// and its remove_all crashes any binary linked against it, so foak never uses
// std::filesystem.
absl::Status RemoveTree(const std::string& path);

// Names of the entries of a folder (without "." and ".."), sorted.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path);

// Makes the status of a failed POSIX call: "<what> '<path>': <strerror>".
absl::Status ErrnoStatus(std::string_view what, std::string_view path, int err);

}  // namespace foak

#endif  // FOAK_COMMON_FILE_UTIL_H_

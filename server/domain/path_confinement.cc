#include "server/domain/path_confinement.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"

namespace foak {
namespace {

// realpath(3) into a std::string; errno is kept on failure.
bool RealPath(const std::string& path, std::string* out) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return false;
  *out = resolved;
  ::free(resolved);
  return true;
}

std::string RootList(const std::vector<std::string>& roots, const std::string& roots_flag) {
  return absl::StrCat(absl::StrJoin(roots, ", "), " (", roots_flag, ")");
}

absl::Status NotResolvable(int err) {
  return absl::InvalidArgumentError(
      absl::StrCat("cannot be resolved on the coordinator's host (", std::strerror(err), ")"));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveRoots(const std::vector<std::string>& roots,
                                                      const std::string& flag) {
  std::vector<std::string> resolved;
  for (const std::string& root : roots) {
    if (root.empty()) continue;
    if (root[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": '", root, "' is not an absolute folder; give absolute folders, comma-separated"));
    }
    std::string real;
    if (!RealPath(root, &real)) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": '", root, "' cannot be resolved (", std::strerror(errno),
          "); every root must be an existing folder on foakd's host"));
    }
    struct stat st;
    if (::stat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": '", root, "' (", real, ") is not a folder; every root must be a folder"));
    }
    resolved.push_back(std::move(real));
  }
  return resolved;
}

bool PathWithin(const std::string& path, const std::string& root) {
  if (root.empty() || path.rfind(root, 0) != 0) return false;
  if (root == "/" || path.size() == root.size()) return true;
  return path[root.size()] == '/';
}

absl::StatusOr<std::string> ResolvePath(const std::string& path, bool may_not_exist) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError("is not an absolute path");
  }
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("contains a NUL character");
  }
  if (path.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("is ", path.size(), " characters long; paths are at most ", PATH_MAX - 1));
  }
  std::string real;
  if (!may_not_exist) {
    if (!RealPath(path, &real)) return NotResolvable(errno);
    return real;
  }
  // The deepest ancestor that exists (lstat: a symlink counts as existing,
  // and is then followed by realpath), then the part still to be created.
  std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  std::string existing = "/";
  size_t i = 0;
  for (; i < parts.size(); ++i) {
    if (parts[i] == ".") continue;
    const std::string next = JoinPath(existing, parts[i]);
    struct stat st;
    if (::lstat(next.c_str(), &st) == 0) {
      existing = next;
      continue;
    }
    if (errno != ENOENT) return NotResolvable(errno);
    break;
  }
  if (!RealPath(existing, &real)) {
    // lstat found it, realpath cannot follow it: a symlink to nowhere, which
    // would make the worker create its target wherever that points.
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot be resolved: '", existing, "' exists but cannot be followed (",
        std::strerror(errno), "; a symlink to a missing target?)"));
  }
  for (; i < parts.size(); ++i) {
    if (parts[i] == ".") continue;
    if (parts[i] == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "has '..' in the part that does not exist yet (after '", existing,
          "'); give the folder without '..'"));
    }
    real = JoinPath(real, parts[i]);
  }
  return real;
}

absl::StatusOr<std::string> ConfinePath(const std::string& path, bool may_not_exist,
                                        const std::vector<std::string>& roots,
                                        const std::string& roots_flag) {
  absl::StatusOr<std::string> real = ResolvePath(path, may_not_exist);
  if (!real.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        real.status().message(), "; it must lie inside ", RootList(roots, roots_flag)));
  }
  for (const std::string& root : roots) {
    if (PathWithin(*real, root)) return real;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "resolves to '", *real, "', which is outside the allowed roots ", RootList(roots, roots_flag),
      "; give a path inside one of them (symlinks and '..' are followed before the check)"));
}

absl::Status ConfineFolderEntries(const std::string& resolved_folder,
                                  const std::vector<std::string>& roots,
                                  const std::string& roots_flag) {
  absl::StatusOr<std::vector<std::string>> entries = ListDir(resolved_folder);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot be listed: ", entries.status().message()));
  }
  for (const std::string& name : *entries) {
    const std::string entry = JoinPath(resolved_folder, name);
    std::string real;
    if (!RealPath(entry, &real)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "holds '", name, "', which cannot be resolved (", std::strerror(errno),
          "; a symlink to a missing target?); remove it or make it point inside ",
          RootList(roots, roots_flag)));
    }
    bool inside = false;
    for (const std::string& root : roots) inside |= PathWithin(real, root);
    if (!inside) {
      return absl::InvalidArgumentError(absl::StrCat(
          "holds '", name, "', which resolves to '", real, "', outside the allowed roots ",
          RootList(roots, roots_flag), "; the folder's files must lie inside them too"));
    }
  }
  return absl::OkStatus();
}

}  // namespace foak

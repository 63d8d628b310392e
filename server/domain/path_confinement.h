// Keeping the paths of a job spec inside folders the operator allowed.
//
// A spec names folders and files on foakd's host (the model, the dataset,
// output_dir, a checkpoint to resume from) that a worker later opens with
// foakd's rights. With roots configured, each such path must resolve inside
// one of them. "Resolve" is what the kernel will do when the worker opens the
// path: every symlink followed and every ".." applied (realpath), so neither
// "/data/../etc/passwd" nor a symlink under /data pointing to /etc gets out.
// The comparison is by whole path components: /data/models2 is not inside
// /data/models.
//
// A folder the job will create (output_dir) need not exist yet: its deepest
// existing ancestor is resolved and the rest may not contain "..", so the
// folder the worker creates is the one that was checked.
//
// What this cannot close (time of check to time of use): the worker opens the
// paths later. foakd checks again at every launch and hands the worker the
// resolved paths, which contain no symlink at that moment; someone who can
// write inside a root could still swap a folder there for a symlink between
// that check and the worker's open. Roots should therefore be folders that
// only the operator and foakd's own jobs write to.
#ifndef FOAK_SERVER_DOMAIN_PATH_CONFINEMENT_H_
#define FOAK_SERVER_DOMAIN_PATH_CONFINEMENT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

// Each root made real (absolute, symlinks resolved); it must be an existing
// folder. `flag` (e.g. "--model_roots") names the setting in errors.
absl::StatusOr<std::vector<std::string>> ResolveRoots(const std::vector<std::string>& roots,
                                                      const std::string& flag);

// True when `path` is `root` or lies below it, comparing whole components.
// Both must be absolute and normalized (no "." or ".." or doubled '/').
bool PathWithin(const std::string& path, const std::string& root);

// The real path of absolute `path`. With `may_not_exist`, the missing tail
// after the deepest existing ancestor is appended as given (it must hold no
// ".."); else the path must exist. INVALID_ARGUMENT with a message to follow
// "field = 'path' " otherwise.
absl::StatusOr<std::string> ResolvePath(const std::string& path, bool may_not_exist);

// ResolvePath, then the result must lie within one of `roots` (real paths,
// not empty). The error message (to follow "field = 'path' ") names the
// resolved path, the roots and `roots_flag`.
absl::StatusOr<std::string> ConfinePath(const std::string& path, bool may_not_exist,
                                        const std::vector<std::string>& roots,
                                        const std::string& roots_flag);

// For a model or checkpoint folder already confined: each entry directly in
// it (the files the worker opens: config.json, safetensors, tokenizer files,
// optimizer state) must also resolve inside `roots`, so a symlinked weight
// file cannot point outside. One level only: subfolders are not walked, and
// what the folder's own files name (a safetensors index's shard names) is
// the folder owner's doing, not the spec's. The error message follows
// "field = 'path' " as above.
absl::Status ConfineFolderEntries(const std::string& resolved_folder,
                                  const std::vector<std::string>& roots,
                                  const std::string& roots_flag);

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_PATH_CONFINEMENT_H_

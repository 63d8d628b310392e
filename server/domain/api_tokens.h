// ApiTokens: who may call foakd's API (JobService, FileService) and as which
// tenant. foakd --auth_tokens_file names a text file, one binding a line:
//
//   # comments and blank lines are ignored
//   TENANT  sha256:<64 hex digits>   the SHA-256 of the token (preferred: the
//                                     file then holds no secret)
//   TENANT  TOKEN                     the token itself, at least 16 characters
//
// TENANT is 1 to 64 of [A-Za-z0-9._-], the first a letter or digit (so a
// stray PEM or other file does not parse); a tenant may have several tokens (to
// rotate one), a token only one tenant. A caller sends
// "authorization: Bearer <token>"; its tenant then sees, watches, cancels and
// uses only its own jobs and files (server/transport/job_service.cc).
//
// Why digests: the presented token is hashed and its digest compared, in
// constant time and against every entry (no early exit), so neither a raw
// token on disk nor the timing of a comparison gives a token away. A
// worker's per-job token (WorkerTokens) is never in this file, so it is
// useless here.
//
// Reload() re-reads the file (foakd does on SIGHUP); a file that no longer
// parses leaves the previous tokens in force.
#ifndef FOAK_SERVER_DOMAIN_API_TOKENS_H_
#define FOAK_SERVER_DOMAIN_API_TOKENS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace foak {

struct ApiTokenEntry {
  std::string tenant;
  std::string sha256;  // 32 raw bytes: the digest of the token
};

// Parses the file's text; `path` only names it in errors, which give the line
// and what would be right, and never the token.
absl::StatusOr<std::vector<ApiTokenEntry>> ParseApiTokens(absl::string_view text,
                                                          const std::string& path);

class ApiTokens {
 public:
  // Reads and parses `path`; INVALID_ARGUMENT / NOT_FOUND naming the file.
  static absl::StatusOr<std::unique_ptr<ApiTokens>> Load(const std::string& path);
  // For tests.
  static std::unique_ptr<ApiTokens> FromEntries(std::vector<ApiTokenEntry> entries);

  // The tenant of the value of the "authorization" metadata (`present` false
  // when the call had none). UNAUTHENTICATED saying what is expected; the
  // message never repeats the token.
  absl::StatusOr<std::string> Authenticate(bool present, absl::string_view authorization) const;

  // Re-reads the file Load read; on error the tokens stay as they were.
  // Returns how many tokens are now in force.
  absl::StatusOr<size_t> Reload();

  size_t size() const;
  const std::string& path() const { return path_; }
  // Counts successful Reload()s: a long call (WatchJob) that authenticated
  // under an older generation checks its token again, so a revoked token
  // does not keep a stream open.
  int64_t generation() const;

 private:
  ApiTokens(std::string path, std::vector<ApiTokenEntry> entries)
      : path_(std::move(path)), entries_(std::move(entries)) {}

  const std::string path_;
  mutable absl::Mutex mu_;
  std::vector<ApiTokenEntry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// OK when `tenant` is empty (no tokens) or owns the job; else NOT_FOUND, word
// for word the store's answer for a job that does not exist ("no job 'ID'"),
// so one tenant learns nothing about another's job ids.
absl::Status CheckJobTenant(const std::string& job_id, const std::string& owner,
                            const std::string& tenant);

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_API_TOKENS_H_

// Per-job worker tokens. A worker reports to foakd with a token that is valid
// for its own job only: HMAC-SHA256(key, job id), the key random per data
// folder (<data_dir>/worker_token.key, mode 0600, made on first start). Nothing
// needs storing per job, tokens survive a restart of foakd (a running worker
// can report again), and a token says nothing about other jobs' tokens.
#ifndef FOAK_SERVER_DOMAIN_WORKER_TOKENS_H_
#define FOAK_SERVER_DOMAIN_WORKER_TOKENS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace foak {

class WorkerTokens {
 public:
  // Reads the key at `key_path`, creating it when absent.
  static absl::StatusOr<std::unique_ptr<WorkerTokens>> Open(const std::string& key_path);
  // For tests: a fixed key.
  static std::unique_ptr<WorkerTokens> WithKey(std::string key);

  std::string TokenFor(const std::string& job_id) const;
  // Constant-time comparison.
  bool Verify(const std::string& job_id, const std::string& token) const;

 private:
  explicit WorkerTokens(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_WORKER_TOKENS_H_

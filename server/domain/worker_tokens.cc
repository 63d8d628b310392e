#include "server/domain/worker_tokens.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace foak {

absl::StatusOr<std::unique_ptr<WorkerTokens>> WorkerTokens::Open(const std::string& key_path) {
  if (PathExists(key_path)) {
    ASSIGN_OR_RETURN(std::string key, ReadFileToString(key_path));
    if (key.size() < 32) {
      return absl::DataLossError(absl::StrCat("worker token key ", key_path, " is too short (",
                                              key.size(), " bytes); delete it to make a new one "
                                              "(running workers then lose their reports)"));
    }
    return std::unique_ptr<WorkerTokens>(new WorkerTokens(std::move(key)));
  }
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return absl::InternalError("no random bytes for the worker token key (OpenSSL RAND_bytes)");
  }
  std::string key(reinterpret_cast<char*>(bytes), sizeof bytes);
  RETURN_IF_ERROR(WriteFileAtomically(key_path, key));
  if (chmod(key_path.c_str(), 0600) != 0) return ErrnoStatus("chmod", key_path, errno);
  return std::unique_ptr<WorkerTokens>(new WorkerTokens(std::move(key)));
}

std::unique_ptr<WorkerTokens> WorkerTokens::WithKey(std::string key) {
  return std::unique_ptr<WorkerTokens>(new WorkerTokens(std::move(key)));
}

std::string WorkerTokens::TokenFor(const std::string& job_id) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(job_id.data()), job_id.size(), mac, &n);
  return HexLower(mac, n);
}

bool WorkerTokens::Verify(const std::string& job_id, const std::string& token) const {
  const std::string expected = TokenFor(job_id);
  return token.size() == expected.size() &&
         CRYPTO_memcmp(token.data(), expected.data(), token.size()) == 0;
}

}  // namespace foak

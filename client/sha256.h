// SHA-256 through OpenSSL's EVP interface, streamed, so `foakctl upload` can
// hash a dataset of many GiB in constant memory before sending it; foakd
// refuses an upload whose bytes do not hash to the digest in the metadata.
#ifndef FOAK_CLIENT_SHA256_H_
#define FOAK_CLIENT_SHA256_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace foak::client {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view bytes);
  // The digest as 64 lowercase hex digits; the hasher is spent afterwards.
  std::string HexDigest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The SHA-256 of `bytes`, lowercase hex.
std::string Sha256Hex(absl::string_view bytes);

struct FileDigest {
  int64_t size_bytes = 0;
  std::string sha256;  // lowercase hex
};

// Reads the file at `path` once and returns its size and SHA-256.
absl::StatusOr<FileDigest> DigestFile(const std::string& path);

}  // namespace foak::client

#endif  // FOAK_CLIENT_SHA256_H_

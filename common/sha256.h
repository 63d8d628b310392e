// SHA-256 through OpenSSL's EVP interface, streamed: `foakctl upload` hashes a
// dataset of many GiB in constant memory before sending it, and foakd hashes
// the bytes as they arrive and refuses an upload whose digest differs from the
// metadata's. Library foak_sha256 (OpenSSL's libcrypto); no torch, no protobuf.
#ifndef FOAK_COMMON_SHA256_H_
#define FOAK_COMMON_SHA256_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace foak {

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

// `n` bytes as 2n lowercase hex digits.
std::string HexLower(const unsigned char* data, size_t n);

// The SHA-256 of `bytes`, lowercase hex.
std::string Sha256Hex(absl::string_view bytes);

struct FileDigest {
  int64_t size_bytes = 0;
  std::string sha256;  // lowercase hex
};

// Reads the file at `path` once and returns its size and SHA-256.
absl::StatusOr<FileDigest> DigestFile(const std::string& path);

}  // namespace foak

#endif  // FOAK_COMMON_SHA256_H_

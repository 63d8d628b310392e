#include "common/sha256.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "openssl/evp.h"

namespace foak {

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::Update(absl::string_view bytes) {
  EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size());
}

std::string Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(state_->ctx, digest, &size);
  return HexLower(digest, size);
}

std::string HexLower(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    hex += kDigits[data[i] >> 4];
    hex += kDigits[data[i] & 15];
  }
  return hex;
}

std::string Sha256Hex(absl::string_view bytes) {
  Sha256 hasher;
  hasher.Update(bytes);
  return hasher.HexDigest();
}

absl::StatusOr<FileDigest> DigestFile(const std::string& path) {
  Sha256 hasher;
  FileDigest out;
  absl::Status status = ReadFileChunks(path, 1 << 20, [&](std::string_view chunk) {
    hasher.Update(absl::string_view(chunk.data(), chunk.size()));
    out.size_bytes += static_cast<int64_t>(chunk.size());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  out.sha256 = hasher.HexDigest();
  return out;
}

}  // namespace foak

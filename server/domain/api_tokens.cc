#include "server/domain/api_tokens.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak {
namespace {

constexpr size_t kMinRawTokenChars = 16;
constexpr char kDigestPrefix[] = "sha256:";

std::string Digest(absl::string_view token) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

bool TenantOk(absl::string_view tenant) {
  if (tenant.empty() || tenant.size() > 64) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(tenant[0]))) return false;
  for (char c : tenant) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 64 hex digits -> 32 bytes; false otherwise.
bool ParseHexDigest(absl::string_view hex, std::string* out) {
  if (hex.size() != 2 * SHA256_DIGEST_LENGTH) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexValue(hex[i]);
    const int lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<ApiTokenEntry>> ParseApiTokens(absl::string_view text,
                                                          const std::string& path) {
  std::vector<ApiTokenEntry> entries;
  std::vector<int> lines;  // where each entry came from, for duplicates
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const std::string where = absl::StrCat(path, ":", line_no, ": ");
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "expected 'TENANT sha256:HEX' or 'TENANT TOKEN' (two fields), found ",
          fields.size()));
    }
    if (!TenantOk(fields[0])) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "tenant '", fields[0],
          "' is not 1 to 64 of letters, digits, '.', '_', '-' starting with a letter or digit"));
    }
    ApiTokenEntry entry;
    entry.tenant = std::string(fields[0]);
    const absl::string_view secret = fields[1];
    if (absl::StartsWith(secret, kDigestPrefix)) {
      if (!ParseHexDigest(secret.substr(sizeof kDigestPrefix - 1), &entry.sha256)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "after 'sha256:' expected 64 hex digits (printf %s TOKEN | sha256sum)"));
      }
    } else {
      if (secret.size() < kMinRawTokenChars) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "the token of tenant '", entry.tenant, "' has ", secret.size(),
            " characters; use at least ", kMinRawTokenChars, " (e.g. openssl rand -hex 32)"));
      }
      entry.sha256 = Digest(secret);
    }
    for (size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].sha256 == entry.sha256) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "the same token as line ", lines[i],
            "; a token belongs to one tenant, so give each line its own"));
      }
    }
    entries.push_back(std::move(entry));
    lines.push_back(line_no);
  }
  if (entries.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " holds no token, so no call could be made; add lines 'TENANT sha256:HEX'"));
  }
  return entries;
}

absl::StatusOr<std::unique_ptr<ApiTokens>> ApiTokens::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(std::vector<ApiTokenEntry> entries, ParseApiTokens(text, path));
  return std::unique_ptr<ApiTokens>(new ApiTokens(path, std::move(entries)));
}

std::unique_ptr<ApiTokens> ApiTokens::FromEntries(std::vector<ApiTokenEntry> entries) {
  return std::unique_ptr<ApiTokens>(new ApiTokens("", std::move(entries)));
}

absl::StatusOr<std::string> ApiTokens::Authenticate(bool present,
                                                    absl::string_view authorization) const {
  if (!present) {
    return absl::UnauthenticatedError(
        "this foakd requires an API token: send the metadata 'authorization: Bearer <token>' "
        "(foakctl --token or $FOAK_TOKEN)");
  }
  constexpr absl::string_view kBearer = "Bearer ";
  // The scheme is case-insensitive (RFC 7235), the token is not.
  if (!absl::StartsWithIgnoreCase(authorization, kBearer) ||
      authorization.size() == kBearer.size()) {
    return absl::UnauthenticatedError(
        "the 'authorization' metadata must be 'Bearer <token>' (the word Bearer, one space, the "
        "token)");
  }
  const std::string digest = Digest(authorization.substr(kBearer.size()));
  absl::MutexLock lock(&mu_);
  const std::string* tenant = nullptr;
  for (const ApiTokenEntry& e : entries_) {  // every entry, so the time says nothing
    if (CRYPTO_memcmp(e.sha256.data(), digest.data(), digest.size()) == 0) tenant = &e.tenant;
  }
  if (tenant == nullptr) {
    return absl::UnauthenticatedError(
        "the bearer token is not one of foakd's API tokens (--auth_tokens_file); a worker's job "
        "token is not an API token");
  }
  return *tenant;
}

absl::StatusOr<size_t> ApiTokens::Reload() {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path_));
  ASSIGN_OR_RETURN(std::vector<ApiTokenEntry> entries, ParseApiTokens(text, path_));
  absl::MutexLock lock(&mu_);
  entries_ = std::move(entries);
  ++generation_;
  return entries_.size();
}

int64_t ApiTokens::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

absl::Status CheckJobTenant(const std::string& job_id, const std::string& owner,
                            const std::string& tenant) {
  if (tenant.empty() || owner == tenant) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
}

size_t ApiTokens::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace foak

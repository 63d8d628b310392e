// FileStore: datasets uploaded through FileService, kept under foakd's data
// folder so a user on another machine can name them in a job by id.
//
// Layout: <root>/<id>.data (the bytes) and <root>/<id>.json (filename, size,
// SHA-256, purpose, time). An upload streams into a temp file while its
// SHA-256 is computed; only when the byte count and checksum match what the
// client declared is it fsynced and renamed to <id>.data, and then the
// metadata is written atomically. A file is visible (Get/List/PathOf) only
// once its .json exists, so a crash mid-upload leaves nothing half-visible;
// Open removes such leftovers.
#ifndef FOAK_SERVER_STORAGE_FILE_STORE_H_
#define FOAK_SERVER_STORAGE_FILE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace foak {

struct StoredFile {
  std::string id;  // "file-" + 16 hex digits
  std::string filename;
  int64_t size_bytes = 0;
  std::string sha256;  // lowercase hex
  std::string purpose;
  int64_t create_time_ms = 0;
  // Who uploaded it (foakd --auth_tokens_file); empty without tokens.
  std::string tenant;
};

struct FileStoreOptions {
  std::string root;                      // created if absent
  int64_t max_file_bytes = 1ll << 30;    // larger uploads: RESOURCE_EXHAUSTED
  std::function<int64_t()> now_ms;       // default: the system clock
};

class FileStore {
 public:
  // One upload in progress; destroying it without Commit discards the bytes.
  class Upload {
   public:
    virtual ~Upload() = default;
    // INVALID_ARGUMENT past the declared size, RESOURCE_EXHAUSTED past the limit.
    virtual absl::Status Append(std::string_view bytes) = 0;
    // INVALID_ARGUMENT when the size or SHA-256 differ from the declared ones.
    virtual absl::StatusOr<StoredFile> Commit() = 0;
  };

  static absl::StatusOr<std::unique_ptr<FileStore>> Open(FileStoreOptions options);

  // `expected_sha256` may be empty (then only the size is checked). The file
  // belongs to `tenant` (empty: to nobody in particular).
  //
  // `tenant` below: empty sees every file; otherwise a file of another
  // tenant is NOT_FOUND, word for word as a missing one, so ids say nothing.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(const std::string& filename,
                                                      const std::string& purpose,
                                                      int64_t expected_size,
                                                      const std::string& expected_sha256,
                                                      const std::string& tenant = "");
  absl::StatusOr<StoredFile> Get(const std::string& id, const std::string& tenant = "");
  // The bytes' path, for a job that names the file.
  absl::StatusOr<std::string> PathOf(const std::string& id, const std::string& tenant = "");
  // Newest first.
  absl::StatusOr<std::vector<StoredFile>> List(const std::string& tenant = "");
  absl::Status Delete(const std::string& id);

  int64_t max_file_bytes() const { return options_.max_file_bytes; }

 private:
  explicit FileStore(FileStoreOptions options) : options_(std::move(options)) {}
  std::string NewId();
  std::string DataPath(const std::string& id) const;
  std::string MetaPath(const std::string& id) const;
  absl::Status CheckId(const std::string& id) const;

  FileStoreOptions options_;
  absl::Mutex mu_;
};

}  // namespace foak

#endif  // FOAK_SERVER_STORAGE_FILE_STORE_H_

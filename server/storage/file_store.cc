#include "server/storage/file_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/domain/job_spec.h"

namespace foak {
namespace {

using Json = nlohmann::json;

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no uploaded file '", id, "'"));
}

bool FilenameOk(const std::string& name) {
  if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(),
                      [](char c) { return c == '/' || c == '\0' || c == '\n'; });
}

class FileUpload : public FileStore::Upload {
 public:
  FileUpload(int fd, std::string temp_path, std::string data_path, std::string meta_path,
             StoredFile file, int64_t limit, std::string expected_sha256)
      : fd_(fd),
        temp_path_(std::move(temp_path)),
        data_path_(std::move(data_path)),
        meta_path_(std::move(meta_path)),
        file_(std::move(file)),
        limit_(limit),
        expected_sha256_(std::move(expected_sha256)) {}
  ~FileUpload() override {
    if (fd_ >= 0) close(fd_);
    if (!committed_) unlink(temp_path_.c_str());
  }

  absl::Status Append(std::string_view bytes) override {
    if (fd_ < 0) return absl::FailedPreconditionError("the upload is already finished");
    if (received_ + static_cast<int64_t>(bytes.size()) > limit_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "upload of '", file_.filename, "' exceeds foakd's limit of ", limit_, " bytes"));
    }
    if (received_ + static_cast<int64_t>(bytes.size()) > file_.size_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "upload of '", file_.filename, "' sent more than the declared size_bytes = ",
          file_.size_bytes));
    }
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = write(fd_, bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("writing upload", temp_path_, errno);
      }
      done += static_cast<size_t>(n);
    }
    sha_.Update(absl::string_view(bytes.data(), bytes.size()));
    received_ += static_cast<int64_t>(bytes.size());
    return absl::OkStatus();
  }

  absl::StatusOr<StoredFile> Commit() override {
    if (fd_ < 0) return absl::FailedPreconditionError("the upload is already finished");
    if (received_ != file_.size_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "upload of '", file_.filename, "' ended after ", received_,
          " bytes but size_bytes = ", file_.size_bytes, " was declared; nothing was stored"));
    }
    file_.sha256 = sha_.HexDigest();
    if (!expected_sha256_.empty() && expected_sha256_ != file_.sha256) {
      return absl::InvalidArgumentError(absl::StrCat(
          "upload of '", file_.filename, "': SHA-256 of the received bytes is ", file_.sha256,
          " but the client declared ", expected_sha256_, "; nothing was stored (resend it)"));
    }
    if (fsync(fd_) != 0) return ErrnoStatus("fsync", temp_path_, errno);
    close(fd_);
    fd_ = -1;
    if (rename(temp_path_.c_str(), data_path_.c_str()) != 0) {
      return ErrnoStatus("rename", data_path_, errno);
    }
    committed_ = true;
    Json meta = {{"id", file_.id},           {"filename", file_.filename},
                 {"size_bytes", file_.size_bytes}, {"sha256", file_.sha256},
                 {"purpose", file_.purpose}, {"create_time_ms", file_.create_time_ms}};
    if (!file_.tenant.empty()) meta["tenant"] = file_.tenant;
    absl::Status written = WriteFileAtomically(meta_path_, meta.dump());
    if (!written.ok()) {
      unlink(data_path_.c_str());
      return written;
    }
    return file_;
  }

 private:
  int fd_;
  std::string temp_path_, data_path_, meta_path_;
  StoredFile file_;
  int64_t limit_;
  std::string expected_sha256_;
  Sha256 sha_;
  int64_t received_ = 0;
  bool committed_ = false;
};

absl::StatusOr<StoredFile> ReadMeta(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  try {
    Json j = Json::parse(text);
    StoredFile f;
    f.id = j.at("id").get<std::string>();
    f.filename = j.at("filename").get<std::string>();
    f.size_bytes = j.at("size_bytes").get<int64_t>();
    f.sha256 = j.at("sha256").get<std::string>();
    f.purpose = j.at("purpose").get<std::string>();
    f.create_time_ms = j.at("create_time_ms").get<int64_t>();
    f.tenant = j.value("tenant", std::string());  // absent before tenants existed
    return f;
  } catch (const Json::exception& e) {
    return absl::DataLossError(absl::StrCat("file metadata ", path, " is corrupt: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(FileStoreOptions options) {
  if (!options.now_ms) options.now_ms = SystemNowMs;
  RETURN_IF_ERROR(MakeDirs(options.root));
  // Uploads interrupted by a crash: temp files, and data without metadata.
  ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(options.root));
  for (const std::string& e : entries) {
    const bool temp = e.find(".tmp") != std::string::npos;
    const bool orphan = e.size() > 5 && e.compare(e.size() - 5, 5, ".data") == 0 &&
                        !PathExists(JoinPath(options.root, e.substr(0, e.size() - 5) + ".json"));
    if (temp || orphan) unlink(JoinPath(options.root, e).c_str());
  }
  return std::unique_ptr<FileStore>(new FileStore(std::move(options)));
}

std::string FileStore::NewId() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[32];
  snprintf(buf, sizeof buf, "file-%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string FileStore::DataPath(const std::string& id) const {
  return JoinPath(options_.root, id + ".data");
}
std::string FileStore::MetaPath(const std::string& id) const {
  return JoinPath(options_.root, id + ".json");
}

absl::Status FileStore::CheckId(const std::string& id) const {
  if (!IsFileId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("id = '", id, "' is not a file id; expected \"file-\" and 16 hex digits"));
  }
  if (!PathExists(MetaPath(id))) return NotFound(id);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileStore::Upload>> FileStore::BeginUpload(
    const std::string& filename, const std::string& purpose, int64_t expected_size,
    const std::string& expected_sha256, const std::string& tenant) {
  if (!FilenameOk(filename)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata.filename = '", filename, "'; expected a file name without folders, 1 to 255 characters"));
  }
  const std::string p = purpose.empty() ? "dataset" : purpose;
  if (p != "dataset") {
    return absl::InvalidArgumentError(absl::StrCat("metadata.purpose = '", purpose, "'; expected \"dataset\""));
  }
  if (expected_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("metadata.size_bytes = ", expected_size, "; expected >= 0"));
  }
  if (expected_size > options_.max_file_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "'", filename, "' has ", expected_size, " bytes; foakd accepts files up to ",
        options_.max_file_bytes, " bytes (foakd --max-upload-bytes)"));
  }
  if (!expected_sha256.empty() &&
      (expected_sha256.size() != 64 ||
       expected_sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata.sha256 = '", expected_sha256, "'; expected 64 lowercase hex digits or empty"));
  }
  StoredFile f;
  f.id = NewId();
  f.filename = filename;
  f.size_bytes = expected_size;
  f.purpose = p;
  f.create_time_ms = options_.now_ms();
  f.tenant = tenant;
  const std::string temp = JoinPath(options_.root, f.id + ".tmp");
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("creating upload", temp, errno);
  return std::unique_ptr<Upload>(new FileUpload(fd, temp, DataPath(f.id), MetaPath(f.id), f,
                                                options_.max_file_bytes, expected_sha256));
}

absl::StatusOr<StoredFile> FileStore::Get(const std::string& id, const std::string& tenant) {
  RETURN_IF_ERROR(CheckId(id));
  ASSIGN_OR_RETURN(StoredFile f, ReadMeta(MetaPath(id)));
  if (!tenant.empty() && f.tenant != tenant) return NotFound(id);
  return f;
}

absl::StatusOr<std::string> FileStore::PathOf(const std::string& id, const std::string& tenant) {
  if (!tenant.empty()) {
    RETURN_IF_ERROR(Get(id, tenant).status());
  } else {
    RETURN_IF_ERROR(CheckId(id));
  }
  return DataPath(id);
}

absl::StatusOr<std::vector<StoredFile>> FileStore::List(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(options_.root));
  std::vector<StoredFile> files;
  for (const std::string& e : entries) {
    if (e.size() <= 5 || e.compare(e.size() - 5, 5, ".json") != 0) continue;
    absl::StatusOr<StoredFile> f = ReadMeta(JoinPath(options_.root, e));
    if (f.ok() && (tenant.empty() || f->tenant == tenant)) files.push_back(*std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const StoredFile& a, const StoredFile& b) {
    if (a.create_time_ms != b.create_time_ms) return a.create_time_ms > b.create_time_ms;
    return a.id > b.id;
  });
  return files;
}

absl::Status FileStore::Delete(const std::string& id) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckId(id));
  // Metadata first: once it is gone the file is invisible, whatever follows.
  if (unlink(MetaPath(id).c_str()) != 0) return ErrnoStatus("deleting", MetaPath(id), errno);
  unlink(DataPath(id).c_str());
  return absl::OkStatus();
}

}  // namespace foak

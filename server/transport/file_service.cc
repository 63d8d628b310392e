// FileService: uploads stream straight into the FileStore (temp file +
// SHA-256 as the bytes arrive); nothing becomes visible unless the whole
// file arrived with the declared size and checksum.
#include "absl/strings/str_cat.h"
#include "server/transport/api_auth.h"
#include "server/transport/grpc_status.h"
#include "server/transport/job_convert.h"
#include "server/transport/job_service.h"

namespace foak {
namespace {

void ToProtoFile(const StoredFile& f, foak::v1::File* out) {
  out->set_id(f.id);
  out->set_filename(f.filename);
  out->set_size_bytes(f.size_bytes);
  out->set_sha256(f.sha256);
  out->set_purpose(f.purpose);
  SetTimestamp(f.create_time_ms, out->mutable_create_time());
}

}  // namespace

grpc::Status FileServiceImpl::UploadFile(grpc::ServerContext* context,
                                         grpc::ServerReader<foak::v1::UploadFileRequest>* reader,
                                         foak::v1::File* response) {
  std::string tenant;
  if (grpc::Status s = CallerTenant(*context, tokens_, &tenant); !s.ok()) return s;
  foak::v1::UploadFileRequest message;
  if (!reader->Read(&message) || !message.has_metadata()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first UploadFileRequest must carry metadata (filename, size_bytes, sha256)");
  }
  const foak::v1::UploadFileMetadata& meta = message.metadata();
  absl::StatusOr<std::unique_ptr<FileStore::Upload>> upload = manager_->files()->BeginUpload(
      meta.filename(), meta.purpose(), meta.size_bytes(), meta.sha256(), tenant);
  if (!upload.ok()) return ToGrpcStatus(upload.status());
  while (reader->Read(&message)) {
    if (!message.has_chunk()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "metadata may only come first; later messages carry chunks");
    }
    if (absl::Status s = (*upload)->Append(message.chunk()); !s.ok()) return ToGrpcStatus(s);
  }
  absl::StatusOr<StoredFile> stored = (*upload)->Commit();
  if (!stored.ok()) return ToGrpcStatus(stored.status());
  ToProtoFile(*stored, response);
  return grpc::Status::OK;
}

grpc::Status FileServiceImpl::GetFile(grpc::ServerContext* context,
                                      const foak::v1::GetFileRequest* request,
                                      foak::v1::File* response) {
  std::string tenant;
  if (grpc::Status s = CallerTenant(*context, tokens_, &tenant); !s.ok()) return s;
  absl::StatusOr<StoredFile> f = manager_->files()->Get(request->id(), tenant);
  if (!f.ok()) return ToGrpcStatus(f.status());
  ToProtoFile(*f, response);
  return grpc::Status::OK;
}

grpc::Status FileServiceImpl::ListFiles(grpc::ServerContext* context,
                                        const foak::v1::ListFilesRequest*,
                                        foak::v1::ListFilesResponse* response) {
  std::string tenant;
  if (grpc::Status s = CallerTenant(*context, tokens_, &tenant); !s.ok()) return s;
  absl::StatusOr<std::vector<StoredFile>> files = manager_->files()->List(tenant);
  if (!files.ok()) return ToGrpcStatus(files.status());
  for (const StoredFile& f : *files) ToProtoFile(f, response->add_files());
  return grpc::Status::OK;
}

grpc::Status FileServiceImpl::DeleteFile(grpc::ServerContext* context,
                                         const foak::v1::DeleteFileRequest* request,
                                         foak::v1::DeleteFileResponse*) {
  std::string tenant;
  if (grpc::Status s = CallerTenant(*context, tokens_, &tenant); !s.ok()) return s;
  if (!tenant.empty()) {
    if (absl::Status own = manager_->files()->Get(request->id(), tenant).status(); !own.ok()) {
      return ToGrpcStatus(own);
    }
  }
  return ToGrpcStatus(manager_->DeleteFile(request->id()));
}

}  // namespace foak

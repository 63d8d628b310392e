// upload, files, delete-file: the FileService calls of foakctl.
//
// An upload reads the file twice: once to learn its size and SHA-256, which
// go in the first message so foakd can verify the bytes as they arrive and
// refuse a truncated or corrupted transfer, then again to stream it in 1 MiB
// chunks (well under gRPC's 4 MiB message limit). Memory stays constant
// whatever the file's size. Uploads are not retried: the stream cannot be
// resumed, and a repeat is one command away.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/command.h"
#include "client/errors.h"
#include "client/format.h"
#include "common/sha256.h"
#include "client/table_writer.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace foak::client {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

std::string Basename(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::vector<std::string> FileHeader() { return {"ID", "FILENAME", "SIZE", "SHA256", "PURPOSE", "AGE"}; }

std::vector<std::string> FileRow(const foak::v1::File& f, absl::Time now) {
  return {f.id(),
          f.filename(),
          FormatBytes(f.size_bytes()),
          f.sha256(),
          f.purpose(),
          IsSet(f.create_time()) ? FormatAge(now - ToTime(f.create_time())) : ""};
}

// Streams the metadata and then the file's bytes; returns the count sent.
absl::StatusOr<int64_t> SendFile(const std::string& path, const foak::v1::UploadFileMetadata& meta,
                                 grpc::ClientWriter<foak::v1::UploadFileRequest>* writer) {
  foak::v1::UploadFileRequest message;
  *message.mutable_metadata() = meta;
  if (!writer->Write(message)) return int64_t{0};  // the stream broke; Finish() says why
  int64_t sent = 0;
  bool broken = false;
  absl::Status status = ReadFileChunks(path, kChunkBytes, [&](std::string_view chunk) {
    message.set_chunk(chunk.data(), chunk.size());
    if (!writer->Write(message)) {
      broken = true;  // Finish() says why
      return absl::CancelledError("the upload stream broke");
    }
    sent += static_cast<int64_t>(chunk.size());
    return absl::OkStatus();
  });
  if (!status.ok() && !broken) return status;
  return sent;
}

void UploadFlags(FlagSet* flags) {
  flags->AddValue("purpose", 0, "PURPOSE", "what the file is for (default dataset)");
}

absl::StatusOr<int> RunUpload(CommandContext& ctx) {
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 1) return UsageError(args.empty() ? "missing FILE" : "upload takes one FILE");
  const std::string& path = args[0];
  ASSIGN_OR_RETURN(const FileDigest digest, DigestFile(path));

  foak::v1::UploadFileMetadata meta;
  meta.set_filename(Basename(path));
  meta.set_purpose(ctx.flags.Get("purpose", "dataset"));
  meta.set_size_bytes(digest.size_bytes);
  meta.set_sha256(digest.sha256);

  // No deadline: a large file may take longer than --timeout to send.
  grpc::ClientContext context;
  ctx.connection.Prepare(&context);
  foak::v1::File file;
  std::unique_ptr<grpc::ClientWriter<foak::v1::UploadFileRequest>> writer =
      ctx.connection.files()->UploadFile(&context, &file);
  absl::StatusOr<int64_t> sent = SendFile(path, meta, writer.get());
  if (!sent.ok()) context.TryCancel();
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  RETURN_IF_ERROR(sent.status());
  RETURN_IF_ERROR(ServerError(status));
  if (*sent != digest.size_bytes) {
    return absl::DataLossError(absl::StrCat("'", path, "' changed while it was uploaded (",
                                            digest.size_bytes, " bytes hashed, ", *sent, " sent)"));
  }
  if (ctx.json()) {
    ctx.out << ToJson(file, /*pretty=*/true) << "\n";
    return kExitOk;
  }
  TableWriter table(FileHeader());
  table.AddRow(FileRow(file, absl::Now()));
  table.Print(ctx.out);
  return kExitOk;
}

absl::StatusOr<int> RunFiles(CommandContext& ctx) {
  if (!ctx.flags.positional().empty()) return UsageError("files takes no arguments");
  foak::v1::ListFilesResponse response;
  RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/true, [&](grpc::ClientContext* c) {
    return ctx.connection.files()->ListFiles(c, foak::v1::ListFilesRequest(), &response);
  }));
  if (ctx.json()) {
    ctx.out << ToJson(response, /*pretty=*/true) << "\n";
    return kExitOk;
  }
  if (response.files().empty()) {
    ctx.err << "No files.\n";
    return kExitOk;
  }
  TableWriter table(FileHeader());
  const absl::Time now = absl::Now();
  for (const foak::v1::File& f : response.files()) table.AddRow(FileRow(f, now));
  table.Print(ctx.out);
  return kExitOk;
}

absl::StatusOr<int> RunDeleteFile(CommandContext& ctx) {
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 1) return UsageError(args.empty() ? "missing file ID" : "expected one file ID");
  foak::v1::DeleteFileRequest request;
  request.set_id(args[0]);
  foak::v1::DeleteFileResponse response;
  RETURN_IF_ERROR(ctx.connection.Call(/*retryable=*/false, [&](grpc::ClientContext* c) {
    return ctx.connection.files()->DeleteFile(c, request, &response);
  }));
  if (ctx.json()) {
    ctx.out << nlohmann::json{{"id", args[0]}, {"deleted", true}}.dump() << "\n";
  } else {
    ctx.out << "deleted " << args[0] << "\n";
  }
  return kExitOk;
}

void NoFlags(FlagSet*) {}

}  // namespace

std::vector<Command> FileCommands() {
  return {
      {"upload", "upload a dataset file to foakd", "upload FILE [--purpose dataset] [flags]",
       "Streams FILE to foakd with its size and SHA-256, which foakd verifies, and\n"
       "prints the file's id; name it in a job as dataset.train (--train file-...).",
       UploadFlags, RunUpload},
      {"files", "list uploaded files", "files [flags]", "Newest first.", NoFlags, RunFiles},
      {"delete-file", "delete an uploaded file", "delete-file ID [flags]",
       "Refused (exit 7) while a job that is not final uses the file.", NoFlags, RunDeleteFile},
  };
}

}  // namespace foak::client

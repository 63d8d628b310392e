// The gRPC services of foakd, each a thin adapter: check the request's own
// fields, call the JobManager, convert the result and the status
// (ToGrpcStatus). No decision about jobs is taken here.
//
// JobService and FileService first ask who calls (CallerTenant): with
// `tokens` (foakd --auth_tokens_file) a call needs a bearer token, and the
// caller's tenant sees and changes only its own jobs and files; another
// tenant's id is NOT_FOUND. With `tokens` null everything is open.
#ifndef FOAK_SERVER_TRANSPORT_JOB_SERVICE_H_
#define FOAK_SERVER_TRANSPORT_JOB_SERVICE_H_

#include "foak/v1/file_service.grpc.pb.h"
#include "foak/v1/job_service.grpc.pb.h"
#include "foak/v1/worker_service.grpc.pb.h"
#include "server/domain/api_tokens.h"
#include "server/domain/job_manager.h"

namespace foak {

class JobServiceImpl final : public foak::v1::JobService::Service {
 public:
  explicit JobServiceImpl(JobManager* manager, const ApiTokens* tokens = nullptr)
      : manager_(manager), tokens_(tokens) {}

  grpc::Status CreateJob(grpc::ServerContext* context, const foak::v1::CreateJobRequest* request,
                         foak::v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const foak::v1::GetJobRequest* request,
                      foak::v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const foak::v1::ListJobsRequest* request,
                        foak::v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const foak::v1::CancelJobRequest* request,
                         foak::v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const foak::v1::WatchJobRequest* request,
                        grpc::ServerWriter<foak::v1::JobEvent>* writer) override;
  grpc::Status ListCheckpoints(grpc::ServerContext* context,
                               const foak::v1::ListCheckpointsRequest* request,
                               foak::v1::ListCheckpointsResponse* response) override;

 private:
  // CallerTenant, then (when `id` is set) that the job is the caller's.
  grpc::Status Authorize(const grpc::ServerContext& context, const std::string& id,
                         std::string* tenant);

  JobManager* manager_;
  const ApiTokens* tokens_;
};

class WorkerServiceImpl final : public foak::v1::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(JobManager* manager) : manager_(manager) {}
  grpc::Status ReportEvents(grpc::ServerContext* context,
                            grpc::ServerReader<foak::v1::WorkerReport>* reader,
                            foak::v1::ReportEventsResponse* response) override;

 private:
  JobManager* manager_;
};

class FileServiceImpl final : public foak::v1::FileService::Service {
 public:
  explicit FileServiceImpl(JobManager* manager, const ApiTokens* tokens = nullptr)
      : manager_(manager), tokens_(tokens) {}
  grpc::Status UploadFile(grpc::ServerContext* context,
                          grpc::ServerReader<foak::v1::UploadFileRequest>* reader,
                          foak::v1::File* response) override;
  grpc::Status GetFile(grpc::ServerContext* context, const foak::v1::GetFileRequest* request,
                       foak::v1::File* response) override;
  grpc::Status ListFiles(grpc::ServerContext* context, const foak::v1::ListFilesRequest* request,
                         foak::v1::ListFilesResponse* response) override;
  grpc::Status DeleteFile(grpc::ServerContext* context, const foak::v1::DeleteFileRequest* request,
                          foak::v1::DeleteFileResponse* response) override;

 private:
  JobManager* manager_;
  const ApiTokens* tokens_;
};

}  // namespace foak

#endif  // FOAK_SERVER_TRANSPORT_JOB_SERVICE_H_

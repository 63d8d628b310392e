// An in-memory foakd for foakctl's tests: JobService and FileService served
// over real gRPC on 127.0.0.1 (port chosen by the kernel), with scripted
// answers. Tests set the fields under `mu` before running a command and read
// the recorded requests afterwards; the services lock `mu` on every call.
//
// Scripts: `create_unavailable` answers that many CreateJob calls with
// UNAVAILABLE *after* creating the job (a lost response, so a retry must find
// it by request_id); `error` answers every JobService call but CreateJob with
// that status; WatchJob sends the matching `events` (seq > after_seq, kinds
// filter) and, once, breaks the stream with UNAVAILABLE after the event with
// seq `break_after_seq`, as a restarting foakd does.
#ifndef FOAK_CLIENT_TESTING_FAKE_FOAKD_H_
#define FOAK_CLIENT_TESTING_FAKE_FOAKD_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "foak/v1/file_service.grpc.pb.h"
#include "foak/v1/job_service.grpc.pb.h"
#include "grpcpp/server.h"

namespace foak::client::testing {

class FakeJobService final : public foak::v1::JobService::Service {
 public:
  grpc::Status CreateJob(grpc::ServerContext*, const foak::v1::CreateJobRequest* request,
                         foak::v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext*, const foak::v1::GetJobRequest* request,
                      foak::v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext*, const foak::v1::ListJobsRequest* request,
                        foak::v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext*, const foak::v1::CancelJobRequest* request,
                         foak::v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext*, const foak::v1::WatchJobRequest* request,
                        grpc::ServerWriter<foak::v1::JobEvent>* writer) override;
  grpc::Status ListCheckpoints(grpc::ServerContext*, const foak::v1::ListCheckpointsRequest* request,
                               foak::v1::ListCheckpointsResponse* response) override;

  // Adds a job with the next id ("job-" + 16 hex digits) and returns its id.
  std::string AddJob(foak::v1::Job job);

  std::mutex mu;
  std::map<std::string, foak::v1::Job> jobs;  // by id; ids sort by creation
  std::map<std::string, std::string> job_by_request_id;
  int next_job = 1;
  // Scripts (see the file comment).
  int create_unavailable = 0;
  std::optional<grpc::Status> create_error;
  std::optional<grpc::Status> error;
  int max_page_size = 2;
  std::vector<foak::v1::JobEvent> events;
  int64_t break_after_seq = 0;
  // The status of that break: UNAVAILABLE, or CANCELLED as a call cut by a
  // stopping server.
  grpc::StatusCode break_code = grpc::StatusCode::UNAVAILABLE;
  bool broke = false;
  std::vector<foak::v1::Checkpoint> checkpoints;
  // Recorded requests.
  std::vector<foak::v1::CreateJobRequest> create_requests;
  std::vector<foak::v1::ListJobsRequest> list_requests;
  std::vector<foak::v1::WatchJobRequest> watch_requests;
};

class FakeFileService final : public foak::v1::FileService::Service {
 public:
  grpc::Status UploadFile(grpc::ServerContext*, grpc::ServerReader<foak::v1::UploadFileRequest>* reader,
                          foak::v1::File* response) override;
  grpc::Status GetFile(grpc::ServerContext*, const foak::v1::GetFileRequest* request,
                       foak::v1::File* response) override;
  grpc::Status ListFiles(grpc::ServerContext*, const foak::v1::ListFilesRequest* request,
                         foak::v1::ListFilesResponse* response) override;
  grpc::Status DeleteFile(grpc::ServerContext*, const foak::v1::DeleteFileRequest* request,
                          foak::v1::DeleteFileResponse* response) override;

  std::mutex mu;
  std::map<std::string, foak::v1::File> files;
  // The last upload as received.
  foak::v1::UploadFileMetadata metadata;
  std::string bytes;
  std::vector<size_t> chunk_sizes;
};

// Both services on one server.
class FakeFoakd {
 public:
  FakeFoakd();
  ~FakeFoakd();

  // "127.0.0.1:PORT".
  const std::string& address() const { return address_; }

  FakeJobService jobs;
  FakeFileService files;

 private:
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

// JobEvent helpers for scripts; the event's time is 1700000000 + seq seconds.
foak::v1::JobEvent StateEvent(const std::string& job_id, int64_t seq, foak::v1::Job::State state,
                              const std::string& reason, const std::string& message);
foak::v1::JobEvent BenchEvent(const std::string& job_id, int64_t seq,
                              const foak::v1::BenchResult& row);

}  // namespace foak::client::testing

#endif  // FOAK_CLIENT_TESTING_FAKE_FOAKD_H_

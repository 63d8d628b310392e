#include "client/testing/fake_foakd.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace foak::client::testing {
namespace {

using foak::v1::Job;
using foak::v1::JobEvent;

grpc::Status NotFound(const std::string& id) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("job ", id, " not found"));
}

std::string KindOf(const JobEvent& e) {
  switch (e.event_case()) {
    case JobEvent::kState:
      return "state";
    case JobEvent::kMetrics:
      return "metrics";
    case JobEvent::kEval:
      return "eval";
    case JobEvent::kCheckpoint:
      return "checkpoint";
    case JobEvent::kLog:
      return "log";
    case JobEvent::kBench:
      return "bench";
    default:
      return "";
  }
}

}  // namespace

std::string FakeJobService::AddJob(Job job) {
  char id[32];
  std::snprintf(id, sizeof id, "job-%016x", next_job++);
  job.set_id(id);
  jobs[id] = job;
  return id;
}

grpc::Status FakeJobService::CreateJob(grpc::ServerContext*, const foak::v1::CreateJobRequest* request,
                                       Job* response) {
  std::lock_guard<std::mutex> lock(mu);
  create_requests.push_back(*request);
  if (create_error.has_value()) return *create_error;
  if (request->validate_only()) {
    *response->mutable_spec() = request->spec();
    return grpc::Status::OK;
  }
  std::string id;
  if (auto it = job_by_request_id.find(request->request_id());
      !request->request_id().empty() && it != job_by_request_id.end()) {
    id = it->second;
  } else {
    Job job;
    *job.mutable_spec() = request->spec();
    job.set_state(Job::QUEUED);
    job.set_reason("Created");
    job.set_request_id(request->request_id());
    id = AddJob(job);
    job_by_request_id[request->request_id()] = id;
  }
  if (create_unavailable > 0) {
    --create_unavailable;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset (scripted)");
  }
  *response = jobs[id];
  return grpc::Status::OK;
}

grpc::Status FakeJobService::GetJob(grpc::ServerContext*, const foak::v1::GetJobRequest* request,
                                    Job* response) {
  std::lock_guard<std::mutex> lock(mu);
  if (error.has_value()) return *error;
  auto it = jobs.find(request->id());
  if (it == jobs.end()) return NotFound(request->id());
  *response = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeJobService::ListJobs(grpc::ServerContext*, const foak::v1::ListJobsRequest* request,
                                      foak::v1::ListJobsResponse* response) {
  std::lock_guard<std::mutex> lock(mu);
  list_requests.push_back(*request);
  if (error.has_value()) return *error;
  std::vector<const Job*> matching;
  for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) {  // newest first
    if (request->state() == Job::STATE_UNSPECIFIED || it->second.state() == request->state()) {
      matching.push_back(&it->second);
    }
  }
  size_t start = 0;
  if (!request->page_token().empty() && !absl::SimpleAtoi(request->page_token(), &start)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_token is not one of ours");
  }
  const int size = std::min(request->page_size() > 0 ? request->page_size() : 50, max_page_size);
  size_t i = start;
  for (; i < matching.size() && i < start + size; ++i) *response->add_jobs() = *matching[i];
  if (i < matching.size()) response->set_next_page_token(absl::StrCat(i));
  return grpc::Status::OK;
}

grpc::Status FakeJobService::CancelJob(grpc::ServerContext*, const foak::v1::CancelJobRequest* request,
                                       Job* response) {
  std::lock_guard<std::mutex> lock(mu);
  if (error.has_value()) return *error;
  auto it = jobs.find(request->id());
  if (it == jobs.end()) return NotFound(request->id());
  Job& job = it->second;
  if (job.state() == Job::SUCCEEDED || job.state() == Job::FAILED || job.state() == Job::CANCELLED) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("job ", job.id(), " is already ", Job::State_Name(job.state())));
  }
  job.set_state(job.state() == Job::QUEUED ? Job::CANCELLED : Job::CANCELLING);
  job.set_reason("Cancelled");
  *response = job;
  return grpc::Status::OK;
}

grpc::Status FakeJobService::WatchJob(grpc::ServerContext*, const foak::v1::WatchJobRequest* request,
                                      grpc::ServerWriter<JobEvent>* writer) {
  std::vector<JobEvent> to_send;
  bool break_now = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    watch_requests.push_back(*request);
    if (error.has_value()) return *error;
    if (jobs.count(request->id()) == 0) return NotFound(request->id());
    for (const JobEvent& e : events) {
      if (e.job_id() != request->id() || e.seq() <= request->after_seq()) continue;
      const std::vector<std::string> kinds(request->kinds().begin(), request->kinds().end());
      if (!kinds.empty() && std::find(kinds.begin(), kinds.end(), KindOf(e)) == kinds.end()) continue;
      if (break_after_seq > 0 && !broke && e.seq() > break_after_seq) {
        break_now = true;
        break;
      }
      to_send.push_back(e);
    }
    if (break_now) broke = true;
  }
  for (const JobEvent& e : to_send) writer->Write(e);
  if (break_now) return grpc::Status(break_code, "foakd is shutting down");
  return grpc::Status::OK;
}

grpc::Status FakeJobService::ListCheckpoints(grpc::ServerContext*,
                                             const foak::v1::ListCheckpointsRequest* request,
                                             foak::v1::ListCheckpointsResponse* response) {
  std::lock_guard<std::mutex> lock(mu);
  if (error.has_value()) return *error;
  if (jobs.count(request->id()) == 0) return NotFound(request->id());
  for (const foak::v1::Checkpoint& c : checkpoints) *response->add_checkpoints() = c;
  return grpc::Status::OK;
}

grpc::Status FakeFileService::UploadFile(grpc::ServerContext*,
                                         grpc::ServerReader<foak::v1::UploadFileRequest>* reader,
                                         foak::v1::File* response) {
  foak::v1::UploadFileRequest message;
  if (!reader->Read(&message) || !message.has_metadata()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must carry metadata");
  }
  std::lock_guard<std::mutex> lock(mu);
  metadata = message.metadata();
  bytes.clear();
  chunk_sizes.clear();
  while (reader->Read(&message)) {
    if (!message.has_chunk()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "metadata may only come first");
    }
    bytes += message.chunk();
    chunk_sizes.push_back(message.chunk().size());
  }
  foak::v1::File file;
  char id[32];
  std::snprintf(id, sizeof id, "file-%016zx", files.size() + 1);
  file.set_id(id);
  file.set_filename(metadata.filename());
  file.set_size_bytes(static_cast<int64_t>(bytes.size()));
  file.set_sha256(metadata.sha256());
  file.set_purpose(metadata.purpose());
  files[file.id()] = file;
  *response = file;
  return grpc::Status::OK;
}

grpc::Status FakeFileService::GetFile(grpc::ServerContext*, const foak::v1::GetFileRequest* request,
                                      foak::v1::File* response) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = files.find(request->id());
  if (it == files.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("file ", request->id(), " not found"));
  }
  *response = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeFileService::ListFiles(grpc::ServerContext*, const foak::v1::ListFilesRequest*,
                                        foak::v1::ListFilesResponse* response) {
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = files.rbegin(); it != files.rend(); ++it) *response->add_files() = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeFileService::DeleteFile(grpc::ServerContext*, const foak::v1::DeleteFileRequest* request,
                                         foak::v1::DeleteFileResponse*) {
  std::lock_guard<std::mutex> lock(mu);
  if (files.erase(request->id()) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("file ", request->id(), " not found"));
  }
  return grpc::Status::OK;
}

FakeFoakd::FakeFoakd() {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&jobs);
  builder.RegisterService(&files);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeFoakd::~FakeFoakd() {
  if (server_ != nullptr) server_->Shutdown();
}

foak::v1::JobEvent StateEvent(const std::string& job_id, int64_t seq, Job::State state,
                              const std::string& reason, const std::string& message) {
  JobEvent e;
  e.set_job_id(job_id);
  e.set_seq(seq);
  e.mutable_time()->set_seconds(1700000000 + seq);
  e.mutable_state()->set_state(state);
  e.mutable_state()->set_reason(reason);
  e.mutable_state()->set_message(message);
  return e;
}

foak::v1::JobEvent BenchEvent(const std::string& job_id, int64_t seq,
                              const foak::v1::BenchResult& row) {
  JobEvent e;
  e.set_job_id(job_id);
  e.set_seq(seq);
  e.mutable_time()->set_seconds(1700000000 + seq);
  *e.mutable_bench() = row;
  return e;
}

}  // namespace foak::client::testing

// JobService: the public job API over the JobManager. WatchJob replays the
// stored events after after_seq, then waits on the manager's change
// notification (re-reading the store each time, so nothing is lost or
// repeated), and ends OK after the event that made the job final. When foakd
// shuts down, open watches end with UNAVAILABLE naming the seq to resume after.
// With API tokens, a watch checks its token again after every re-read of the
// tokens file (SIGHUP; it wakes at least once a second), and ends with
// UNAUTHENTICATED once the token is no longer valid or names another tenant.
#include "server/transport/job_service.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/transport/api_auth.h"
#include "server/transport/grpc_status.h"
#include "server/transport/job_convert.h"

namespace foak {
namespace {

constexpr int64_t kWatchBatch = 256;
const std::set<std::string>& EventKinds() {
  static const std::set<std::string> kinds = {"state", "metrics", "eval", "checkpoint", "log",
                                              "bench"};
  return kinds;
}

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

grpc::Status CheckId(const std::string& id) {
  if (id.empty()) return Invalid("id is required: the job's id (\"job-...\"), as CreateJob returned it");
  return grpc::Status::OK;
}

grpc::Status ToJob(const absl::StatusOr<JobView>& view, foak::v1::Job* out) {
  if (!view.ok()) return ToGrpcStatus(view.status());
  absl::StatusOr<foak::v1::Job> job = ToProtoJob(*view);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *out = *std::move(job);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status JobServiceImpl::Authorize(const grpc::ServerContext& context, const std::string& id,
                                       std::string* tenant) {
  if (grpc::Status s = CallerTenant(context, tokens_, tenant); !s.ok()) return s;
  if (tenant->empty() || id.empty()) return grpc::Status::OK;
  absl::StatusOr<JobView> job = manager_->GetJob(id);
  if (!job.ok()) return ToGrpcStatus(job.status());
  return ToGrpcStatus(CheckJobTenant(id, job->record.tenant, *tenant));
}

grpc::Status JobServiceImpl::CreateJob(grpc::ServerContext* context,
                                       const foak::v1::CreateJobRequest* request,
                                       foak::v1::Job* response) {
  std::string tenant;
  if (grpc::Status s = Authorize(*context, "", &tenant); !s.ok()) return s;
  if (!request->has_spec()) return Invalid("spec is required: the job to run (foak.v1.JobSpec)");
  if (request->request_id().size() > 128) {
    return Invalid(absl::StrCat("request_id has ", request->request_id().size(),
                                " characters; at most 128 (a UUID fits)"));
  }
  return ToJob(manager_->CreateJob(JobSpecToJson(request->spec()), request->request_id(),
                                   request->validate_only(), tenant),
               response);
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context,
                                    const foak::v1::GetJobRequest* request,
                                    foak::v1::Job* response) {
  std::string tenant;
  if (grpc::Status s = CallerTenant(*context, tokens_, &tenant); !s.ok()) return s;
  if (grpc::Status s = CheckId(request->id()); !s.ok()) return s;
  absl::StatusOr<JobView> job = manager_->GetJob(request->id());
  if (job.ok()) {
    if (absl::Status own = CheckJobTenant(request->id(), job->record.tenant, tenant); !own.ok()) {
      return ToGrpcStatus(own);
    }
  }
  return ToJob(job, response);
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context,
                                      const foak::v1::ListJobsRequest* request,
                                      foak::v1::ListJobsResponse* response) {
  ListJobsQuery query;
  if (grpc::Status s = CallerTenant(*context, tokens_, &query.tenant); !s.ok()) return s;
  query.page_size = request->page_size() == 0 ? 50 : request->page_size();
  query.page_token = request->page_token();
  query.state = FromProtoState(request->state());
  std::string next;
  absl::StatusOr<std::vector<JobView>> views = manager_->ListJobs(query, &next);
  if (!views.ok()) return ToGrpcStatus(views.status());
  for (const JobView& view : *views) {
    if (grpc::Status s = ToJob(view, response->add_jobs()); !s.ok()) return s;
  }
  response->set_next_page_token(next);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context,
                                       const foak::v1::CancelJobRequest* request,
                                       foak::v1::Job* response) {
  std::string tenant;
  if (grpc::Status s = Authorize(*context, request->id(), &tenant); !s.ok()) return s;
  if (grpc::Status s = CheckId(request->id()); !s.ok()) return s;
  return ToJob(manager_->CancelJob(request->id()), response);
}

grpc::Status JobServiceImpl::ListCheckpoints(grpc::ServerContext* context,
                                             const foak::v1::ListCheckpointsRequest* request,
                                             foak::v1::ListCheckpointsResponse* response) {
  std::string tenant;
  if (grpc::Status s = Authorize(*context, request->id(), &tenant); !s.ok()) return s;
  if (grpc::Status s = CheckId(request->id()); !s.ok()) return s;
  absl::StatusOr<std::vector<CheckpointRecord>> list = manager_->ListCheckpoints(request->id());
  if (!list.ok()) return ToGrpcStatus(list.status());
  for (const CheckpointRecord& c : *list) {
    foak::v1::Checkpoint* out = response->add_checkpoints();
    out->set_step(c.step);
    out->set_path(c.path);
    SetTimestamp(c.time_ms, out->mutable_time());
  }
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context,
                                      const foak::v1::WatchJobRequest* request,
                                      grpc::ServerWriter<foak::v1::JobEvent>* writer) {
  const std::string& id = request->id();
  std::string tenant;
  if (grpc::Status s = Authorize(*context, id, &tenant); !s.ok()) return s;
  if (grpc::Status s = CheckId(id); !s.ok()) return s;
  if (request->after_seq() < 0) {
    return Invalid(absl::StrCat("after_seq = ", request->after_seq(), "; expected >= 0"));
  }
  std::set<std::string> kinds;
  for (const std::string& k : request->kinds()) {
    if (EventKinds().count(k) == 0) {
      return Invalid(absl::StrCat("kinds contains '", k,
                                  "'; expected state, metrics, eval, checkpoint, log or bench"));
    }
    kinds.insert(k);
  }
  if (absl::StatusOr<JobState> state = manager_->GetState(id); !state.ok()) {
    return ToGrpcStatus(state.status());
  }
  int64_t after = request->after_seq();
  int64_t tokens_generation = tokens_ != nullptr ? tokens_->generation() : 0;
  while (true) {
    if (tokens_ != nullptr && tokens_->generation() != tokens_generation) {
      tokens_generation = tokens_->generation();
      std::string now;
      if (!CallerTenant(*context, tokens_, &now).ok() || now != tenant) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            absl::StrCat("this watch's token is no longer valid (foakd re-read "
                                         "--auth_tokens_file); watch again with a valid token and "
                                         "after_seq = ", after));
      }
    }
    // Shutting down first: a call the server itself cancels while stopping
    // must still tell the client to come back, not that it went away.
    if (manager_->shutting_down()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("foakd is shutting down; watch again with after_seq = ", after));
    }
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    const int64_t generation = manager_->EventGeneration(id);
    absl::StatusOr<JobState> state = manager_->GetState(id);  // read before the events: see below
    if (!state.ok()) return ToGrpcStatus(state.status());
    absl::StatusOr<std::vector<JobEvent>> events = manager_->ListEvents(id, after, kWatchBatch);
    if (!events.ok()) return ToGrpcStatus(events.status());
    for (const JobEvent& e : *events) {
      after = e.seq;
      if (!kinds.empty() && kinds.count(e.kind) == 0) continue;
      absl::StatusOr<foak::v1::JobEvent> out = ToProtoEvent(e);
      if (!out.ok()) return ToGrpcStatus(out.status());
      if (!writer->Write(*out)) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
    if (static_cast<int64_t>(events->size()) == kWatchBatch) continue;
    // The job was already final before these events were read, so they
    // include its final state event and everything before it.
    if (IsFinal(*state) || request->history_only()) return grpc::Status::OK;
    manager_->WaitForChange(id, generation, absl::Now() + absl::Seconds(1));
  }
}

grpc::Status WorkerServiceImpl::ReportEvents(grpc::ServerContext* context,
                                             grpc::ServerReader<foak::v1::WorkerReport>* reader,
                                             foak::v1::ReportEventsResponse* response) {
  std::string token;
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    const std::string value(it->second.data(), it->second.size());
    if (value.rfind("Bearer ", 0) == 0) token = value.substr(7);
  }
  foak::v1::WorkerReport report;
  std::string job_id;
  int64_t accepted = 0;
  while (reader->Read(&report)) {
    if (job_id.empty()) {
      job_id = report.job_id();
      if (absl::Status auth = manager_->AuthorizeWorker(job_id, token); !auth.ok()) {
        return ToGrpcStatus(auth);
      }
    } else if (report.job_id() != job_id) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat("this stream reports job ", job_id, ", not ", report.job_id()));
    }
    WorkerReportInput in;
    in.job_id = job_id;
    in.attempt = report.attempt();
    in.rank = report.rank();
    switch (report.report_case()) {
      case foak::v1::WorkerReport::kStarted:
        in.kind = WorkerReportInput::Kind::kStarted;
        in.max_steps = report.started().max_steps();
        in.start_step = report.started().start_step();
        in.device = report.started().device();
        break;
      case foak::v1::WorkerReport::kMetrics: {
        const foak::v1::StepMetrics& m = report.metrics();
        in.kind = WorkerReportInput::Kind::kMetrics;
        in.step = m.step();
        in.max_steps = m.max_steps();
        in.loss = m.loss();
        in.learning_rate = m.learning_rate();
        in.grad_norm = m.grad_norm();
        in.tokens = m.tokens();
        in.tokens_per_second = m.tokens_per_second();
        in.peak_memory_bytes = m.peak_memory_bytes();
        in.peak_reserved_bytes = m.peak_reserved_bytes();
        in.elapsed_s = m.elapsed_s();
        break;
      }
      case foak::v1::WorkerReport::kEval:
        in.kind = WorkerReportInput::Kind::kEval;
        in.step = report.eval().step();
        in.eval_loss = report.eval().eval_loss();
        in.eval_tokens = report.eval().eval_tokens();
        in.eval_examples = report.eval().eval_examples();
        in.eval_s = report.eval().eval_s();
        break;
      case foak::v1::WorkerReport::kCheckpoint:
        in.kind = WorkerReportInput::Kind::kCheckpoint;
        in.step = report.checkpoint().step();
        in.checkpoint_path = report.checkpoint().path();
        break;
      case foak::v1::WorkerReport::kBench:
        in.kind = WorkerReportInput::Kind::kBench;
        in.bench = FromProtoBench(report.bench());
        break;
      default:
        return Invalid("a WorkerReport needs one of started, metrics, eval, checkpoint, bench");
    }
    if (absl::Status s = manager_->OnWorkerReport(in); !s.ok()) return ToGrpcStatus(s);
    ++accepted;
  }
  response->set_accepted(accepted);
  return grpc::Status::OK;
}

}  // namespace foak

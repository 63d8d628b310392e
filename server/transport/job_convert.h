// Conversions between the engine's plain structs (server/domain) and the
// foak.v1 messages. The job spec travels as JSON with the job file's field
// names; JobSpecToJson walks the message by reflection so integers stay JSON
// numbers (protobuf's own printer writes int64 as strings, which the worker's
// strict parser rightly refuses) and only fields that are set appear.
#ifndef FOAK_SERVER_TRANSPORT_JOB_CONVERT_H_
#define FOAK_SERVER_TRANSPORT_JOB_CONVERT_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "foak/v1/job_service.pb.h"
#include "server/domain/job_manager.h"

namespace foak {

std::string JobSpecToJson(const google::protobuf::Message& spec);

foak::v1::Job::State ToProtoState(JobState state);
// nullopt for STATE_UNSPECIFIED.
std::optional<JobState> FromProtoState(foak::v1::Job::State state);

absl::StatusOr<foak::v1::Job> ToProtoJob(const JobView& view);
absl::StatusOr<foak::v1::JobEvent> ToProtoEvent(const JobEvent& event);
// A worker's benchmark row (WorkerReport.bench), field for field.
BenchResult FromProtoBench(const foak::v1::BenchResult& bench);
void SetTimestamp(int64_t time_ms, google::protobuf::Timestamp* out);

}  // namespace foak

#endif  // FOAK_SERVER_TRANSPORT_JOB_CONVERT_H_

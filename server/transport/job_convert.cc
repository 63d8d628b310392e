#include "server/transport/job_convert.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace foak {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using Json = nlohmann::json;

Json MessageToJsonValue(const Message& message);

Json ScalarValue(const Message& m, const FieldDescriptor* f, int index) {
  const Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32:
      return rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64:
      return rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_BOOL:
      return rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_ENUM:
      return (rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f))->name();
    case FieldDescriptor::CPPTYPE_STRING:
      return rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return MessageToJsonValue(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
  }
  return nullptr;
}

Json MessageToJsonValue(const Message& message) {
  const std::string& type = message.GetDescriptor()->full_name();
  if (type == "google.protobuf.Value" || type == "google.protobuf.Struct" ||
      type == "google.protobuf.ListValue") {
    std::string text;
    if (!google::protobuf::util::MessageToJsonString(message, &text).ok()) return nullptr;
    return Json::parse(text, nullptr, /*allow_exceptions=*/false);
  }
  const Reflection* r = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  Json out = Json::object();
  for (const FieldDescriptor* f : fields) {
    if (f->is_map()) {
      Json map = Json::object();
      for (int i = 0; i < r->FieldSize(message, f); ++i) {
        const Message& entry = r->GetRepeatedMessage(message, f, i);
        const FieldDescriptor* key = entry.GetDescriptor()->map_key();
        const FieldDescriptor* value = entry.GetDescriptor()->map_value();
        // JSON object keys are strings; other key types print as their JSON text.
        const std::string name = key->cpp_type() == FieldDescriptor::CPPTYPE_STRING
                                     ? entry.GetReflection()->GetString(entry, key)
                                     : ScalarValue(entry, key, -1).dump();
        map[name] = ScalarValue(entry, value, -1);
      }
      out[f->name()] = map;
    } else if (f->is_repeated()) {
      Json list = Json::array();
      for (int i = 0; i < r->FieldSize(message, f); ++i) list.push_back(ScalarValue(message, f, i));
      out[f->name()] = list;
    } else {
      out[f->name()] = ScalarValue(message, f, -1);
    }
  }
  return out;
}

google::protobuf::util::JsonParseOptions Lenient() {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  return options;
}

template <typename T>
absl::Status ParseInto(const std::string& json, T* out) {
  auto status = google::protobuf::util::JsonStringToMessage(json, out, Lenient());
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("stored event does not parse: ", status.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

std::string JobSpecToJson(const Message& spec) { return MessageToJsonValue(spec).dump(); }

void SetTimestamp(int64_t time_ms, google::protobuf::Timestamp* out) {
  out->set_seconds(time_ms / 1000);
  out->set_nanos(static_cast<int32_t>((time_ms % 1000) * 1000000));
}

foak::v1::Job::State ToProtoState(JobState state) {
  switch (state) {
    case JobState::kQueued: return foak::v1::Job::QUEUED;
    case JobState::kStarting: return foak::v1::Job::STARTING;
    case JobState::kRunning: return foak::v1::Job::RUNNING;
    case JobState::kSucceeded: return foak::v1::Job::SUCCEEDED;
    case JobState::kFailed: return foak::v1::Job::FAILED;
    case JobState::kCancelling: return foak::v1::Job::CANCELLING;
    case JobState::kCancelled: return foak::v1::Job::CANCELLED;
  }
  return foak::v1::Job::STATE_UNSPECIFIED;
}

std::optional<JobState> FromProtoState(foak::v1::Job::State state) {
  if (state == foak::v1::Job::STATE_UNSPECIFIED) return std::nullopt;
  return JobStateFromName(foak::v1::Job::State_Name(state));
}

absl::StatusOr<foak::v1::Job> ToProtoJob(const JobView& view) {
  const JobRecord& r = view.record;
  foak::v1::Job job;
  job.set_id(r.id);
  auto status = google::protobuf::util::JsonStringToMessage(r.spec_json, job.mutable_spec());
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("job ", r.id, ": stored spec does not parse: ",
                                            status.ToString()));
  }
  job.set_state(ToProtoState(r.state));
  job.set_reason(r.reason);
  job.set_message(r.message);
  if (r.create_time_ms > 0) SetTimestamp(r.create_time_ms, job.mutable_create_time());
  if (r.update_time_ms > 0) SetTimestamp(r.update_time_ms, job.mutable_update_time());
  job.set_restarts(static_cast<int32_t>(r.restarts));
  job.set_request_id(r.request_id);
  job.set_output_dir(view.output_dir);
  if (view.progress.has_value()) {
    const JobProgressInfo& p = *view.progress;
    foak::v1::JobProgress* out = job.mutable_progress();
    out->set_step(p.step);
    out->set_max_steps(p.max_steps);
    out->set_loss(p.loss);
    out->set_learning_rate(p.learning_rate);
    out->set_tokens_per_second(p.tokens_per_second);
    out->set_peak_memory_bytes(p.peak_memory_bytes);
    out->set_elapsed_s(p.elapsed_s);
    if (p.eval_loss.has_value()) out->set_eval_loss(*p.eval_loss);
    for (int64_t bytes : p.rank_peak_memory_bytes) out->add_rank_peak_memory_bytes(bytes);
  }
  return job;
}

absl::StatusOr<foak::v1::JobEvent> ToProtoEvent(const JobEvent& e) {
  foak::v1::JobEvent out;
  out.set_job_id(e.job_id);
  out.set_seq(e.seq);
  SetTimestamp(e.time_ms, out.mutable_time());
  absl::Status status;
  if (e.kind == "state") {
    status = ParseInto(e.payload_json, out.mutable_state());
  } else if (e.kind == "metrics") {
    status = ParseInto(e.payload_json, out.mutable_metrics());
  } else if (e.kind == "eval") {
    status = ParseInto(e.payload_json, out.mutable_eval());
  } else if (e.kind == "checkpoint") {
    status = ParseInto(e.payload_json, out.mutable_checkpoint());
    if (status.ok()) SetTimestamp(e.time_ms, out.mutable_checkpoint()->mutable_time());
  } else if (e.kind == "log") {
    status = ParseInto(e.payload_json, out.mutable_log());
  } else if (e.kind == "bench") {
    status = ParseInto(e.payload_json, out.mutable_bench());
  } else {
    status = absl::InternalError(absl::StrCat("unknown event kind '", e.kind, "'"));
  }
  if (!status.ok()) return status;
  return out;
}

BenchResult FromProtoBench(const foak::v1::BenchResult& b) {
  BenchResult r;
  r.index = b.index();
  r.total = b.total();
  r.framework = b.framework();
  r.model = b.model();
  r.method = b.method();
  r.kernels = b.kernels();
  r.gpus = b.gpus();
  r.batch = b.batch();
  r.seq = b.seq();
  r.precision = b.precision();
  r.activation_checkpointing = b.activation_checkpointing();
  r.status = b.status();
  r.error = b.error();
  r.tokens_per_second = b.tokens_per_second();
  if (b.has_pct_change()) r.pct_change = b.pct_change();
  r.ms_per_step = b.ms_per_step();
  r.peak_allocated_bytes = b.peak_allocated_bytes();
  r.peak_reserved_bytes = b.peak_reserved_bytes();
  r.loss_first = b.loss_first();
  r.loss_last = b.loss_last();
  r.warmup_steps = b.warmup_steps();
  r.steps = b.steps();
  r.max_batch = b.max_batch();
  r.device = b.device();
  return r;
}

}  // namespace foak

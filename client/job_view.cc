#include "client/job_view.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/format.h"
#include "google/protobuf/descriptor.h"

namespace foak::client {
namespace {

using foak::v1::Job;

std::string StepCell(const foak::v1::JobProgress& p) {
  if (p.step() == 0 && p.max_steps() == 0) return "";
  return p.max_steps() > 0 ? absl::StrCat(p.step(), "/", p.max_steps()) : absl::StrCat(p.step());
}

// "learning_rate=0.0001 max_steps=160": the hyperparameters the spec sets.
std::string SetHyperparameters(const foak::v1::Hyperparameters& h) {
  std::vector<std::string> parts;
  const google::protobuf::Reflection* reflection = h.GetReflection();
  const google::protobuf::Descriptor* descriptor = h.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = descriptor->field(i);
    if (!reflection->HasField(h, f)) continue;
    std::string value;
    switch (f->cpp_type()) {
      case google::protobuf::FieldDescriptor::CPPTYPE_INT64:
        value = absl::StrCat(reflection->GetInt64(h, f));
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE:
        value = absl::StrFormat("%g", reflection->GetDouble(h, f));
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_BOOL:
        value = reflection->GetBool(h, f) ? "true" : "false";
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_STRING:
        value = reflection->GetString(h, f);
        break;
      default:
        continue;
    }
    parts.push_back(absl::StrCat(f->name(), "=", value));
  }
  return absl::StrJoin(parts, " ");
}

std::string MethodText(const foak::v1::JobSpec& spec) {
  std::string method = spec.method().empty() ? "full" : spec.method();
  if (spec.has_lora()) {
    std::vector<std::string> parts;
    if (spec.lora().has_r()) parts.push_back(absl::StrCat("r=", spec.lora().r()));
    if (spec.lora().has_alpha()) parts.push_back(absl::StrFormat("alpha=%g", spec.lora().alpha()));
    if (spec.lora().has_dropout()) {
      parts.push_back(absl::StrFormat("dropout=%g", spec.lora().dropout()));
    }
    if (!parts.empty()) absl::StrAppend(&method, " (", absl::StrJoin(parts, ", "), ")");
  }
  if (spec.method() == "qlora") {
    const foak::v1::QuantizationSpec& q = spec.quantization();
    const bool double_quant = !q.has_double_quant() || q.double_quant();
    absl::StrAppend(&method, ", base ", q.type().empty() ? "nf4" : q.type(),
                    double_quant ? " double-quantised" : "");
  }
  return method;
}

std::string TimeText(const google::protobuf::Timestamp& ts, absl::Time now, absl::TimeZone tz) {
  if (!IsSet(ts)) return "";
  return absl::StrCat(FormatTimestamp(ts, tz), " (", FormatAge(now - ToTime(ts)), " ago)");
}

// A benchmark job's settings: "kernel sets none | foak | all  batch 4,16  seq 2048 ...".
std::string BenchText(const foak::v1::BenchSpec& b) {
  std::string out = absl::StrCat("kernel sets ", b.kernel_sets().empty()
                                                     ? "none | foak | all"
                                                     : absl::StrJoin(b.kernel_sets(), " | "));
  if (!b.batch_sizes().empty()) {
    absl::StrAppend(&out, "  batch ", absl::StrJoin(b.batch_sizes(), ","));
  }
  if (!b.seq_lens().empty()) absl::StrAppend(&out, "  seq ", absl::StrJoin(b.seq_lens(), ","));
  if (b.has_warmup_steps()) absl::StrAppend(&out, "  warmup ", b.warmup_steps());
  if (b.has_steps()) absl::StrAppend(&out, "  steps ", b.steps());
  if (b.find_max_batch()) {
    absl::StrAppend(&out, "  find max batch");
    if (b.has_max_batch_limit()) absl::StrAppend(&out, " (up to ", b.max_batch_limit(), ")");
  }
  return out;
}

std::string ProgressText(const foak::v1::JobProgress& p, bool bench) {
  if (p.step() == 0 && p.max_steps() == 0) return "";
  if (bench) {  // rows done / planned and the newest row's figures
    std::string out = absl::StrCat("rows ", StepCell(p));
    if (p.tokens_per_second() > 0) {
      absl::StrAppend(&out, "  ", FormatThousands(std::llround(p.tokens_per_second())), " tok/s");
    }
    if (p.peak_memory_bytes() > 0) {
      absl::StrAppend(&out, "  mem ", FormatBytes(p.peak_memory_bytes()));
    }
    return out;
  }
  std::string out = absl::StrCat("step ", StepCell(p), "  loss ", FormatLoss(p.loss()));
  if (p.has_eval_loss()) absl::StrAppend(&out, "  eval_loss ", FormatLoss(p.eval_loss()));
  if (p.learning_rate() > 0) absl::StrAppend(&out, absl::StrFormat("  lr %.3g", p.learning_rate()));
  if (p.tokens_per_second() > 0) {
    absl::StrAppend(&out, "  ", FormatThousands(std::llround(p.tokens_per_second())), " tok/s");
  }
  if (p.peak_memory_bytes() > 0) absl::StrAppend(&out, "  mem ", FormatBytes(p.peak_memory_bytes()));
  if (p.elapsed_s() > 0) absl::StrAppend(&out, "  elapsed ", FormatEta(absl::Seconds(p.elapsed_s())));
  return out;
}

// A data-parallel job's peak memory per rank: "0: 1.2 GiB  1: 1.3 GiB".
std::string RankMemoryText(const foak::v1::JobProgress& p) {
  std::vector<std::string> parts;
  for (int rank = 0; rank < p.rank_peak_memory_bytes_size(); ++rank) {
    const int64_t bytes = p.rank_peak_memory_bytes(rank);
    parts.push_back(absl::StrCat(rank, ": ", bytes > 0 ? FormatBytes(bytes) : "-"));
  }
  return absl::StrJoin(parts, "  ");
}

}  // namespace

std::vector<std::string> JobTableHeader() {
  return {"ID", "NAME", "STATE", "STEP", "LOSS", "TOKENS/S", "AGE", "REASON"};
}

std::vector<std::string> JobTableRow(const Job& job, absl::Time now) {
  const foak::v1::JobProgress& p = job.progress();
  const bool has_progress = p.step() > 0 || p.max_steps() > 0;
  return {job.id(),
          job.spec().name(),
          StateName(job.state()),
          StepCell(p),  // a benchmark job: rows done/planned, no loss worth showing
          has_progress && p.step() > 0 && !job.spec().has_bench() ? FormatLoss(p.loss()) : "",
          p.tokens_per_second() > 0 ? FormatThousands(std::llround(p.tokens_per_second())) : "",
          IsSet(job.create_time()) ? FormatAge(now - ToTime(job.create_time())) : "",
          job.reason()};
}

std::string JobDetails(const Job& job, absl::Time now, absl::TimeZone tz) {
  const foak::v1::JobSpec& spec = job.spec();
  std::vector<std::pair<std::string, std::string>> rows;
  auto add = [&rows](const std::string& key, const std::string& value) {
    if (!value.empty()) rows.emplace_back(key, value);
  };
  add("ID", job.id());
  add("Name", spec.name());
  add("State", StateName(job.state()));
  add("Reason", job.reason());
  add("Message", job.message());
  add("Model", spec.model());
  add("Dataset", spec.dataset().train());
  add("Validation", spec.dataset().validation());
  if (spec.dataset().has_validation_split()) {
    add("Validation split", absl::StrFormat("%g", spec.dataset().validation_split()));
  }
  add("Format", spec.dataset().format());
  add("Method", MethodText(spec));
  if (spec.has_bench()) {
    add("Benchmark", BenchText(spec.bench()));
  } else {
    add("Kernels", spec.kernels().empty() ? "none (plain LibTorch)" : absl::StrJoin(spec.kernels(), ","));
  }
  add("Hyperparameters", SetHyperparameters(spec.hyperparameters()));
  add("GPUs", absl::StrCat(spec.resources().gpus()));
  if (spec.resources().processes() > 0) {
    add("Processes", absl::StrCat(spec.resources().processes()));
  }
  if (spec.resources().nodes() > 1) add("Nodes", absl::StrCat(spec.resources().nodes()));
  if (!spec.resources().node_selector().empty()) {
    const std::map<std::string, std::string> selector(spec.resources().node_selector().begin(),
                                                      spec.resources().node_selector().end());
    add("Node selector", absl::StrJoin(selector, ", ", absl::PairFormatter("=")));
  }
  if (!spec.resources().tolerations().empty()) {
    std::vector<std::string> tolerations;
    for (const foak::v1::Toleration& t : spec.resources().tolerations()) {
      std::string text = t.key().empty() ? "*" : t.key();
      if (t.operator_() != "Exists" && !t.value().empty()) absl::StrAppend(&text, "=", t.value());
      if (!t.effect().empty()) absl::StrAppend(&text, ":", t.effect());
      tolerations.push_back(std::move(text));
    }
    add("Tolerations", absl::StrJoin(tolerations, ", "));
  }
  if (!spec.resources().queue().empty()) add("Queue", spec.resources().queue());
  add("Priority", absl::StrCat(spec.priority()));
  add("Restarts", absl::StrCat(job.restarts(), "/", spec.max_restarts()));
  add("Output dir", job.output_dir().empty() ? spec.output_dir() : job.output_dir());
  const std::map<std::string, std::string> labels(spec.labels().begin(), spec.labels().end());
  add("Labels", absl::StrJoin(labels, ", ", absl::PairFormatter("=")));
  add("Created", TimeText(job.create_time(), now, tz));
  add("Updated", TimeText(job.update_time(), now, tz));
  add("Progress", ProgressText(job.progress(), spec.has_bench()));
  add("Memory by rank", RankMemoryText(job.progress()));
  add("Request id", job.request_id());

  size_t width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, key.size());
  std::string out;
  for (const auto& [key, value] : rows) {
    absl::StrAppend(&out, key, ":", std::string(width - key.size() + 2, ' '), value, "\n");
  }
  return out;
}

}  // namespace foak::client

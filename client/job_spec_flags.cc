#include "client/job_spec_flags.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/errors.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace foak::client {
namespace {

struct SpecFlag {
  const char* name;
  const char* value_name;
  const char* help;
  bool repeated;
};

// Every flag that fills a JobSpec field, in the order of the help.
constexpr SpecFlag kSpecFlags[] = {
    {"name", "NAME", "job name", false},
    {"model", "DIR", "Hugging Face model folder on foakd's host", false},
    {"train", "PATH|FILE_ID", "training data: a JSONL path or an uploaded file id", false},
    {"validation", "PATH|FILE_ID", "validation data (JSONL path or file id)", false},
    {"format", "FORMAT", "dataset format: auto|text|alpaca|prompt_completion|chat", false},
    {"method", "full|lora|qlora", "fine-tuning method (qlora: LoRA on an NF4 4-bit base)", false},
    {"lora-r", "N", "LoRA rank (implies --method lora when unset)", false},
    {"lora-alpha", "X", "LoRA alpha (implies --method lora when unset)", false},
    {"lora-dropout", "X", "LoRA dropout (implies --method lora when unset)", false},
    {"lora-target-modules", "all-linear|A,B",
     "projections LoRA adapts, e.g. q_proj,v_proj (implies --method lora when unset)", false},
    {"double-quant", "true|false",
     "qlora: quantise the NF4 block scales too (default true; implies --method qlora when "
     "unset)", false},
    {"learning-rate", "X", "peak learning rate", false},
    {"max-steps", "N", "optimizer steps (0 = from --epochs)", false},
    {"epochs", "X", "passes over the training data", false},
    {"batch-size", "N", "sequences per micro-batch", false},
    {"max-seq-len", "N", "longest sequence in tokens", false},
    {"precision", "bf16-mixed|bf16|fp32", "training precision (default bf16-mixed)", false},
    {"zero-stage", "0|1",
     "1 = shard the optimizer state across the job's ranks (ZeRO stage 1); default 0", false},
    {"kernels", "A,B", "FOAK fused ops (rms_norm,rope,swiglu,... or foak|all)", false},
    {"gpus", "N", "GPUs of one host (0 = CPU job); one worker process (rank) per GPU", false},
    {"processes", "N",
     "data-parallel worker processes of a CPU job (--gpus 0), 1 to 64 (default 1)", false},
    {"nodes", "N",
     "hosts the job spans, each with --gpus GPUs (default 1; > 1 needs foakd's Kubernetes "
     "launcher)", false},
    {"node-selector", "KEY=VALUE", "Kubernetes: run only on nodes with this label", true},
    {"toleration", "KEY[=VALUE][:EFFECT]",
     "Kubernetes: tolerate this taint (no VALUE = any value; no EFFECT = every effect)", true},
    {"queue", "NAME", "Kubernetes: submit through this Kueue LocalQueue", false},
    {"priority", "P", "higher runs first (default 0)", false},
    {"max-restarts", "N", "relaunches from the latest checkpoint before failing", false},
    {"stall-timeout", "SECONDS",
     "stop (then restart or fail) the job after this long without progress; -1 = never "
     "(default: foakd's --stall_timeout_s)", false},
    {"start-timeout", "SECONDS",
     "stop (then restart or fail) the job when its workers have not reported this long after "
     "a launch (pods that never start); -1 = never (default: foakd's --start_timeout_s)",
     false},
    {"on-nonfinite", "fail|skip",
     "a NaN or infinite loss or gradient fails the job (default) or skips that step", false},
    {"output-dir", "DIR", "where checkpoints and the final model go", false},
    {"label", "KEY=VALUE", "a label on the job", true},
};

constexpr const char* kLoraFlags[] = {"lora-r", "lora-alpha", "lora-dropout",
                                      "lora-target-modules"};

absl::StatusOr<int32_t> GetInt32(const FlagSet& flags, const std::string& name) {
  ASSIGN_OR_RETURN(const int64_t v, flags.GetInt(name, 0));
  if (v < INT32_MIN || v > INT32_MAX) {
    return UsageError(absl::StrCat("--", name, ": ", v, " is out of range"));
  }
  return static_cast<int32_t>(v);
}

// --lora-target-modules: "all-linear" stays a string, anything else is a list.
absl::Status SetTargetModules(const std::string& value, foak::v1::LoraSpec* lora) {
  google::protobuf::Value* out = lora->mutable_target_modules();
  if (absl::StripAsciiWhitespace(value) == "all-linear") {
    out->set_string_value("all-linear");
    return absl::OkStatus();
  }
  google::protobuf::ListValue* list = out->mutable_list_value();
  for (absl::string_view name : absl::StrSplit(value, ',')) {
    name = absl::StripAsciiWhitespace(name);
    if (name.empty()) {
      return UsageError(absl::StrCat("--lora-target-modules: '", value,
                                     "' has an empty name; give all-linear or projection names "
                                     "joined by ',' (q_proj,k_proj,v_proj,o_proj,gate_proj,"
                                     "up_proj,down_proj)"));
    }
    list->add_values()->set_string_value(std::string(name));
  }
  return absl::OkStatus();
}

}  // namespace

void AddJobSpecFlags(FlagSet* flags, const std::vector<std::string>& names) {
  for (const SpecFlag& f : kSpecFlags) {
    if (std::find(names.begin(), names.end(), f.name) == names.end()) continue;
    if (f.repeated) {
      flags->AddRepeated(f.name, 0, f.value_name, f.help);
    } else {
      flags->AddValue(f.name, 0, f.value_name, f.help);
    }
  }
}

void AddJobSpecFlags(FlagSet* flags) {
  std::vector<std::string> all;
  for (const SpecFlag& f : kSpecFlags) all.push_back(f.name);
  AddJobSpecFlags(flags, all);
}

bool AnyJobSpecFlagSet(const FlagSet& flags) {
  for (const SpecFlag& f : kSpecFlags) {
    if (flags.IsSet(f.name)) return true;
  }
  return false;
}

absl::Status ApplyJobSpecFlags(const FlagSet& flags, foak::v1::JobSpec* spec) {
  std::vector<std::string> all;
  for (const SpecFlag& f : kSpecFlags) all.push_back(f.name);
  return ApplyJobSpecFlags(flags, all, spec);
}

absl::Status ApplyJobSpecFlags(const FlagSet& flags, const std::vector<std::string>& names,
                               foak::v1::JobSpec* spec) {
  // Given on the command line and one of `names`.
  auto given = [&](const char* name) {
    return flags.IsSet(name) && std::find(names.begin(), names.end(), name) != names.end();
  };
  if (given("name")) spec->set_name(flags.Get("name"));
  if (given("model")) spec->set_model(flags.Get("model"));
  if (given("train")) spec->mutable_dataset()->set_train(flags.Get("train"));
  if (given("validation")) spec->mutable_dataset()->set_validation(flags.Get("validation"));
  if (given("format")) spec->mutable_dataset()->set_format(flags.Get("format"));
  if (given("method")) {
    const std::string method = absl::AsciiStrToLower(flags.Get("method"));
    if (method != "full" && method != "lora" && method != "qlora") {
      return UsageError(absl::StrCat("--method: '", flags.Get("method"),
                                     "' is not a method; use full, lora or qlora"));
    }
    spec->set_method(method);
  }
  if (given("lora-r")) {
    ASSIGN_OR_RETURN(const int64_t r, flags.GetInt("lora-r", 0));
    spec->mutable_lora()->set_r(r);
  }
  if (given("lora-alpha")) {
    ASSIGN_OR_RETURN(const double alpha, flags.GetDouble("lora-alpha", 0));
    spec->mutable_lora()->set_alpha(alpha);
  }
  if (given("lora-dropout")) {
    ASSIGN_OR_RETURN(const double dropout, flags.GetDouble("lora-dropout", 0));
    spec->mutable_lora()->set_dropout(dropout);
  }
  if (given("lora-target-modules")) {
    RETURN_IF_ERROR(SetTargetModules(flags.Get("lora-target-modules"), spec->mutable_lora()));
  }
  if (given("double-quant")) {
    const std::string value = absl::AsciiStrToLower(flags.Get("double-quant"));
    if (value != "true" && value != "false") {
      return UsageError(absl::StrCat("--double-quant: '", flags.Get("double-quant"),
                                     "'; use true or false"));
    }
    if (spec->method().empty()) spec->set_method("qlora");
    if (spec->method() != "qlora") {
      return UsageError(absl::StrCat("--double-quant: NF4 settings need --method qlora; the "
                                     "job's method is ", spec->method()));
    }
    spec->mutable_quantization()->set_double_quant(value == "true");
  }
  for (const char* lora_flag : kLoraFlags) {
    if (!given(lora_flag)) continue;
    if (spec->method().empty()) spec->set_method("lora");
    if (spec->method() != "lora" && spec->method() != "qlora") {
      return UsageError(absl::StrCat("--", lora_flag, ": LoRA settings need --method lora or "
                                     "qlora; the job's method is ", spec->method()));
    }
  }
  const bool had_hyperparameters = spec->has_hyperparameters();
  foak::v1::Hyperparameters* h = spec->mutable_hyperparameters();
  if (given("learning-rate")) {
    ASSIGN_OR_RETURN(const double v, flags.GetDouble("learning-rate", 0));
    h->set_learning_rate(v);
  }
  if (given("max-steps")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("max-steps", 0));
    h->set_max_steps(v);
  }
  if (given("epochs")) {
    ASSIGN_OR_RETURN(const double v, flags.GetDouble("epochs", 0));
    h->set_epochs(v);
  }
  if (given("batch-size")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("batch-size", 0));
    h->set_batch_size(v);
  }
  if (given("max-seq-len")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("max-seq-len", 0));
    h->set_max_seq_len(v);
  }
  if (given("precision")) {
    const std::string precision = flags.Get("precision");
    if (precision != "bf16-mixed" && precision != "bf16" && precision != "fp32") {
      return UsageError(absl::StrCat("--precision: '", precision,
                                     "' is not a precision; use bf16-mixed, bf16 or fp32"));
    }
    h->set_precision(precision);
  }
  if (given("zero-stage")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("zero-stage", 0));
    if (v != 0 && v != 1) {
      return UsageError(absl::StrCat("--zero-stage: ", v, "; use 0 (no sharding) or 1 (optimizer "
                                     "state sharded across ranks)"));
    }
    h->set_zero_stage(v);
  }
  if (given("on-nonfinite")) {
    const std::string policy = flags.Get("on-nonfinite");
    if (policy != "fail" && policy != "skip") {
      return UsageError(absl::StrCat("--on-nonfinite: '", policy, "'; use fail or skip"));
    }
    h->set_on_nonfinite(policy);
  }
  if (!had_hyperparameters && h->ByteSizeLong() == 0) spec->clear_hyperparameters();
  if (given("kernels")) {
    spec->clear_kernels();
    for (absl::string_view k : absl::StrSplit(flags.Get("kernels"), ',', absl::SkipWhitespace())) {
      spec->add_kernels(std::string(absl::StripAsciiWhitespace(k)));
    }
  }
  if (given("gpus")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "gpus"));
    spec->mutable_resources()->set_gpus(v);
  }
  if (given("processes")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "processes"));
    spec->mutable_resources()->set_processes(v);
  }
  if (given("nodes")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "nodes"));
    spec->mutable_resources()->set_nodes(v);
  }
  for (const std::string& selector : flags.GetAll("node-selector")) {
    const size_t eq = selector.find('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("--node-selector: '", selector,
                                     "' is not KEY=VALUE (a node label, e.g. "
                                     "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3)"));
    }
    (*spec->mutable_resources()->mutable_node_selector())[selector.substr(0, eq)] =
        selector.substr(eq + 1);
  }
  for (const std::string& text : flags.GetAll("toleration")) {
    // KEY[=VALUE][:EFFECT], as `kubectl taint` writes taints.
    foak::v1::Toleration* t = spec->mutable_resources()->add_tolerations();
    std::string rest = text;
    const size_t colon = rest.rfind(':');
    if (colon != std::string::npos) {
      t->set_effect(rest.substr(colon + 1));
      rest = rest.substr(0, colon);
    }
    const size_t eq = rest.find('=');
    if (eq != std::string::npos) {
      t->set_key(rest.substr(0, eq));
      t->set_operator_("Equal");
      t->set_value(rest.substr(eq + 1));
    } else {
      t->set_key(rest);
      t->set_operator_("Exists");
    }
    if (t->key().empty()) {
      return UsageError(absl::StrCat("--toleration: '", text, "' names no taint key; write "
                                     "KEY[=VALUE][:EFFECT], e.g. nvidia.com/gpu:NoSchedule"));
    }
  }
  if (given("queue")) spec->mutable_resources()->set_queue(flags.Get("queue"));
  if (given("priority")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "priority"));
    spec->set_priority(v);
  }
  if (given("max-restarts")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "max-restarts"));
    spec->set_max_restarts(v);
  }
  if (given("stall-timeout")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("stall-timeout", -1));
    spec->set_stall_timeout_s(v);
  }
  if (given("start-timeout")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("start-timeout", -1));
    spec->set_start_timeout_s(v);
  }
  if (given("output-dir")) spec->set_output_dir(flags.Get("output-dir"));
  if (given("label")) {
    for (const std::string& label : flags.GetAll("label")) {
      const size_t eq = label.find('=');
      if (eq == std::string::npos || eq == 0) {
        return UsageError(absl::StrCat("--label: '", label, "' is not KEY=VALUE"));
      }
      (*spec->mutable_labels())[label.substr(0, eq)] = label.substr(eq + 1);
    }
  }
  return absl::OkStatus();
}

bool IsUploadedFileId(absl::string_view value) {
  constexpr absl::string_view kPrefix = "file-";
  if (value.size() != kPrefix.size() + 16 || value.substr(0, kPrefix.size()) != kPrefix) return false;
  for (char c : value.substr(kPrefix.size())) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

std::string AbsoluteLocalPath(const std::string& path, const std::string& cwd) {
  if (path.empty() || path[0] == '/' || cwd.empty() || IsUploadedFileId(path)) return path;
  std::string rest = path;
  while (rest.rfind("./", 0) == 0) rest = rest.substr(2);
  if (rest.empty() || rest == ".") return cwd;
  return JoinPath(cwd, rest);
}

void MakeLocalPathsAbsolute(const std::string& cwd, foak::v1::JobSpec* spec) {
  if (!spec->model().empty()) spec->set_model(AbsoluteLocalPath(spec->model(), cwd));
  if (spec->has_dataset()) {
    foak::v1::DatasetSpec* d = spec->mutable_dataset();
    d->set_train(AbsoluteLocalPath(d->train(), cwd));
    d->set_validation(AbsoluteLocalPath(d->validation(), cwd));
  }
  spec->set_output_dir(AbsoluteLocalPath(spec->output_dir(), cwd));
  if (spec->has_resume_from_checkpoint() &&
      spec->resume_from_checkpoint().kind_case() == google::protobuf::Value::kStringValue) {
    const std::string& value = spec->resume_from_checkpoint().string_value();
    if (value != "latest" && value != "true" && value != "false") {
      spec->mutable_resume_from_checkpoint()->set_string_value(AbsoluteLocalPath(value, cwd));
    }
  }
}

std::string CurrentDirectory() {
  char buf[4096];
  if (::getcwd(buf, sizeof(buf)) == nullptr) return "";
  return buf;
}

}  // namespace foak::client

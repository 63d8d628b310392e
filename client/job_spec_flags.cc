#include "client/job_spec_flags.h"

#include <unistd.h>

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

// Every flag that fills a JobSpec field, for AnyJobSpecFlagSet.
const char* const kSpecFlags[] = {
    "name",       "model",        "train",          "validation", "format",  "method",
    "lora-r",     "lora-alpha",   "learning-rate",  "max-steps",  "epochs",  "batch-size",
    "max-seq-len", "kernels",     "gpus",           "priority",   "max-restarts",
    "output-dir", "label"};

absl::StatusOr<int32_t> GetInt32(const FlagSet& flags, const std::string& name) {
  ASSIGN_OR_RETURN(const int64_t v, flags.GetInt(name, 0));
  if (v < INT32_MIN || v > INT32_MAX) {
    return UsageError(absl::StrCat("--", name, ": ", v, " is out of range"));
  }
  return static_cast<int32_t>(v);
}

}  // namespace

void AddJobSpecFlags(FlagSet* flags) {
  flags->AddValue("name", 0, "NAME", "job name");
  flags->AddValue("model", 0, "DIR", "Hugging Face model folder on foakd's host");
  flags->AddValue("train", 0, "PATH|FILE_ID", "training data: a JSONL path or an uploaded file id");
  flags->AddValue("validation", 0, "PATH|FILE_ID", "validation data (JSONL path or file id)");
  flags->AddValue("format", 0, "FORMAT", "dataset format: auto|text|alpaca|prompt_completion|chat");
  flags->AddValue("method", 0, "full|lora", "fine-tuning method");
  flags->AddValue("lora-r", 0, "N", "LoRA rank (implies --method lora when unset)");
  flags->AddValue("lora-alpha", 0, "X", "LoRA alpha (implies --method lora when unset)");
  flags->AddValue("learning-rate", 0, "X", "peak learning rate");
  flags->AddValue("max-steps", 0, "N", "optimizer steps (0 = from --epochs)");
  flags->AddValue("epochs", 0, "X", "passes over the training data");
  flags->AddValue("batch-size", 0, "N", "sequences per micro-batch");
  flags->AddValue("max-seq-len", 0, "N", "longest sequence in tokens");
  flags->AddValue("kernels", 0, "A,B", "FOAK fused ops (rms_norm,rope,swiglu,... or foak|all)");
  flags->AddValue("gpus", 0, "N", "GPUs of one host (0 = CPU job)");
  flags->AddValue("priority", 0, "P", "higher runs first (default 0)");
  flags->AddValue("max-restarts", 0, "N", "relaunches from the latest checkpoint before failing");
  flags->AddValue("output-dir", 0, "DIR", "where checkpoints and the final model go");
  flags->AddRepeated("label", 0, "KEY=VALUE", "a label on the job");
}

bool AnyJobSpecFlagSet(const FlagSet& flags) {
  for (const char* name : kSpecFlags) {
    if (flags.IsSet(name)) return true;
  }
  return false;
}

absl::Status ApplyJobSpecFlags(const FlagSet& flags, foak::v1::JobSpec* spec) {
  if (flags.IsSet("name")) spec->set_name(flags.Get("name"));
  if (flags.IsSet("model")) spec->set_model(flags.Get("model"));
  if (flags.IsSet("train")) spec->mutable_dataset()->set_train(flags.Get("train"));
  if (flags.IsSet("validation")) spec->mutable_dataset()->set_validation(flags.Get("validation"));
  if (flags.IsSet("format")) spec->mutable_dataset()->set_format(flags.Get("format"));
  if (flags.IsSet("method")) {
    const std::string method = absl::AsciiStrToLower(flags.Get("method"));
    if (method != "full" && method != "lora") {
      return UsageError(absl::StrCat("--method: '", flags.Get("method"),
                                     "' is not a method; use full or lora"));
    }
    spec->set_method(method);
  }
  if (flags.IsSet("lora-r")) {
    ASSIGN_OR_RETURN(const int64_t r, flags.GetInt("lora-r", 0));
    spec->mutable_lora()->set_r(r);
  }
  if (flags.IsSet("lora-alpha")) {
    ASSIGN_OR_RETURN(const double alpha, flags.GetDouble("lora-alpha", 0));
    spec->mutable_lora()->set_alpha(alpha);
  }
  if ((flags.IsSet("lora-r") || flags.IsSet("lora-alpha")) && spec->method().empty()) {
    spec->set_method("lora");
  }
  const bool had_hyperparameters = spec->has_hyperparameters();
  foak::v1::Hyperparameters* h = spec->mutable_hyperparameters();
  if (flags.IsSet("learning-rate")) {
    ASSIGN_OR_RETURN(const double v, flags.GetDouble("learning-rate", 0));
    h->set_learning_rate(v);
  }
  if (flags.IsSet("max-steps")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("max-steps", 0));
    h->set_max_steps(v);
  }
  if (flags.IsSet("epochs")) {
    ASSIGN_OR_RETURN(const double v, flags.GetDouble("epochs", 0));
    h->set_epochs(v);
  }
  if (flags.IsSet("batch-size")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("batch-size", 0));
    h->set_batch_size(v);
  }
  if (flags.IsSet("max-seq-len")) {
    ASSIGN_OR_RETURN(const int64_t v, flags.GetInt("max-seq-len", 0));
    h->set_max_seq_len(v);
  }
  if (!had_hyperparameters && h->ByteSizeLong() == 0) spec->clear_hyperparameters();
  if (flags.IsSet("kernels")) {
    spec->clear_kernels();
    for (absl::string_view k : absl::StrSplit(flags.Get("kernels"), ',', absl::SkipWhitespace())) {
      spec->add_kernels(std::string(absl::StripAsciiWhitespace(k)));
    }
  }
  if (flags.IsSet("gpus")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "gpus"));
    spec->mutable_resources()->set_gpus(v);
  }
  if (flags.IsSet("priority")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "priority"));
    spec->set_priority(v);
  }
  if (flags.IsSet("max-restarts")) {
    ASSIGN_OR_RETURN(const int32_t v, GetInt32(flags, "max-restarts"));
    spec->set_max_restarts(v);
  }
  if (flags.IsSet("output-dir")) spec->set_output_dir(flags.Get("output-dir"));
  for (const std::string& label : flags.GetAll("label")) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("--label: '", label, "' is not KEY=VALUE"));
    }
    (*spec->mutable_labels())[label.substr(0, eq)] = label.substr(eq + 1);
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

#include "worker/train/job.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/data/chat_template.h"
#include "worker/data/record.h"

namespace foak {
namespace {

using Json = nlohmann::json;

// Reads the fields of one JSON object, remembering which keys were consumed so
// that the rest can be reported as unknown. Every error names
// "<source>: <path>.<key>".
class ObjectReader {
 public:
  ObjectReader(const Json& object, std::string source, std::string path)
      : object_(object), source_(std::move(source)), path_(std::move(path)) {}

  std::string FieldPath(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }
  absl::Status Error(const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", FieldPath(key), " ", what));
  }
  absl::Status BadValue(const std::string& key, const std::string& expected) const {
    return Error(key, absl::StrCat("= ", object_.at(key).dump(), "; expected ", expected));
  }

  // nullptr when absent (or JSON null, which protobuf's JSON mapping treats as unset).
  const Json* Get(const std::string& key) {
    known_.insert(key);
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::Status String(const std::string& key, std::string* out) {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return BadValue(key, "a string");
    *out = v->get<std::string>();
    return absl::OkStatus();
  }
  absl::Status Bool(const std::string& key, bool* out) {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return BadValue(key, "true or false");
    *out = v->get<bool>();
    return absl::OkStatus();
  }
  // An integer >= min.
  absl::Status Int(const std::string& key, int64_t min, int64_t* out) {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    const std::string expected = absl::StrCat("an integer >= ", min);
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        return BadValue(key, expected);
      }
      *out = v->get<int64_t>();
    } else if (v->is_number_float()) {
      // 60.0 is an integer written as a float: accept it, reject 1.5.
      const double d = v->get<double>();
      if (d != std::floor(d) || std::fabs(d) > 9.0e15) return BadValue(key, expected);
      *out = static_cast<int64_t>(d);
    } else {
      return BadValue(key, expected);
    }
    if (*out < min) return BadValue(key, expected);
    return absl::OkStatus();
  }
  // A finite number checked by `ok`, described by `expected`.
  absl::Status Number(const std::string& key, const std::function<bool(double)>& ok,
                      const std::string& expected, double* out) {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return BadValue(key, expected);
    const double d = v->get<double>();
    if (!std::isfinite(d) || !ok(d)) return BadValue(key, expected);
    *out = d;
    return absl::OkStatus();
  }
  // A string from `choices`, mapped through `parse` (whose error lists them).
  template <typename T, typename Parse>
  absl::Status Enum(const std::string& key, Parse parse, T* out) {
    const Json* v = Get(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return BadValue(key, "a string");
    absl::StatusOr<T> parsed = parse(v->get<std::string>());
    if (!parsed.ok()) return Error(key, absl::StrCat("= ", parsed.status().message()));
    *out = *parsed;
    return absl::OkStatus();
  }

  const std::string& source() const { return source_; }

  // Call after reading every known field.
  absl::Status CheckNoUnknownKeys() const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (known_.count(it.key()) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(source_, ": unknown key '", FieldPath(it.key()), "'; valid keys",
                         path_.empty() ? "" : absl::StrCat(" in ", path_), ": ",
                         absl::StrJoin(known_, ", ")));
      }
    }
    return absl::OkStatus();
  }

 private:
  const Json& object_;
  std::string source_;
  std::string path_;
  std::set<std::string> known_;
};

// Makes `path` absolute against the current directory ("./a" -> "<cwd>/a").
// POSIX getcwd rather than std::filesystem (see common/file_util.h).
std::string Absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  std::string rest = path;
  while (rest.rfind("./", 0) == 0) rest = rest.substr(2);
  char buf[4096];
  if (::getcwd(buf, sizeof(buf)) == nullptr) return path;
  return JoinPath(buf, rest);
}

absl::Status ParseHyperparameters(ObjectReader& r, Hyperparameters* h) {
  auto positive = [](double d) { return d > 0; };
  auto non_negative = [](double d) { return d >= 0; };
  auto unit = [](double d) { return d >= 0 && d <= 1; };
  auto beta = [](double d) { return d >= 0 && d < 1; };
  RETURN_IF_ERROR(r.Number("learning_rate", positive, "a number > 0", &h->learning_rate));
  RETURN_IF_ERROR(r.Int("max_steps", 0, &h->max_steps));
  RETURN_IF_ERROR(r.Number("epochs", positive, "a number > 0", &h->epochs));
  RETURN_IF_ERROR(r.Int("batch_size", 1, &h->batch_size));
  RETURN_IF_ERROR(r.Int("gradient_accumulation_steps", 1, &h->gradient_accumulation_steps));
  RETURN_IF_ERROR(r.Int("max_seq_len", 2, &h->max_seq_len));
  RETURN_IF_ERROR(r.Int("warmup_steps", 0, &h->warmup_steps));
  RETURN_IF_ERROR(r.Number("warmup_ratio", unit, "a number in [0, 1]", &h->warmup_ratio));
  RETURN_IF_ERROR(r.Enum("lr_scheduler", LrSchedulerTypeFromName, &h->lr_scheduler));
  RETURN_IF_ERROR(r.Number("min_lr_ratio", unit, "a number in [0, 1]", &h->min_lr_ratio));
  RETURN_IF_ERROR(r.Number("weight_decay", non_negative, "a number >= 0", &h->weight_decay));
  RETURN_IF_ERROR(r.Number("adam_beta1", beta, "a number in [0, 1)", &h->adam_beta1));
  RETURN_IF_ERROR(r.Number("adam_beta2", beta, "a number in [0, 1)", &h->adam_beta2));
  RETURN_IF_ERROR(r.Number("adam_epsilon", positive, "a number > 0", &h->adam_epsilon));
  RETURN_IF_ERROR(r.Number("max_grad_norm", non_negative, "a number >= 0 (0 disables clipping)",
                           &h->max_grad_norm));
  RETURN_IF_ERROR(r.Int("seed", 0, &h->seed));
  RETURN_IF_ERROR(r.Enum("precision", PrecisionFromName, &h->precision));
  RETURN_IF_ERROR(r.Bool("packing", &h->packing));
  RETURN_IF_ERROR(r.Int("logging_steps", 1, &h->logging_steps));
  RETURN_IF_ERROR(r.Int("save_steps", 0, &h->save_steps));
  RETURN_IF_ERROR(r.Int("save_total_limit", 0, &h->save_total_limit));
  RETURN_IF_ERROR(r.Int("max_shard_bytes", 1, &h->max_shard_bytes));
  RETURN_IF_ERROR(r.Int("eval_steps", 0, &h->eval_steps));
  RETURN_IF_ERROR(r.Int("eval_batch_size", 0, &h->eval_batch_size));
  RETURN_IF_ERROR(r.Bool("gradient_checkpointing", &h->gradient_checkpointing));
  RETURN_IF_ERROR(r.Int("ddp_timeout", 1, &h->ddp_timeout));
  RETURN_IF_ERROR(r.Int("ddp_bucket_cap_mb", 1, &h->ddp_bucket_cap_mb));
  RETURN_IF_ERROR(r.Int("zero_stage", 0, &h->zero_stage));
  if (const Json* v = r.Get("on_nonfinite"); v != nullptr) {
    if (!v->is_string() || (v->get<std::string>() != "fail" && v->get<std::string>() != "skip")) {
      return r.BadValue("on_nonfinite",
                        "\"fail\" (end the job at a NaN or infinite loss or gradient) or "
                        "\"skip\" (drop that step's update and go on)");
    }
    h->skip_nonfinite_steps = v->get<std::string>() == "skip";
  }
  RETURN_IF_ERROR(r.Int("max_consecutive_skips", 1, &h->max_consecutive_skips));
  if (h->zero_stage > 1) {
    return r.BadValue("zero_stage",
                      "0 (no sharding) or 1 (optimizer state sharded across ranks)");
  }
  return r.CheckNoUnknownKeys();
}

// A list of integers >= min (a single integer is taken as a list of one).
absl::Status IntList(ObjectReader& r, const std::string& key, int64_t min,
                     std::vector<int64_t>* out) {
  const Json* v = r.Get(key);
  if (v == nullptr) return absl::OkStatus();
  const std::string expected = absl::StrCat("a non-empty list of integers >= ", min);
  std::vector<Json> items;
  if (v->is_array()) {
    items.assign(v->begin(), v->end());
  } else {
    items.push_back(*v);
  }
  if (items.empty()) return r.BadValue(key, expected);
  out->clear();
  for (const Json& item : items) {
    if (!item.is_number_integer() || item.get<int64_t>() < min) return r.BadValue(key, expected);
    out->push_back(item.get<int64_t>());
  }
  return absl::OkStatus();
}

absl::Status ParseBench(ObjectReader& b, const Hyperparameters& h, BenchConfig* out) {
  out->enabled = true;
  if (const Json* sets = b.Get("kernel_sets"); sets != nullptr) {
    const char* expected =
        "a non-empty list of kernel sets, each a string: \"none\", \"foak\", \"all\" or op "
        "names joined by ',' (e.g. \"rms_norm,rope\")";
    if (!sets->is_array() || sets->empty()) return b.BadValue("kernel_sets", expected);
    for (const Json& s : *sets) {
      if (!s.is_string()) return b.BadValue("kernel_sets", expected);
      out->kernel_set_names.push_back(s.get<std::string>());
    }
  } else {
    out->kernel_set_names = {"none", "foak", "all"};
  }
  for (const std::string& name : out->kernel_set_names) {
    std::vector<std::string> names;
    if (name != "none") {
      for (absl::string_view part : absl::StrSplit(name, ',', absl::SkipWhitespace())) {
        names.emplace_back(absl::StripAsciiWhitespace(part));
      }
    }
    if (name != "none" && names.empty()) {
      return b.Error("kernel_sets", absl::StrCat("has an empty entry '", name,
                                                 "'; write \"none\" for plain LibTorch"));
    }
    absl::StatusOr<KernelSet> set = ParseKernelSet(names);
    if (!set.ok()) {
      return b.Error("kernel_sets", absl::StrCat("entry '", name, "': ", set.status().message()));
    }
    out->kernel_sets.push_back(*set);
  }
  out->batch_sizes = {h.batch_size};
  out->seq_lens = {h.max_seq_len};
  RETURN_IF_ERROR(IntList(b, "batch_sizes", 1, &out->batch_sizes));
  RETURN_IF_ERROR(IntList(b, "seq_lens", 2, &out->seq_lens));
  RETURN_IF_ERROR(b.Int("warmup_steps", 0, &out->warmup_steps));
  RETURN_IF_ERROR(b.Int("steps", 1, &out->steps));
  RETURN_IF_ERROR(b.Bool("find_max_batch", &out->find_max_batch));
  RETURN_IF_ERROR(b.Int("max_batch_limit", 1, &out->max_batch_limit));
  return b.CheckNoUnknownKeys();
}

absl::StatusOr<std::string> RequiredPath(ObjectReader& r, const std::string& key,
                                         const std::string& what) {
  std::string value;
  RETURN_IF_ERROR(r.String(key, &value));
  if (value.empty()) {
    return r.Error(key, absl::StrCat("is required: ", what));
  }
  return Absolute(value);
}

absl::Status ParseDataset(ObjectReader& d, DatasetConfig* out) {
  ASSIGN_OR_RETURN(out->train, RequiredPath(d, "train", "a JSONL file of training examples"));
  RETURN_IF_ERROR(d.String("validation", &out->validation));
  if (!out->validation.empty()) out->validation = Absolute(out->validation);
  RETURN_IF_ERROR(d.Number("validation_split", [](double x) { return x >= 0 && x < 1; },
                           "a number in [0, 1)", &out->validation_split));
  if (!out->validation.empty() && out->validation_split > 0) {
    return d.Error("validation_split", "is given together with dataset.validation; use one: a "
                                       "separate validation file or a fraction of train");
  }
  RETURN_IF_ERROR(d.String("format", &out->format));
  if (out->format.empty()) out->format = "auto";
  if (!ParseDataFormat(out->format).ok()) {
    return d.BadValue("format", "one of auto, text, alpaca, prompt_completion, chat");
  }
  if (const Json* t = d.Get("chat_template"); t != nullptr) {
    if (t->is_string()) {
      out->chat_template = t->get<std::string>();
      absl::StatusOr<ChatTemplate> builtin = BuiltinChatTemplate(out->chat_template);
      if (!builtin.ok()) return d.Error("chat_template", absl::StrCat("= ", builtin.status().message()));
    } else if (t->is_object()) {
      absl::StatusOr<ChatTemplate> custom = ParseChatTemplate(*t, d.FieldPath("chat_template"));
      if (!custom.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(d.source(), ": ", custom.status().message()));
      }
      out->chat_template_json = t->dump();
    } else {
      return d.BadValue("chat_template", "a template name (llama3, llama2, mistral, chatml, qwen2, "
                                         "granite, plain) or a custom template object");
    }
  }
  RETURN_IF_ERROR(d.Bool("train_on_prompt", &out->train_on_prompt));
  RETURN_IF_ERROR(d.Bool("instructions_as_chat", &out->instructions_as_chat));
  RETURN_IF_ERROR(d.Bool("skip_bad_lines", &out->skip_bad_lines));
  RETURN_IF_ERROR(d.Int("shuffle_buffer_size", 1, &out->shuffle_buffer_size));
  return d.CheckNoUnknownKeys();
}

absl::Status ParseLora(ObjectReader& l, LoraConfig* out) {
  RETURN_IF_ERROR(l.Int("r", 1, &out->r));
  RETURN_IF_ERROR(l.Number("alpha", [](double x) { return x > 0; }, "a number > 0", &out->alpha));
  RETURN_IF_ERROR(l.Number("dropout", [](double x) { return x >= 0 && x < 1; },
                           "a number in [0, 1)", &out->dropout));
  if (const Json* t = l.Get("target_modules"); t != nullptr) {
    const std::string expected = absl::StrCat(
        "\"all-linear\" or a list of ", absl::StrJoin(LoraTargetModuleNames(), ", "));
    out->target_modules.clear();
    if (t->is_string()) {
      out->target_modules.push_back(t->get<std::string>());
    } else if (t->is_array()) {
      for (const Json& name : *t) {
        if (!name.is_string()) return l.BadValue("target_modules", expected);
        out->target_modules.push_back(name.get<std::string>());
      }
    } else {
      return l.BadValue("target_modules", expected);
    }
  }
  RETURN_IF_ERROR(l.Bool("use_rslora", &out->use_rslora));
  RETURN_IF_ERROR(l.CheckNoUnknownKeys());
  if (absl::Status s = ValidateLoraConfig(*out); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(l.source(), ": lora: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ParseQuantization(ObjectReader& q, QuantizationConfig* out) {
  RETURN_IF_ERROR(q.String("type", &out->type));
  if (out->type.empty()) out->type = "nf4";
  if (out->type != "nf4") {
    return q.BadValue("type", "\"nf4\" (4-bit NormalFloat, the QLoRA format; bitsandbytes' "
                              "\"fp4\" is not implemented)");
  }
  RETURN_IF_ERROR(q.Bool("double_quant", &out->double_quant));
  return q.CheckNoUnknownKeys();
}

}  // namespace

int64_t JobConfig::WarmupSteps(int64_t max_steps) const {
  if (hyperparameters.warmup_steps > 0) return hyperparameters.warmup_steps;
  return static_cast<int64_t>(
      std::ceil(hyperparameters.warmup_ratio * static_cast<double>(max_steps)));
}

int64_t JobConfig::ResolveMaxSteps(int64_t micro_batches_per_epoch) const {
  const Hyperparameters& h = hyperparameters;
  if (h.max_steps > 0) return h.max_steps;
  const int64_t updates_per_epoch =
      std::max<int64_t>(1, micro_batches_per_epoch / h.gradient_accumulation_steps);
  return static_cast<int64_t>(std::ceil(h.epochs * static_cast<double>(updates_per_epoch)));
}

absl::StatusOr<JobConfig> ParseJobConfig(const std::string& json_text, const std::string& source) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a JSON object (see examples/demo_job.json), got ",
                     root.type_name()));
  }
  JobConfig job;
  ObjectReader r(root, source, "");
  RETURN_IF_ERROR(r.String("name", &job.name));
  ASSIGN_OR_RETURN(job.model, RequiredPath(r, "model", "the Hugging Face model folder "
                                                       "(config.json + safetensors)"));

  const Json* bench = r.Get("bench");
  const Json* dataset = r.Get("dataset");
  if (bench != nullptr) {
    if (!bench->is_object()) {
      return r.BadValue("bench", "an object like {\"kernel_sets\": [\"none\", \"foak\", \"all\"]}");
    }
    if (dataset != nullptr) {
      return r.Error("dataset", "is given but this is a benchmark job (\"bench\"), which trains "
                                "on random tokens; remove dataset, or remove bench to fine-tune");
    }
    job.bench.enabled = true;
  } else {
    if (dataset == nullptr) {
      return r.Error("dataset", "is required: {\"train\": \"FILE.jsonl\", \"format\": \"auto\"}");
    }
    if (!dataset->is_object()) return r.BadValue("dataset", "an object like {\"train\": \"FILE.jsonl\"}");
    ObjectReader d(*dataset, source, "dataset");
    RETURN_IF_ERROR(ParseDataset(d, &job.dataset));
  }

  RETURN_IF_ERROR(r.String("method", &job.method));
  if (job.method.empty()) job.method = "full";
  if (job.method != "full" && job.method != "lora" && job.method != "qlora") {
    return r.BadValue("method", "\"full\", \"lora\" or \"qlora\" (LoRA on an NF4 base)");
  }
  if (const Json* lora = r.Get("lora"); lora != nullptr) {
    if (!job.UsesLora()) {
      return r.Error("lora", "is given but method is \"full\"; set \"method\": \"lora\" (or "
                             "\"qlora\") or remove the lora object");
    }
    if (!lora->is_object()) return r.BadValue("lora", "an object like {\"r\": 8, \"alpha\": 16}");
    ObjectReader l(*lora, source, "lora");
    RETURN_IF_ERROR(ParseLora(l, &job.lora));
  }
  if (const Json* quantization = r.Get("quantization"); quantization != nullptr) {
    if (!job.Quantized()) {
      return r.Error("quantization", absl::StrCat(
          "is given but method is \"", job.method, "\"; it sets how \"method\": \"qlora\" "
          "holds the frozen base (a full fine-tune and plain LoRA keep it unquantised): set "
          "\"method\": \"qlora\" or remove the quantization object"));
    }
    if (!quantization->is_object()) {
      return r.BadValue("quantization",
                        "an object like {\"type\": \"nf4\", \"double_quant\": true}");
    }
    ObjectReader q(*quantization, source, "quantization");
    RETURN_IF_ERROR(ParseQuantization(q, &job.quantization));
  }
  RETURN_IF_ERROR(r.Bool("save_merged", &job.save_merged));
  if (job.save_merged && !job.UsesLora()) {
    return r.Error("save_merged", "is only meaningful with \"method\": \"lora\" or \"qlora\" "
                                  "(a full fine-tune's final/ is already a whole model)");
  }
  if (const Json* hp = r.Get("hyperparameters"); hp != nullptr) {
    if (!hp->is_object()) return r.BadValue("hyperparameters", "an object");
    ObjectReader h(*hp, source, "hyperparameters");
    RETURN_IF_ERROR(ParseHyperparameters(h, &job.hyperparameters));
  }
  ASSIGN_OR_RETURN(job.output_dir,
                   RequiredPath(r, "output_dir", "the folder for metrics.jsonl and checkpoints"));

  RETURN_IF_ERROR(r.String("device", &job.device));
  if (job.device.empty()) job.device = "auto";
  bool device_ok = job.device == "auto" || job.device == "cpu" || job.device == "cuda";
  if (!device_ok && job.device.rfind("cuda:", 0) == 0 && job.device.size() > 5 &&
      job.device.size() <= 8) {
    device_ok = job.device.find_first_not_of("0123456789", 5) == std::string::npos;
  }
  if (!device_ok) return r.BadValue("device", "one of auto, cpu, cuda, cuda:N");

  if (const Json* kernels = r.Get("kernels"); kernels != nullptr) {
    const char* expected =
        "a list of kernel names, e.g. [\"foak\"] or [\"rms_norm\", \"fused_linear_cross_entropy\"]";
    if (!kernels->is_array()) return r.BadValue("kernels", expected);
    std::vector<std::string> names;
    for (const Json& k : *kernels) {
      if (!k.is_string()) return r.BadValue("kernels", expected);
      names.push_back(k.get<std::string>());
    }
    absl::StatusOr<KernelSet> set = ParseKernelSet(names);
    if (!set.ok()) {
      return r.Error("kernels", absl::StrCat("= ", kernels->dump(), ": ", set.status().message()));
    }
    job.kernels = *set;
  }
  if (const Json* resume = r.Get("resume_from_checkpoint"); resume != nullptr) {
    if (resume->is_boolean()) {
      job.resume_from_checkpoint.mode =
          resume->get<bool>() ? ResumeFrom::Mode::kLatest : ResumeFrom::Mode::kNone;
    } else if (resume->is_string() && !resume->get<std::string>().empty()) {
      job.resume_from_checkpoint = ParseResumeFlag(resume->get<std::string>());
    } else {
      return r.BadValue("resume_from_checkpoint",
                        "false, true, \"latest\" or the path of a checkpoint-<step> folder");
    }
  }
  RETURN_IF_ERROR(r.Bool("resume_ignore_mismatch", &job.resume_ignore_mismatch));
  if (bench != nullptr) {
    ObjectReader b(*bench, source, "bench");
    RETURN_IF_ERROR(ParseBench(b, job.hyperparameters, &job.bench));
    if (job.resume_from_checkpoint.mode == ResumeFrom::Mode::kPath) {
      return r.Error("resume_from_checkpoint", "is a checkpoint path but a benchmark job "
                                               "starts from random weights; remove it");
    }
  }
  // The coordinator's fields (scheduling and bookkeeping; foakd validates
  // them, server/domain/job_spec.h): known here, so one document serves both.
  for (const char* key : {"resources", "priority", "max_restarts", "labels", "stall_timeout_s",
                          "start_timeout_s"}) {
    r.Get(key);
  }
  RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  return job;
}

ResumeFrom ParseResumeFlag(const std::string& value) {
  ResumeFrom resume;
  if (value == "latest" || value == "true") {
    resume.mode = ResumeFrom::Mode::kLatest;
  } else if (value.empty() || value == "false" || value == "none") {
    resume.mode = ResumeFrom::Mode::kNone;
  } else {
    resume.mode = ResumeFrom::Mode::kPath;
    resume.path = Absolute(value);
    while (resume.path.size() > 1 && resume.path.back() == '/') resume.path.pop_back();
  }
  return resume;
}

int64_t BenchConfig::PlannedRows() const {
  const int64_t sets = static_cast<int64_t>(kernel_sets.size());
  const int64_t seqs = static_cast<int64_t>(seq_lens.size());
  return seqs * sets * static_cast<int64_t>(batch_sizes.size()) + (find_max_batch ? seqs * sets : 0);
}

std::string HyperparametersToJson(const Hyperparameters& h) {
  nlohmann::ordered_json j;
  j["learning_rate"] = h.learning_rate;
  j["max_steps"] = h.max_steps;
  j["epochs"] = h.epochs;
  j["batch_size"] = h.batch_size;
  j["gradient_accumulation_steps"] = h.gradient_accumulation_steps;
  j["max_seq_len"] = h.max_seq_len;
  j["warmup_steps"] = h.warmup_steps;
  j["warmup_ratio"] = h.warmup_ratio;
  j["lr_scheduler"] = LrSchedulerTypeName(h.lr_scheduler);
  j["min_lr_ratio"] = h.min_lr_ratio;
  j["weight_decay"] = h.weight_decay;
  j["adam_beta1"] = h.adam_beta1;
  j["adam_beta2"] = h.adam_beta2;
  j["adam_epsilon"] = h.adam_epsilon;
  j["max_grad_norm"] = h.max_grad_norm;
  j["seed"] = h.seed;
  j["precision"] = PrecisionName(h.precision);
  j["packing"] = h.packing;
  j["logging_steps"] = h.logging_steps;
  j["save_steps"] = h.save_steps;
  j["save_total_limit"] = h.save_total_limit;
  j["max_shard_bytes"] = h.max_shard_bytes;
  j["eval_steps"] = h.eval_steps;
  j["eval_batch_size"] = h.eval_batch_size;
  return j.dump();
}

std::string DatasetOptionsToJson(const DatasetConfig& d) {
  nlohmann::ordered_json j;
  j["validation_split"] = d.validation_split;
  j["format"] = d.format;
  j["chat_template"] = d.chat_template_json.empty() ? nlohmann::ordered_json(d.chat_template)
                                                    : nlohmann::ordered_json::parse(d.chat_template_json);
  j["train_on_prompt"] = d.train_on_prompt;
  j["instructions_as_chat"] = d.instructions_as_chat;
  j["skip_bad_lines"] = d.skip_bad_lines;
  j["shuffle_buffer_size"] = d.shuffle_buffer_size;
  return j.dump();
}

std::string LoraToJson(const JobConfig& job) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!job.UsesLora()) return j.dump();
  j["r"] = job.lora.r;
  j["alpha"] = job.lora.alpha;
  j["dropout"] = job.lora.dropout;
  j["target_modules"] = job.lora.target_modules;
  j["use_rslora"] = job.lora.use_rslora;
  return j.dump();
}

std::string QuantizationToJson(const JobConfig& job) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!job.Quantized()) return j.dump();
  j["type"] = job.quantization.type;
  j["double_quant"] = job.quantization.double_quant;
  return j.dump();
}

absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseJobConfig(text, path);
}

}  // namespace foak

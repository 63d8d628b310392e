#include "server/domain/job_spec.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/domain/path_confinement.h"
#include "worker/train/job.h"

namespace foak {
namespace {

using Json = nlohmann::json;

constexpr char kSource[] = "spec";
// Stands in for output_dir while validating a spec that leaves it to foakd.
constexpr char kPlaceholderOutputDir[] = "/foakd-assigns-output-dir";

absl::Status FieldError(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(kSource, ": ", path, " ", what));
}

absl::Status BadValue(const std::string& path, const Json& value, const std::string& expected) {
  return FieldError(path, absl::StrCat("= ", value.dump(), "; expected ", expected));
}

// An integer in [lo, hi] (protobuf's JSON mapping may send int64 as a string);
// `expected` replaces "an integer from lo to hi" in the error when given.
absl::StatusOr<int64_t> IntField(const Json& value, const std::string& path, int64_t lo,
                                 int64_t hi, std::string expected = "") {
  if (expected.empty()) expected = absl::StrCat("an integer from ", lo, " to ", hi);
  int64_t v = 0;
  if (value.is_number_integer()) {
    // An unsigned value above INT64_MAX would wrap to a negative one in range.
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return BadValue(path, value, expected);
    }
    v = value.get<int64_t>();
  } else if (value.is_string()) {
    try {
      size_t used = 0;
      v = std::stoll(value.get<std::string>(), &used);
      if (used != value.get<std::string>().size()) return BadValue(path, value, expected);
    } catch (...) {
      return BadValue(path, value, expected);
    }
  } else {
    return BadValue(path, value, expected);
  }
  if (v < lo || v > hi) return BadValue(path, value, expected);
  return v;
}

bool LabelKeyOk(const std::string& key) {
  if (key.empty() || key.size() > 63) return false;
  for (char c : key) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
          c == '_' || c == '.' || c == '-' || c == '/')) {
      return false;
    }
  }
  return true;
}

absl::Status CheckAbsoluteFile(const std::string& path, const std::string& field, bool folder) {
  if (path.empty() || path[0] != '/') {
    return FieldError(field, absl::StrCat(
        "= '", path, "' is not an absolute path; foakd reads it on its own host, so give the "
        "absolute path there", folder ? "" : ", or upload the file (foakctl upload) and give its "
        "file id"));
  }
  if (folder) {
    if (access(JoinPath(path, "config.json").c_str(), R_OK) != 0) {
      return FieldError(field, absl::StrCat("= '", path, "' has no readable config.json on the "
                                            "coordinator's host; expected a Hugging Face model "
                                            "folder (config.json + safetensors)"));
    }
  } else if (access(path.c_str(), R_OK) != 0) {
    return FieldError(field, absl::StrCat("= '", path, "' is not a readable file on the "
                                          "coordinator's host"));
  }
  return absl::OkStatus();
}

// Replaces an uploaded file's id by its path (or checks a path) at `key` of
// the dataset object.
absl::Status ResolveDatasetFile(Json& dataset, const std::string& key, bool required,
                                const JobSpecContext& context, std::vector<std::string>* ids) {
  const std::string path = absl::StrCat("dataset.", key);
  auto it = dataset.find(key);
  if (it == dataset.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty())) {
    if (required) return FieldError(path, "is required: a JSONL file path or an uploaded file id");
    return absl::OkStatus();
  }
  if (!it->is_string()) return BadValue(path, *it, "a string (a path or a file id)");
  const std::string value = it->get<std::string>();
  if (IsFileId(value)) {
    if (!context.resolve_file) return FieldError(path, "names an uploaded file, but this foakd keeps none");
    absl::StatusOr<std::string> resolved = context.resolve_file(value);
    if (!resolved.ok()) {
      return FieldError(path, absl::StrCat("= '", value, "': no such uploaded file (foakctl files "
                                           "lists them)"));
    }
    if (ids != nullptr) ids->push_back(value);
    *it = *resolved;
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(CheckAbsoluteFile(value, path, /*folder=*/false));
  return ConfineSpecPath(&*it, path, /*may_not_exist=*/false, context.policy.data_roots,
                         "--data_roots", context.policy);
}

// Checks the coordinator's fields, removing them from `root`.
// A Kubernetes label value or nodeSelector value: at most 63 characters of
// alphanumerics, '-', '_', '.', beginning and ending with an alphanumeric
// (or empty).
bool KubeLabelValueOk(const std::string& v) {
  if (v.size() > 63) return false;
  for (char c : v) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return v.empty() || (std::isalnum(static_cast<unsigned char>(v.front())) &&
                       std::isalnum(static_cast<unsigned char>(v.back())));
}

// A Kubernetes label key: an optional DNS-subdomain prefix and '/', then a
// name as KubeLabelValueOk (not empty).
bool KubeLabelKeyOk(const std::string& key) {
  const size_t slash = key.rfind('/');
  const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
  if (name.empty() || !KubeLabelValueOk(name)) return false;
  if (slash == std::string::npos) return true;
  const std::string prefix = key.substr(0, slash);
  if (prefix.empty() || prefix.size() > 253) return false;
  for (char c : prefix) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
          c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::string> StringField(const Json& value, const std::string& path,
                                        const std::string& expected) {
  if (!value.is_string()) return BadValue(path, value, expected);
  return value.get<std::string>();
}

absl::Status TakeToleration(const Json& t, const std::string& path, Toleration* out) {
  if (!t.is_object()) return BadValue(path, t, "an object like {\"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}");
  for (auto f = t.begin(); f != t.end(); ++f) {
    const std::string& k = f.key();
    if (k != "key" && k != "operator" && k != "value" && k != "effect" && k != "toleration_seconds") {
      return FieldError(absl::StrCat(path, ".", k), "is unknown; valid keys: key, operator, value, "
                                                    "effect, toleration_seconds");
    }
  }
  if (auto k = t.find("key"); k != t.end() && !k->is_null()) {
    ASSIGN_OR_RETURN(out->key, StringField(*k, path + ".key", "a taint key (a string)"));
    if (!out->key.empty() && !KubeLabelKeyOk(out->key)) {
      return BadValue(path + ".key", *k, "a Kubernetes label key such as nvidia.com/gpu");
    }
  }
  if (auto o = t.find("operator"); o != t.end() && !o->is_null()) {
    ASSIGN_OR_RETURN(out->op, StringField(*o, path + ".operator", "\"Equal\" or \"Exists\""));
    if (out->op.empty()) out->op = "Equal";
    if (out->op != "Equal" && out->op != "Exists") {
      return BadValue(path + ".operator", *o, "\"Equal\" or \"Exists\"");
    }
  }
  if (auto v = t.find("value"); v != t.end() && !v->is_null()) {
    ASSIGN_OR_RETURN(out->value, StringField(*v, path + ".value", "a string"));
    if (!KubeLabelValueOk(out->value)) {
      return BadValue(path + ".value", *v, "a Kubernetes label value (up to 63 of a-z A-Z 0-9 - _ .)");
    }
  }
  if (out->op == "Exists" && !out->value.empty()) {
    return FieldError(path + ".value", absl::StrCat("= \"", out->value, "\" but operator is "
                                                    "Exists; leave value empty or use Equal"));
  }
  if (out->op == "Equal" && out->key.empty()) {
    return FieldError(path + ".key", "is empty with operator Equal; name the taint's key, or "
                                     "use operator Exists to tolerate every taint");
  }
  if (auto e = t.find("effect"); e != t.end() && !e->is_null()) {
    ASSIGN_OR_RETURN(out->effect, StringField(*e, path + ".effect", "a taint effect"));
    if (!out->effect.empty() && out->effect != "NoSchedule" && out->effect != "PreferNoSchedule" &&
        out->effect != "NoExecute") {
      return BadValue(path + ".effect", *e, "\"\" (all), NoSchedule, PreferNoSchedule or NoExecute");
    }
  }
  if (auto s = t.find("toleration_seconds"); s != t.end() && !s->is_null()) {
    ASSIGN_OR_RETURN(int64_t seconds, IntField(*s, path + ".toleration_seconds", 0,
                                               int64_t{1} << 40));
    if (out->effect != "NoExecute") {
      return FieldError(path + ".toleration_seconds", "applies to effect NoExecute only");
    }
    out->toleration_seconds = seconds;
  }
  return absl::OkStatus();
}

// Checks the coordinator's fields, removing them from `root`.
absl::Status TakeCoordinatorFields(Json& root, const JobSpecContext& context,
                                   PreparedJobSpec* out) {
  int64_t processes = 0;  // as given; 0 = unset
  if (auto it = root.find("resources"); it != root.end()) {
    if (!it->is_null()) {
      if (!it->is_object()) return BadValue("resources", *it, "an object like {\"gpus\": 1}");
      for (auto f = it->begin(); f != it->end(); ++f) {
        const std::string& k = f.key();
        if (k != "gpus" && k != "processes" && k != "nodes" && k != "node_selector" &&
            k != "tolerations" && k != "queue") {
          return FieldError(absl::StrCat("resources.", k),
                            "is unknown; valid keys in resources: gpus, processes, nodes, "
                            "node_selector, tolerations, queue");
        }
      }
      if (auto g = it->find("gpus"); g != it->end() && !g->is_null()) {
        ASSIGN_OR_RETURN(out->gpus, IntField(*g, "resources.gpus", 0, 1024));
      }
      if (auto p = it->find("processes"); p != it->end() && !p->is_null()) {
        ASSIGN_OR_RETURN(processes, IntField(*p, "resources.processes", 0, kMaxProcesses,
                                             absl::StrCat("an integer from 1 to ", kMaxProcesses,
                                                          " (0 or unset = 1)")));
      }
      if (auto n = it->find("nodes"); n != it->end() && !n->is_null()) {
        ASSIGN_OR_RETURN(out->nodes, IntField(*n, "resources.nodes", 0, kMaxNodes,
                                              absl::StrCat("an integer from 1 to ", kMaxNodes,
                                                           " (0 or unset = 1)")));
        out->nodes = std::max<int64_t>(out->nodes, 1);
      }
      if (auto ns = it->find("node_selector"); ns != it->end() && !ns->is_null()) {
        if (!ns->is_object()) {
          return BadValue("resources.node_selector", *ns, "an object of node labels to values");
        }
        for (auto l = ns->begin(); l != ns->end(); ++l) {
          const std::string path = absl::StrCat("resources.node_selector.", l.key());
          if (!KubeLabelKeyOk(l.key())) {
            return FieldError(path, "is not a Kubernetes label key (an optional DNS prefix and "
                                    "'/', then up to 63 of a-z A-Z 0-9 - _ .)");
          }
          if (!l->is_string() || !KubeLabelValueOk(l->get<std::string>())) {
            return BadValue(path, *l, "a Kubernetes label value (up to 63 of a-z A-Z 0-9 - _ .)");
          }
          out->node_selector[l.key()] = l->get<std::string>();
        }
      }
      if (auto ts = it->find("tolerations"); ts != it->end() && !ts->is_null()) {
        if (!ts->is_array()) return BadValue("resources.tolerations", *ts, "a list of tolerations");
        for (size_t i = 0; i < ts->size(); ++i) {
          Toleration t;
          RETURN_IF_ERROR(TakeToleration((*ts)[i], absl::StrCat("resources.tolerations[", i, "]"), &t));
          out->tolerations.push_back(std::move(t));
        }
      }
      if (auto q = it->find("queue"); q != it->end() && !q->is_null()) {
        ASSIGN_OR_RETURN(out->queue, StringField(*q, "resources.queue", "a Kueue LocalQueue name"));
        if (!out->queue.empty() && !KubeLabelValueOk(out->queue)) {
          return BadValue("resources.queue", *q, "a Kueue LocalQueue name (up to 63 of a-z 0-9 - .)");
        }
      }
    }
    root.erase(it);
  }
  // A GPU job runs one rank per GPU; processes could only restate that.
  if (out->gpus > 0 && processes > 0 && processes != out->gpus) {
    return FieldError("resources.processes", absl::StrCat(
        "= ", processes, " but resources.gpus = ", out->gpus, "; a GPU job runs one rank per "
        "GPU, so leave processes unset or set it to ", out->gpus,
        " (processes is for CPU jobs, gpus = 0)"));
  }
  out->processes = out->gpus > 0 ? out->gpus : std::max<int64_t>(processes, 1);
  if (!context.cluster) {
    // The local launcher runs a job on this host: one node, its GPUs, and no
    // Kubernetes placement.
    const char* kube_only = out->nodes > 1                ? "resources.nodes > 1"
                            : !out->node_selector.empty() ? "resources.node_selector"
                            : !out->tolerations.empty()   ? "resources.tolerations"
                            : !out->queue.empty()         ? "resources.queue"
                                                          : nullptr;
    if (kube_only != nullptr) {
      return FieldError(kube_only, "needs foakd's Kubernetes launcher (foakd --launcher "
                                   "kubernetes); this foakd runs jobs on its own host, so leave "
                                   "it unset");
    }
    if (out->gpus > context.total_gpus) {
      return absl::ResourceExhaustedError(absl::StrCat(
          kSource, ": resources.gpus = ", out->gpus, " but this foakd has ", context.total_gpus,
          " GPU(s) in all, so the job could never start; ask for at most ", context.total_gpus,
          context.total_gpus == 0 ? " (0 = a CPU job)" : ""));
    }
  }
  if (auto it = root.find("priority"); it != root.end()) {
    if (!it->is_null()) {
      ASSIGN_OR_RETURN(out->priority, IntField(*it, "priority", -kMaxPriority, kMaxPriority));
    }
    root.erase(it);
  }
  if (auto it = root.find("max_restarts"); it != root.end()) {
    if (!it->is_null()) {
      ASSIGN_OR_RETURN(out->max_restarts, IntField(*it, "max_restarts", 0, kMaxRestartsLimit));
    }
    root.erase(it);
  }
  if (auto it = root.find("stall_timeout_s"); it != root.end()) {
    if (!it->is_null()) {
      ASSIGN_OR_RETURN(out->stall_timeout_s,
                       IntField(*it, "stall_timeout_s", -1, kMaxStallTimeoutS,
                                absl::StrCat("seconds from 1 to ", kMaxStallTimeoutS,
                                             ", 0 (foakd's --stall_timeout_s) or -1 (never)")));
    }
    root.erase(it);
  }
  if (auto it = root.find("start_timeout_s"); it != root.end()) {
    if (!it->is_null()) {
      ASSIGN_OR_RETURN(out->start_timeout_s,
                       IntField(*it, "start_timeout_s", -1, kMaxStartTimeoutS,
                                absl::StrCat("seconds from 1 to ", kMaxStartTimeoutS,
                                             " (a week), 0 (foakd's --start_timeout_s) or -1 "
                                             "(never)")));
    }
    root.erase(it);
  }
  if (auto it = root.find("labels"); it != root.end()) {
    if (!it->is_null()) {
      if (!it->is_object()) return BadValue("labels", *it, "an object of string values");
      if (it->size() > kMaxLabels) {
        return FieldError("labels", absl::StrCat("has ", it->size(), " entries; at most ", kMaxLabels));
      }
      for (auto l = it->begin(); l != it->end(); ++l) {
        if (!LabelKeyOk(l.key())) {
          return FieldError("labels", absl::StrCat(
              "key '", l.key(), "' is invalid; expected 1 to 63 characters of a-z, 0-9, _ . - /"));
        }
        if (!l->is_string() || l->get<std::string>().size() > 256) {
          return BadValue(absl::StrCat("labels.", l.key()), *l, "a string of at most 256 characters");
        }
        out->labels[l.key()] = l->get<std::string>();
      }
    }
    root.erase(it);
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> ParseObject(const std::string& spec_json) {
  Json root;
  try {
    root = Json::parse(spec_json);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(kSource, ": invalid JSON: ", e.what()));
  }
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(kSource, ": expected an object"));
  return root;
}

// The common part of validation and launch: the spec without the
// coordinator's fields, paths checked and file ids resolved.
absl::StatusOr<Json> WorkerView(const std::string& spec_json, const JobSpecContext& context,
                                PreparedJobSpec* prepared) {
  ASSIGN_OR_RETURN(Json root, ParseObject(spec_json));
  RETURN_IF_ERROR(TakeCoordinatorFields(root, context, prepared));
  if (auto it = root.find("device"); it != root.end() && !it->is_null()) {
    if (!it->is_string() || (!it->get<std::string>().empty() && it->get<std::string>() != "auto")) {
      return BadValue("device", *it, "empty or \"auto\": foakd picks the device from "
                                     "resources.gpus (0 = CPU)");
    }
  }
  auto model = root.find("model");
  if (model == root.end() || !model->is_string() || model->get<std::string>().empty()) {
    return FieldError("model", "is required: the absolute path of a Hugging Face model folder on "
                               "the coordinator's host");
  }
  RETURN_IF_ERROR(CheckAbsoluteFile(model->get<std::string>(), "model", /*folder=*/true));
  const std::string given_model = model->get<std::string>();
  std::string real_model;
  RETURN_IF_ERROR(ConfineSpecPath(&*model, "model", /*may_not_exist=*/false,
                                  context.policy.model_roots, "--model_roots", context.policy,
                                  &real_model));
  if (!real_model.empty()) {
    absl::Status entries = ConfineFolderEntries(real_model, context.policy.model_roots, "--model_roots");
    if (!entries.ok()) {
      return FieldError("model", absl::StrCat("= '", given_model, "' ", entries.message()));
    }
  }
  // A benchmark job trains on random tokens: no dataset to resolve. One that
  // names a dataset anyway goes to the worker's parser as it is, which refuses
  // it saying why (so does an ill-formed bench object).
  const auto bench = root.find("bench");
  if (bench == root.end() || bench->is_null()) {
    auto dataset = root.find("dataset");
    if (dataset == root.end() || !dataset->is_object()) {
      return FieldError("dataset", "is required: {\"train\": PATH or FILE_ID, \"validation\": ...}"
                                   " (or a \"bench\" object for a benchmark job)");
    }
    std::vector<std::string>* ids = prepared != nullptr ? &prepared->file_ids : nullptr;
    RETURN_IF_ERROR(ResolveDatasetFile(*dataset, "train", true, context, ids));
    RETURN_IF_ERROR(ResolveDatasetFile(*dataset, "validation", false, context, ids));
  }
  if (auto it = root.find("output_dir"); it != root.end() && !it->is_null()) {
    if (!it->is_string()) return BadValue("output_dir", *it, "an absolute folder path");
    const std::string dir = it->get<std::string>();
    if (!dir.empty() && dir[0] != '/') {
      return FieldError("output_dir", absl::StrCat("= '", dir, "' is not absolute; give an absolute "
                                                   "folder on the coordinator's host, or leave it "
                                                   "empty for foakd's own"));
    }
    std::string real;
    if (!dir.empty()) {
      RETURN_IF_ERROR(ConfineSpecPath(&*it, "output_dir", /*may_not_exist=*/true,
                                      context.policy.output_roots, "--output_roots", context.policy,
                                      &real));
    }
    if (prepared != nullptr) {
      prepared->output_dir = dir;
      prepared->resolved_output_dir = real;
    }
  }
  RETURN_IF_ERROR(ConfineResumePath(root, context.policy, context.jobs_dir));
  return root;
}

}  // namespace

bool IsFileId(const std::string& value) {
  if (value.size() != 21 || value.rfind("file-", 0) != 0) return false;
  for (size_t i = 5; i < value.size(); ++i) {
    if (!std::isxdigit(static_cast<unsigned char>(value[i])) ||
        std::isupper(static_cast<unsigned char>(value[i]))) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<PreparedJobSpec> PrepareJobSpec(const std::string& spec_json,
                                               const JobSpecContext& context) {
  PreparedJobSpec prepared;
  ASSIGN_OR_RETURN(Json worker, WorkerView(spec_json, context, &prepared));
  if (prepared.output_dir.empty()) worker["output_dir"] = kPlaceholderOutputDir;
  worker["device"] = prepared.gpus > 0 ? "cuda" : "cpu";
  // Everything the worker reads, checked by the worker's own parser, then
  // against the operator's size limits.
  ASSIGN_OR_RETURN(JobConfig job, ParseJobConfig(worker.dump(), kSource));
  RETURN_IF_ERROR(CheckJobSize(job, prepared.gpus, prepared.nodes, context.policy));
  ASSIGN_OR_RETURN(Json stored, ParseObject(spec_json));
  prepared.spec_json = stored.dump();
  return prepared;
}

absl::StatusOr<PreparedJobSpec> CoordinatorFields(const std::string& spec_json,
                                                  const JobSpecContext& context) {
  PreparedJobSpec prepared;
  ASSIGN_OR_RETURN(Json root, ParseObject(spec_json));
  RETURN_IF_ERROR(TakeCoordinatorFields(root, context, &prepared));
  return prepared;
}

absl::StatusOr<std::string> WorkerJobJson(const std::string& spec_json,
                                          const WorkerLaunchSettings& settings,
                                          const JobSpecContext& context) {
  PreparedJobSpec prepared;
  ASSIGN_OR_RETURN(Json worker, WorkerView(spec_json, context, &prepared));
  // The user's output_dir as checked against output_roots just now.
  const std::string output_dir =
      !prepared.resolved_output_dir.empty() && settings.output_dir == prepared.output_dir
          ? prepared.resolved_output_dir
          : settings.output_dir;
  worker["output_dir"] = output_dir;
  worker["device"] = settings.device;
  bool has_checkpoint = false;
  if (absl::StatusOr<std::vector<std::string>> entries = ListDir(output_dir); entries.ok()) {
    for (const std::string& e : *entries) has_checkpoint |= e.rfind("checkpoint-", 0) == 0;
  }
  // A first launch honours the user's choice, by default "latest" (a fresh
  // folder has no checkpoint, so training starts from the model); a relaunch
  // continues from the newest checkpoint once there is one.
  auto resume = worker.find("resume_from_checkpoint");
  if ((settings.restart && has_checkpoint) || resume == worker.end() || resume->is_null()) {
    worker["resume_from_checkpoint"] = "latest";
  }
  RETURN_IF_ERROR(ParseJobConfig(worker.dump(), kSource).status());
  return worker.dump(2);
}

}  // namespace foak

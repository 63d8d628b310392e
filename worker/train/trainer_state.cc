#include "worker/train/trainer_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace foak {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kFormatVersion = 1;
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

uint64_t Fnv1a(uint64_t h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= kFnvPrime;
  }
  return h;
}

std::string FormatFingerprint(uint64_t hash, uint64_t size) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "fnv1a64:%016" PRIx64 ":%" PRIu64, hash, size);
  return buf;
}

std::string ToBase64(const std::string& bytes) { return absl::Base64Escape(bytes); }

// Hyperparameters that may change between a run and its resumption without
// changing the trajectory.
const std::set<std::string>& FreeHyperparameters() {
  static const std::set<std::string> kFree = {"logging_steps", "save_steps", "save_total_limit",
                                              "max_shard_bytes", "eval_steps",
                                              "eval_batch_size"};
  return kFree;
}

}  // namespace

std::string FingerprintBytes(const std::string& bytes) {
  return FormatFingerprint(Fnv1a(kFnvOffset, bytes.data(), bytes.size()), bytes.size());
}

absl::StatusOr<std::string> FingerprintFile(const std::string& path) {
  uint64_t hash = kFnvOffset;
  uint64_t size = 0;
  absl::Status status = ReadFileChunks(path, 1 << 20, [&](std::string_view chunk) {
    hash = Fnv1a(hash, chunk.data(), chunk.size());
    size += chunk.size();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return FormatFingerprint(hash, size);
}

std::string TrainerStateToJson(const TrainerState& s) {
  Json j;
  j["format_version"] = kFormatVersion;
  j["complete"] = true;
  j["global_step"] = s.global_step;
  j["epoch"] = s.epoch;
  j["micro_batches_consumed"] = s.micro_batches_consumed;
  j["examples_consumed"] = s.examples_consumed;
  j["max_steps"] = s.fingerprint.max_steps;
  j["lr_scheduler"] = {{"type", LrSchedulerTypeName(s.lr_schedule.type)},
                       {"base_lr", s.lr_schedule.base_lr},
                       {"warmup_steps", s.lr_schedule.warmup_steps},
                       {"max_steps", s.lr_schedule.max_steps},
                       {"min_lr_ratio", s.lr_schedule.min_lr_ratio},
                       {"last_epoch", s.global_step},  // torch LambdaLR's name for it
                       {"last_lr", s.last_learning_rate}};
  j["last_loss"] = s.last_loss;
  j["elapsed_s"] = s.elapsed_s;
  Json cuda = Json::array();
  for (const std::string& state : s.cuda_rng_states) cuda.push_back(ToBase64(state));
  j["rng_state"] = {{"cpu", ToBase64(s.cpu_rng_state)}, {"cuda", cuda}};
  j["log_window"] = {{"loss_sum", s.log_window.loss_sum},
                     {"steps", s.log_window.steps},
                     {"tokens", s.log_window.tokens}};
  Json hyperparameters = Json::parse(s.fingerprint.hyperparameters_json.empty()
                                         ? std::string("{}")
                                         : s.fingerprint.hyperparameters_json);
  j["fingerprint"] = {{"method", s.fingerprint.method},
                      {"dataset", s.fingerprint.dataset_hash},
                      {"model_config", s.fingerprint.model_config_hash},
                      {"hyperparameters", hyperparameters},
                      {"dataset_options", Json::parse(s.fingerprint.dataset_options_json.empty() ? std::string("{}") : s.fingerprint.dataset_options_json)},
                      {"lora", Json::parse(s.fingerprint.lora_json.empty() ? std::string("{}") : s.fingerprint.lora_json)},
                      {"quantization", Json::parse(s.fingerprint.quantization_json.empty()
                                                       ? std::string("{}")
                                                       : s.fingerprint.quantization_json)}};
  Json history = Json::array();
  for (const std::string& line : s.log_history) history.push_back(Json::parse(line));
  j["log_history"] = history;
  return j.dump(2) + "\n";
}

absl::StatusOr<TrainerState> ParseTrainerState(const std::string& json_text,
                                               const std::string& source) {
  TrainerState s;
  std::string field;
  try {
    const Json j = Json::parse(json_text);
    auto at = [&field](const Json& object, const char* key) -> const Json& {
      field = key;
      return object.at(key);
    };
    if (at(j, "format_version").get<int>() != kFormatVersion) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": format_version ", j.at("format_version").dump(), "; this worker reads ",
          kFormatVersion));
    }
    if (!at(j, "complete").get<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": not marked complete"));
    }
    s.global_step = at(j, "global_step").get<int64_t>();
    s.epoch = at(j, "epoch").get<double>();
    s.micro_batches_consumed = at(j, "micro_batches_consumed").get<int64_t>();
    s.examples_consumed = j.value("examples_consumed", int64_t{-1});
    s.fingerprint.max_steps = at(j, "max_steps").get<int64_t>();
    const Json& lr = at(j, "lr_scheduler");
    ASSIGN_OR_RETURN(s.lr_schedule.type,
                     LrSchedulerTypeFromName(at(lr, "type").get<std::string>()));
    s.lr_schedule.base_lr = at(lr, "base_lr").get<double>();
    s.lr_schedule.warmup_steps = at(lr, "warmup_steps").get<int64_t>();
    s.lr_schedule.max_steps = at(lr, "max_steps").get<int64_t>();
    s.lr_schedule.min_lr_ratio = at(lr, "min_lr_ratio").get<double>();
    s.last_learning_rate = at(lr, "last_lr").get<double>();
    s.last_loss = at(j, "last_loss").get<double>();
    s.elapsed_s = at(j, "elapsed_s").get<double>();
    const Json& rng = at(j, "rng_state");
    auto decode = [&source](const Json& text, std::string* out) -> absl::Status {
      if (!absl::Base64Unescape(text.get<std::string>(), out)) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": rng_state is not valid base64"));
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(decode(at(rng, "cpu"), &s.cpu_rng_state));
    for (const Json& state : at(rng, "cuda")) {
      s.cuda_rng_states.emplace_back();
      RETURN_IF_ERROR(decode(state, &s.cuda_rng_states.back()));
    }
    const Json& window = at(j, "log_window");
    s.log_window.loss_sum = at(window, "loss_sum").get<double>();
    s.log_window.steps = at(window, "steps").get<int64_t>();
    s.log_window.tokens = at(window, "tokens").get<int64_t>();
    const Json& fp = at(j, "fingerprint");
    s.fingerprint.method = at(fp, "method").get<std::string>();
    s.fingerprint.dataset_hash = at(fp, "dataset").get<std::string>();
    s.fingerprint.model_config_hash = at(fp, "model_config").get<std::string>();
    s.fingerprint.hyperparameters_json = at(fp, "hyperparameters").dump();
    // Absent in checkpoints of foak before datasets and LoRA: "{}".
    s.fingerprint.dataset_options_json = fp.value("dataset_options", Json::object()).dump();
    s.fingerprint.lora_json = fp.value("lora", Json::object()).dump();
    // Absent before method qlora: "{}", as an unquantised run's.
    s.fingerprint.quantization_json = fp.value("quantization", Json::object()).dump();
    for (const Json& line : at(j, "log_history")) s.log_history.push_back(line.dump());
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": not a valid trainer state", field.empty() ? "" : " (field '" + field + "')",
        ": ", e.what()));
  }
  return s;
}

absl::Status CheckResumeCompatible(const RunFingerprint& saved, const RunFingerprint& current,
                                   const std::string& checkpoint_dir) {
  std::vector<std::string> diffs;
  auto compare = [&diffs](const std::string& what, const std::string& old_value,
                          const std::string& new_value) {
    if (old_value != new_value) diffs.push_back(absl::StrCat(what, ": ", old_value, " -> ", new_value));
  };
  compare("method", saved.method, current.method);
  compare("dataset.train contents", saved.dataset_hash, current.dataset_hash);
  compare("model config.json", saved.model_config_hash, current.model_config_hash);
  compare("max_steps (resolved)", absl::StrCat(saved.max_steps), absl::StrCat(current.max_steps));
  // Key by key, so a message names the field that changed.
  auto compare_objects = [&compare](const std::string& prefix, const std::string& old_json,
                                    const std::string& new_json, bool skip_free) {
    const Json old_j = Json::parse(old_json.empty() ? std::string("{}") : old_json);
    const Json new_j = Json::parse(new_json.empty() ? std::string("{}") : new_json);
    std::set<std::string> keys;
    for (auto it = old_j.begin(); it != old_j.end(); ++it) keys.insert(it.key());
    for (auto it = new_j.begin(); it != new_j.end(); ++it) keys.insert(it.key());
    for (const std::string& key : keys) {
      if (skip_free && FreeHyperparameters().count(key)) continue;
      const std::string o = old_j.contains(key) ? old_j[key].dump() : "(absent)";
      const std::string n = new_j.contains(key) ? new_j[key].dump() : "(absent)";
      compare(absl::StrCat(prefix, key), o, n);
    }
  };
  try {
    compare_objects("hyperparameters.", saved.hyperparameters_json, current.hyperparameters_json,
                    true);
    compare_objects("dataset.", saved.dataset_options_json, current.dataset_options_json, false);
    compare_objects("lora.", saved.lora_json, current.lora_json, false);
    compare_objects("quantization.", saved.quantization_json, current.quantization_json, false);
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(absl::StrCat("comparing the run fingerprints: ", e.what()));
  }
  if (diffs.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot resume from ", checkpoint_dir, ": it was written by a different run (",
      absl::StrJoin(diffs, "; "), "). Restore the original job and dataset, start a fresh "
      "run in another output_dir, or set \"resume_ignore_mismatch\": true to continue anyway "
      "(the run is then no longer an exact continuation)"));
}

}  // namespace foak

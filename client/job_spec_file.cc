#include "client/job_spec_file.h"

#include <algorithm>
#include <iostream>
#include <iterator>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/errors.h"
#include "client/yaml_to_json.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace foak::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using Json = nlohmann::json;

// Levenshtein distance, for "did you mean" suggestions.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->name() == key || f->json_name() == key) return f;
  }
  return nullptr;
}

absl::Status UnknownField(const Descriptor* d, const std::string& key, const std::string& path) {
  std::string best;
  size_t best_distance = 3;  // suggest only close names
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i) {
    const std::string& name = d->field(i)->name();
    names.push_back(name);
    const size_t distance = EditDistance(absl::AsciiStrToLower(key), name);
    if (distance < best_distance) {
      best_distance = distance;
      best = name;
    }
  }
  if (!best.empty()) {
    return UsageError(absl::StrCat(path, ": unknown field; did you mean '", best, "'?"));
  }
  return UsageError(absl::StrCat(path, ": unknown field; ", d->full_name(), " has ",
                                 absl::StrJoin(names, ", ")));
}

// Checks that every key of `j` names a field of `d`, recursively. Values of
// the wrong type are left to protobuf's parser, which names them as well.
absl::Status CheckKnownFields(const Json& j, const Descriptor* d, const std::string& prefix) {
  if (!j.is_object()) return absl::OkStatus();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string path = prefix.empty() ? it.key() : absl::StrCat(prefix, ".", it.key());
    const FieldDescriptor* f = FindField(d, it.key());
    if (f == nullptr) return UnknownField(d, it.key(), path);
    const Descriptor* sub = f->message_type();
    // Maps (labels) and well-known types (Value, Struct) take any keys.
    if (sub == nullptr || f->is_map() || absl::StartsWith(sub->full_name(), "google.protobuf.")) {
      continue;
    }
    if (f->is_repeated() && it.value().is_array()) {
      for (size_t i = 0; i < it.value().size(); ++i) {
        RETURN_IF_ERROR(CheckKnownFields(it.value()[i], sub, absl::StrCat(path, "[", i, "]")));
      }
    } else {
      RETURN_IF_ERROR(CheckKnownFields(it.value(), sub, path));
    }
  }
  return absl::OkStatus();
}

absl::Status Prefixed(const std::string& source, const absl::Status& status) {
  return UsageError(absl::StrCat(source, ": ", status.message()));
}

}  // namespace

SpecFormat GuessSpecFormat(const std::string& path, absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".json")) return SpecFormat::kJson;
  if (absl::EndsWith(lower, ".yaml") || absl::EndsWith(lower, ".yml")) return SpecFormat::kYaml;
  const absl::string_view body = absl::StripLeadingAsciiWhitespace(text);
  return !body.empty() && body[0] == '{' ? SpecFormat::kJson : SpecFormat::kYaml;
}

absl::StatusOr<foak::v1::JobSpec> ParseJobSpec(absl::string_view text, SpecFormat format,
                                               const std::string& source) {
  Json doc;
  if (format == SpecFormat::kYaml) {
    absl::StatusOr<Json> converted = YamlToJson(text);
    if (!converted.ok()) return Prefixed(source, converted.status());
    doc = std::move(*converted);
  } else {
    try {
      doc = Json::parse(text.begin(), text.end());
    } catch (const Json::exception& e) {
      // nlohmann prefixes "[json.exception.parse_error.101] "; drop it.
      std::string what = e.what();
      if (const size_t end = what.find("] "); what.rfind("[json.", 0) == 0 && end != std::string::npos) {
        what = what.substr(end + 2);
      }
      return UsageError(absl::StrCat(source, ": ", what));
    }
  }
  if (!doc.is_object()) {
    return UsageError(absl::StrCat(source, ": a job file holds one object with the JobSpec "
                                           "fields (name, model, dataset, method, ...)"));
  }
  const foak::v1::JobSpec prototype;
  if (absl::Status s = CheckKnownFields(doc, prototype.GetDescriptor(), ""); !s.ok()) {
    return Prefixed(source, s);
  }
  std::string json_text;
  try {
    json_text = doc.dump();
  } catch (const Json::exception& e) {  // a string that is not UTF-8
    return UsageError(absl::StrCat(source, ": ", e.what()));
  }
  foak::v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(json_text, &spec, options);
  if (!status.ok()) {
    return UsageError(absl::StrCat(source, ": ",
                                   std::string(status.message().data(), status.message().size())));
  }
  return spec;
}

absl::StatusOr<foak::v1::JobSpec> LoadJobSpecFile(const std::string& path) {
  std::string text;
  std::string source = path;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    source = "<stdin>";
  } else {
    absl::StatusOr<std::string> read = ReadFileToString(path);
    if (!read.ok()) return UsageError(absl::StrCat("-f: ", read.status().message()));
    text = std::move(*read);
  }
  return ParseJobSpec(text, GuessSpecFormat(path, text), source);
}

}  // namespace foak::client

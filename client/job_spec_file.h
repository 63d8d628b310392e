// Reads `foakctl submit -f` job files (JSON or YAML) into a JobSpec.
//
// Both formats go through one JSON document: YAML is converted first
// (yaml_to_json.h), then the keys are checked against JobSpec's descriptor so
// a misspelt field is named with its full path and a suggestion
// ("hyperparameters.lerning_rate: unknown field; did you mean learning_rate?")
// before protobuf's JSON parser checks the value types. Field names are the
// .proto ones (snake_case); the lowerCamelCase JSON names are accepted too.
// Every error here is a usage error (exit 2): nothing was sent to foakd.
#ifndef FOAK_CLIENT_JOB_SPEC_FILE_H_
#define FOAK_CLIENT_JOB_SPEC_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "foak/v1/job.pb.h"

namespace foak::client {

enum class SpecFormat { kJson, kYaml };

// The format by extension: .json is JSON, .yaml/.yml YAML; otherwise JSON
// when the first non-blank character is '{', else YAML.
SpecFormat GuessSpecFormat(const std::string& path, absl::string_view text);

// Parses `text`; `source` (the file name) prefixes error messages.
absl::StatusOr<foak::v1::JobSpec> ParseJobSpec(absl::string_view text, SpecFormat format,
                                               const std::string& source);

// Reads and parses the job file at `path` ("-" reads standard input).
absl::StatusOr<foak::v1::JobSpec> LoadJobSpecFile(const std::string& path);

}  // namespace foak::client

#endif  // FOAK_CLIENT_JOB_SPEC_FILE_H_

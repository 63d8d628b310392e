// YAML job files: converted to JSON, which protobuf's JSON parser then reads
// into a JobSpec, so YAML and JSON files follow exactly the same rules.
//
// yaml-cpp hands back every scalar as text; the JSON types are resolved here
// with the YAML 1.2 core schema: plain `123`, `-4`, `0x1f` become integers,
// `1e-4`, `.5`, `.inf`, `.nan` numbers, `true`/`false` booleans, `~`/`null`/
// empty null, anything else a string. Quoted and block scalars ("123", |) are
// always strings, so `name: "0042"` keeps its zeros. YAML 1.1's yes/no/on/off
// stay strings (a bool field then reports a type error naming it).
#ifndef FOAK_CLIENT_YAML_TO_JSON_H_
#define FOAK_CLIENT_YAML_TO_JSON_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace foak::client {

// Parses the first YAML document of `yaml`. A syntax error, a non-scalar
// mapping key or a duplicate key is a usage error naming the line or key.
absl::StatusOr<nlohmann::json> YamlToJson(absl::string_view yaml);

}  // namespace foak::client

#endif  // FOAK_CLIENT_YAML_TO_JSON_H_

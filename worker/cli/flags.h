// Command-line flags of foak-worker: "--name value" and "--name=value" pairs,
// plus bare switches ("--chat"), checked against the names a command knows so
// that a typo is a usage error rather than a silently ignored option. Also the
// parsers for flag values that several commands share (dtype, id lists,
// numbers), each naming the flag and the expected form in its error.
#ifndef FOAK_WORKER_CLI_FLAGS_H_
#define FOAK_WORKER_CLI_FLAGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace foak {

struct Flags {
  std::map<std::string, std::string> values;  // switches given hold "true"
  bool help = false;

  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  bool Has(const std::string& name) const { return values.count(name) != 0; }
};

// Parses argv[first..argc) against `known` (flags taking a value) and
// `switches` (flags taking none). "--help"/"-h" set `help`.
absl::StatusOr<Flags> ParseFlags(int argc, char** argv, int first,
                                 const std::set<std::string>& known,
                                 const std::set<std::string>& switches = {});

// "--NAME is required" for the first of `names` that is missing or empty.
absl::Status Require(const Flags& flags, const std::vector<std::string>& names);

// --dtype: "float32" (the default) or "bfloat16".
absl::StatusOr<std::string> ParseDtype(const Flags& flags);

// "1,2,3;4,5,6" -> rows; rows must be equally long. `flag` names the flag in errors.
absl::StatusOr<std::vector<std::vector<int64_t>>> ParseIdRows(const std::string& flag,
                                                              const std::string& text);

// --NAME as an integer >= min_value, or `fallback` when absent.
absl::StatusOr<int64_t> ParseIntFlag(const Flags& flags, const std::string& name, int64_t fallback,
                                     int64_t min_value);
// --NAME as a finite number for which valid(value) holds, or `fallback` when
// absent; the error is "--NAME TEXT: expected <expected>".
absl::StatusOr<double> ParseDoubleFlag(const Flags& flags, const std::string& name, double fallback,
                                       bool (*valid)(double), const char* expected);

}  // namespace foak

#endif  // FOAK_WORKER_CLI_FLAGS_H_

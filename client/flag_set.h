// A small command-line flag parser for foakctl's subcommands.
//
// Each subcommand declares its flags in a FlagSet (with the global flags
// added), so `--server`, `-o` and `--timeout` may appear before or after the
// command name, as in kubectl. Accepted forms: `--name value`, `--name=value`,
// `-n value`, boolean `--watch`, repeatable `--label k=v --label k2=v2`, and
// `--` to end flags. Values stay strings; the typed getters turn a bad value
// into a usage error naming the flag. Help text is generated from the
// declarations so it never drifts from what is parsed.
#ifndef FOAK_CLIENT_FLAG_SET_H_
#define FOAK_CLIENT_FLAG_SET_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace foak::client {

class FlagSet {
 public:
  // `usage` is the synopsis ("foakctl get ID [flags]"), `description` the
  // paragraph under it.
  FlagSet(std::string usage, std::string description);

  // A flag that takes a value. `short_name` is 0 when there is none.
  void AddValue(const std::string& name, char short_name, const std::string& value_name,
                const std::string& help);
  // Like AddValue, but may be given many times; GetAll returns every value.
  void AddRepeated(const std::string& name, char short_name, const std::string& value_name,
                   const std::string& help);
  // A boolean switch (no value; `--name=true|false` also accepted).
  void AddBool(const std::string& name, char short_name, const std::string& help);
  // Marks the flags added from now on as global (listed apart in the help).
  void BeginGlobalFlags() { adding_global_ = true; }

  // Parses `args` (without the program and command names). Unknown flags and
  // missing values are usage errors. `-h`/`--help` sets help_requested().
  absl::Status Parse(const std::vector<std::string>& args);

  bool help_requested() const { return help_requested_; }
  const std::vector<std::string>& positional() const { return positional_; }

  // True when the flag was given on the command line.
  bool IsSet(const std::string& name) const;
  // The last value given, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;
  // A comma-separated list of integers, each >= `min` ("4,16"); empty when
  // the flag was not given. Anything else is a usage error naming the flag.
  absl::StatusOr<std::vector<int64_t>> GetIntList(const std::string& name, int64_t min) const;

  // The generated help: usage, description, flags, global flags.
  std::string Help() const;

  // Given a command line, returns the index of the first argument that is not
  // a flag or a flag's value, or -1. Only the flags declared in this set are
  // known; it is used with the global flags to find the command name.
  int FindFirstPositional(const std::vector<std::string>& args) const;

 private:
  struct Flag {
    std::string name;
    char short_name = 0;
    std::string value_name;  // empty for booleans
    std::string help;
    bool repeated = false;
    bool global = false;
  };

  // The flag for "--name" / "-n" (without dashes), or nullptr.
  const Flag* Find(const std::string& name) const;
  const Flag* FindShort(char c) const;
  void Add(Flag flag);

  std::string usage_;
  std::string description_;
  std::vector<Flag> flags_;
  bool adding_global_ = false;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
  bool help_requested_ = false;
};

}  // namespace foak::client

#endif  // FOAK_CLIENT_FLAG_SET_H_

// The commands of foak-worker. Each is a plain table entry: its flags, its
// usage text and its entry point; worker/main.cc parses the flags against the
// entry, prints the usage for --help or a usage error (exit 2), runs the
// command and turns its status into the exit code (0 ok, 1 error). Commands
// return absl::Status and never exit themselves, so they stay testable and
// every failure goes through one place.
#ifndef FOAK_WORKER_CLI_COMMANDS_H_
#define FOAK_WORKER_CLI_COMMANDS_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/cli/flags.h"

namespace foak {

struct Command {
  const char* name;
  const char* usage;               // printed for --help (stdout) and usage errors (stderr)
  std::set<std::string> flags;     // options that take a value
  std::set<std::string> switches;  // options that take none
  std::vector<std::string> required;
  // Usage checks beyond `required` (e.g. one of two flags); an error is a
  // usage error (exit 2). May be null.
  absl::Status (*check)(const Flags&);
  absl::Status (*run)(const Flags&);
};

Command TrainCommand();      // train_command.cc
Command InitModelCommand();  // init_model_command.cc
Command ForwardCommand();    // forward_command.cc
Command GenerateCommand();   // generate_command.cc

}  // namespace foak

#endif  // FOAK_WORKER_CLI_COMMANDS_H_

// foakctl's entry point, callable in-process: tests run commands against a
// fake foakd and read what they print and return, without spawning a binary.
#ifndef FOAK_CLIENT_FOAKCTL_MAIN_H_
#define FOAK_CLIENT_FOAKCTL_MAIN_H_

#include <ostream>
#include <string>

#include "absl/time/time.h"

namespace foak::client {

// What the real binary takes from its environment; tests override it.
struct FoakctlOptions {
  // Live progress lines are rewritten in place (\r) only on a terminal.
  bool out_is_tty = false;
  // Wait before the first retry of a unary call (doubling after).
  absl::Duration retry_backoff = absl::Milliseconds(500);
  // How long a broken watch/logs stream is reopened, and the first wait.
  absl::Duration reconnect_budget = absl::Seconds(60);
  absl::Duration reconnect_backoff = absl::Milliseconds(500);
  // Relative job-file paths are resolved against this; "" = getcwd().
  std::string cwd;
  absl::TimeZone time_zone = absl::LocalTimeZone();
};

// The default server address when neither --server nor FOAK_SERVER is set.
inline constexpr char kDefaultServer[] = "127.0.0.1:7070";

// Runs `foakctl argv[1:]`, writing to `out` and `err`; returns the exit code
// (client/README.md lists them).
int FoakctlMain(int argc, char** argv, std::ostream& out, std::ostream& err,
                const FoakctlOptions& options);
int FoakctlMain(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace foak::client

#endif  // FOAK_CLIENT_FOAKCTL_MAIN_H_

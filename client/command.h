// What every foakctl subcommand gets (CommandContext) and how it is declared
// (Command). Commands write to the streams of the context, never to
// std::cout/std::cerr, so tests run them in-process and read their output.
//
// A command returns its exit code on success: 0, or for the watching commands
// the code of the job's final state (4 FAILED, 5 CANCELLED); an error status
// becomes an exit code in one place, foakctl_main.cc, through ExitCodeFor().
#ifndef FOAK_CLIENT_COMMAND_H_
#define FOAK_CLIENT_COMMAND_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/connection.h"
#include "client/flag_set.h"

namespace foak::client {

// -o: table (default), json, or markdown (only commands with
// Command::markdown, e.g. bench's results table for docs).
enum class OutputFormat { kTable, kJson, kMarkdown };

struct CommandContext {
  CommandContext(std::ostream& out_stream, std::ostream& err_stream, const FlagSet& parsed_flags,
                 Connection& server)
      : out(out_stream), err(err_stream), flags(parsed_flags), connection(server) {}

  std::ostream& out;
  std::ostream& err;
  const FlagSet& flags;
  Connection& connection;
  OutputFormat output = OutputFormat::kTable;
  // Live progress lines are rewritten in place only on a terminal.
  bool out_is_tty = false;
  absl::TimeZone time_zone = absl::UTCTimeZone();
  // Relative job-file paths are made absolute against this folder.
  std::string cwd;
  // A broken WatchJob stream is reopened for this long in all, waiting
  // `reconnect_backoff` (doubling, at most 8x) between attempts.
  absl::Duration reconnect_budget = absl::Seconds(60);
  absl::Duration reconnect_backoff = absl::Milliseconds(500);

  bool json() const { return output == OutputFormat::kJson; }
};

struct Command {
  std::string name;
  std::string summary;      // one line for `foakctl --help`
  std::string usage;        // synopsis after "foakctl "
  std::string description;  // paragraph(s) of `foakctl NAME --help`
  void (*add_flags)(FlagSet* flags);
  absl::StatusOr<int> (*run)(CommandContext& ctx);
  bool markdown = false;  // accepts -o markdown
};

// The commands of each group, in the order `foakctl --help` lists them.
std::vector<Command> JobCommands();    // submit, list, get, cancel, checkpoints
std::vector<Command> WatchCommands();  // watch, logs
std::vector<Command> FileCommands();   // upload, files, delete-file
std::vector<Command> BenchCommands();  // bench

}  // namespace foak::client

#endif  // FOAK_CLIENT_COMMAND_H_

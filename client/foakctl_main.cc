// Dispatch: find the command, parse its flags (with the global ones), connect,
// run, and turn the outcome into one exit code and at most a few lines on
// stderr. This is the only place where errors are printed, so every command
// reports them the same way: "foakctl: <message>" (the server's message as
// it was sent; it names the field), then a hint when one helps.
#include "client/foakctl_main.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/connection.h"
#include "client/errors.h"
#include "client/flag_set.h"
#include "client/job_spec_flags.h"
#include "common/file_util.h"

namespace foak::client {
namespace {

constexpr char kExitCodesHelp[] =
    "Exit codes:\n"
    "  0  success (watch, submit --watch, bench: the job SUCCEEDED)\n"
    "  1  any other error\n"
    "  2  usage error: bad flags or arguments, a job file that does not parse\n"
    "  3  not found: no job or file with that id\n"
    "  4  the watched job FAILED\n"
    "  5  the watched job was CANCELLED\n"
    "  6  foakd unreachable (UNAVAILABLE / DEADLINE_EXCEEDED after retries)\n"
    "  7  foakd refused the request (INVALID_ARGUMENT, ALREADY_EXISTS,\n"
    "     FAILED_PRECONDITION); its message names the field\n";

void AddGlobalFlags(FlagSet* flags) {
  flags->BeginGlobalFlags();
  flags->AddValue("server", 0, "HOST:PORT",
                  absl::StrCat("foakd's address (default $FOAK_SERVER, else ", kDefaultServer, ")"));
  flags->AddValue("output", 'o', "table|json",
                  "output format (default table; bench: also markdown)");
  flags->AddValue("timeout", 0, "SECONDS", "deadline of each request (default 30)");
  flags->AddValue("token", 0, "TOKEN",
                  "API token sent as 'authorization: Bearer TOKEN' (default $FOAK_TOKEN)");
  flags->AddValue("token-file", 0, "FILE", "read the API token from FILE (default $FOAK_TOKEN_FILE)");
  flags->AddBool("tls", 0, "speak TLS, trusting the system's CA roots (default $FOAK_TLS=1)");
  flags->AddValue("tls-ca", 0, "FILE",
                  "speak TLS, trusting the CA (PEM) that signed foakd's certificate (default $FOAK_TLS_CA)");
  flags->AddValue("tls-cert", 0, "FILE",
                  "client certificate (PEM) for foakd --tls_client_ca; implies TLS (default $FOAK_TLS_CERT)");
  flags->AddValue("tls-key", 0, "FILE", "private key (PEM) of --tls-cert (default $FOAK_TLS_KEY)");
  flags->AddValue("tls-server-name", 0, "NAME",
                  "the name foakd's certificate must carry, when not the --server host");
}

// The flag's value, else the environment variable's, else "".
std::string FlagOrEnv(const FlagSet& flags, const char* flag, const char* env) {
  std::string value = flags.Get(flag);
  if (value.empty()) {
    const char* from_env = std::getenv(env);
    if (from_env != nullptr) value = from_env;
  }
  return value;
}

// --token, --token-file and --tls-*: the connection's security settings.
absl::Status SecurityOptions(const FlagSet& flags, Connection::Options* options, bool* tls) {
  options->token = FlagOrEnv(flags, "token", "FOAK_TOKEN");
  const std::string token_file = FlagOrEnv(flags, "token-file", "FOAK_TOKEN_FILE");
  if (options->token.empty() && !token_file.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(token_file);
    if (!text.ok()) {
      return UsageError(absl::StrCat("--token-file ", token_file, ": ", text.status().message()));
    }
    options->token = std::string(absl::StripAsciiWhitespace(*text));
    if (options->token.empty()) {
      return UsageError(absl::StrCat("--token-file ", token_file, " is empty; put the token in it"));
    }
  }
  const std::string ca = FlagOrEnv(flags, "tls-ca", "FOAK_TLS_CA");
  const std::string cert = FlagOrEnv(flags, "tls-cert", "FOAK_TLS_CERT");
  const std::string key = FlagOrEnv(flags, "tls-key", "FOAK_TLS_KEY");
  const char* tls_env = std::getenv("FOAK_TLS");
  *tls = flags.GetBool("tls") || (tls_env != nullptr && std::string(tls_env) == "1") ||
         !ca.empty() || !cert.empty() || !key.empty();
  options->tls_server_name = flags.Get("tls-server-name");
  if (!*tls) {
    if (!options->tls_server_name.empty()) {
      return UsageError("--tls-server-name applies only with TLS (--tls-ca, --tls-cert or --tls)");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeTlsCredentials(ca, cert, key);
  if (!credentials.ok()) return credentials.status();
  options->tls = *std::move(credentials);
  return absl::OkStatus();
}

std::vector<Command> AllCommands() {
  std::vector<Command> all = JobCommands();
  for (auto group : {WatchCommands(), BenchCommands(), FileCommands()}) {
    all.insert(all.end(), group.begin(), group.end());
  }
  return all;
}

const Command* FindCommand(const std::vector<Command>& commands, const std::string& name) {
  for (const Command& c : commands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string TopLevelHelp(const std::vector<Command>& commands) {
  std::string out =
      "foakctl: the command-line client of foakd, the foak fine-tuning service.\n\n"
      "Usage: foakctl COMMAND [ARGS] [flags]\n\nCommands:\n";
  for (const Command& c : commands) {
    absl::StrAppend(&out, "  ", c.name, std::string(14 - c.name.size(), ' '), c.summary, "\n");
  }
  FlagSet globals("", "");
  AddGlobalFlags(&globals);
  globals.AddBool("help", 'h', "show help (foakctl COMMAND --help)");
  std::string flags_help = globals.Help();
  flags_help = flags_help.substr(flags_help.find("Global flags:"));
  absl::StrAppend(&out, "\n", flags_help, "\n", kExitCodesHelp,
                  "\nExamples:\n"
                  "  foakctl upload data/train.jsonl\n"
                  "  foakctl submit -f job.yaml --watch\n"
                  "  foakctl bench --model /models/llama-3.2-1b --batch 4 --seq 2048\n"
                  "  foakctl list --state running\n"
                  "  foakctl logs job-0123456789abcdef -f\n");
  return out;
}

std::string CommandHelp(const Command& command) {
  FlagSet flags(absl::StrCat("foakctl ", command.usage), command.description);
  command.add_flags(&flags);
  AddGlobalFlags(&flags);
  return absl::StrCat(flags.Help(), "\n", kExitCodesHelp);
}

int ReportError(const absl::Status& status, std::ostream& err, const std::string& server,
                const std::string& command, bool tls = false) {
  err << "foakctl: " << status.message() << "\n";
  const int code = ExitCodeFor(status);
  if (code == kExitUsage) {
    err << "Run 'foakctl " << (command.empty() ? "" : command + " ") << "--help' for usage.\n";
  }
  if (const std::string hint = HintFor(status, server, tls); !hint.empty()) {
    err << "foakctl: " << hint << "\n";
  }
  return code;
}

}  // namespace

int FoakctlMain(int argc, char** argv, std::ostream& out, std::ostream& err,
                const FoakctlOptions& options) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const std::vector<Command> commands = AllCommands();

  FlagSet globals("foakctl COMMAND", "");
  AddGlobalFlags(&globals);
  const int at = globals.FindFirstPositional(args);
  if (at < 0) {
    FlagSet probe("", "");
    AddGlobalFlags(&probe);
    const absl::Status parsed = probe.Parse(args);
    if (parsed.ok() && probe.help_requested()) {
      out << TopLevelHelp(commands);
      return kExitOk;
    }
    err << TopLevelHelp(commands);
    return ReportError(parsed.ok() ? UsageError("missing command") : parsed, err, "", "");
  }
  std::string name = args[at];
  std::vector<std::string> rest(args.begin(), args.begin() + at);
  rest.insert(rest.end(), args.begin() + at + 1, args.end());
  if (name == "help") {
    const Command* topic = nullptr;
    for (const std::string& a : rest) {
      if ((topic = FindCommand(commands, a)) != nullptr) break;
    }
    out << (topic != nullptr ? CommandHelp(*topic) : TopLevelHelp(commands));
    return kExitOk;
  }
  const Command* command = FindCommand(commands, name);
  if (command == nullptr) {
    return ReportError(UsageError(absl::StrCat("unknown command '", name, "'")), err, "", "");
  }

  FlagSet flags(absl::StrCat("foakctl ", command->usage), command->description);
  command->add_flags(&flags);
  AddGlobalFlags(&flags);
  if (absl::Status s = flags.Parse(rest); !s.ok()) return ReportError(s, err, "", name);
  if (flags.help_requested()) {
    out << CommandHelp(*command);
    return kExitOk;
  }

  OutputFormat output = OutputFormat::kTable;
  const std::string format = flags.Get("output", "table");
  if (format == "json") {
    output = OutputFormat::kJson;
  } else if (format == "markdown" && command->markdown) {
    output = OutputFormat::kMarkdown;
  } else if (format != "table") {
    const absl::Status bad = UsageError(
        absl::StrCat("-o: '", format, "' is not an output format of ", name, "; use table",
                     command->markdown ? ", json or markdown" : " or json"));
    return ReportError(bad, err, "", name);
  }
  absl::StatusOr<double> timeout_s = flags.GetDouble("timeout", 30);
  if (timeout_s.ok() && !(*timeout_s > 0)) timeout_s = UsageError("--timeout: must be > 0 seconds");
  if (!timeout_s.ok()) return ReportError(timeout_s.status(), err, "", name);

  std::string server = flags.Get("server");
  if (server.empty()) {
    const char* env = std::getenv("FOAK_SERVER");
    server = env != nullptr && env[0] != '\0' ? env : kDefaultServer;
  }
  Connection::Options connection_options;
  connection_options.timeout = absl::Seconds(*timeout_s);
  connection_options.retry_backoff = options.retry_backoff;
  bool tls = false;
  if (absl::Status s = SecurityOptions(flags, &connection_options, &tls); !s.ok()) {
    return ReportError(s, err, "", name);
  }
  Connection connection(server, connection_options);

  CommandContext ctx(out, err, flags, connection);
  ctx.output = output;
  ctx.out_is_tty = options.out_is_tty && output == OutputFormat::kTable;
  ctx.time_zone = options.time_zone;
  ctx.cwd = options.cwd.empty() ? CurrentDirectory() : options.cwd;
  ctx.reconnect_budget = options.reconnect_budget;
  ctx.reconnect_backoff = options.reconnect_backoff;

  absl::StatusOr<int> result = command->run(ctx);
  out.flush();
  if (!result.ok()) return ReportError(result.status(), err, server, name, tls);
  return *result;
}

int FoakctlMain(int argc, char** argv, std::ostream& out, std::ostream& err) {
  return FoakctlMain(argc, argv, out, err, FoakctlOptions());
}

}  // namespace foak::client

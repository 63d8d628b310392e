// foak-worker: the worker binary. Commands (one file each in worker/cli/):
//   train       run a fine-tuning job file (worker/train/train_job.h)
//   init-model  write a randomly initialised model of a config.json in
//               Hugging Face format (the demo and tests need a model and there
//               are no downloads)
//   forward     run a model (and LoRA adapter) on given token ids and write the
//               logits to a safetensors file, to compare with transformers on
//               the GPU host
//   generate    continue prompts with a model (and LoRA adapter), to look at
//               what a fine-tune learned
//   launch      start one node's data-parallel ranks of another command and
//               supervise them as a gang, as torchrun (launch_command.h)
// This file is the dispatch table and the one place exit codes are decided.
// Exit status: 0 success, 1 error ("foak-worker: <message>" on stderr, and no
// partial output: every file is written through a temp file and renamed),
// 2 bad usage (the usage text on stderr), 3 a training step's loss or
// gradient was NaN or infinite (worker/train/nonfinite.h; not worth a retry). `--help` prints the usage on stdout.
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/cli/commands.h"
#include "worker/cli/flags.h"
#include "worker/cli/launch_command.h"
#include "worker/train/nonfinite.h"

namespace foak {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNonFinite = 3;  // a NaN or infinite loss or gradient (nonfinite.h)

constexpr char kMainUsage[] =
    "Usage: foak-worker <command> [options]\n"
    "\n"
    "Commands:\n"
    "  train       --job FILE [--resume latest|PATH]\n"
    "  init-model  --config CONFIG.json --out DIR [--seed N] [--dtype float32|bfloat16]\n"
    "  forward     --model DIR --input-ids IDS --out FILE.safetensors [--position-ids IDS]\n"
    "              [--adapter DIR] [--dtype float32|bfloat16] [--device auto|cpu|cuda[:N]]\n"
    "  generate    --model DIR [--adapter DIR] (--prompt TEXT | --prompts FILE.jsonl |\n"
    "              --prompt-ids IDS) [--chat] [--chat-template NAME] [--system TEXT]\n"
    "              [--max-new-tokens N (128)] [--temperature T (0 = greedy)] [--top-p P (1)]\n"
    "              [--top-k K (0)] [--seed S (0)] [--device auto|cpu|cuda[:N]]\n"
    "              [--dtype float32|bfloat16] [--out FILE] [--print-ids]\n"
    "  launch      [--nproc-per-node N|auto] [--nnodes M] [--node-rank R]\n"
    "              [--master-addr HOST] [--master-port PORT] -- train --job FILE\n"
    "\n"
    "Run 'foak-worker <command> --help' for the details of a command.\n";

int Main(int argc, char** argv) {
  const std::vector<Command> commands = {TrainCommand(), InitModelCommand(), ForwardCommand(),
                                         GenerateCommand()};
  if (argc < 2) {
    std::fputs(kMainUsage, stderr);
    return kExitUsage;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    std::fputs(kMainUsage, stdout);
    return kExitOk;
  }
  // launch passes its children's exit code on, so it keeps its own.
  if (name == "launch") return RunLaunch(argc, argv);
  for (const Command& command : commands) {
    if (name != command.name) continue;
    absl::StatusOr<Flags> flags = ParseFlags(argc, argv, 2, command.flags, command.switches);
    if (flags.ok() && flags->help) {
      std::fputs(command.usage, stdout);
      return kExitOk;
    }
    absl::Status usage = flags.ok() ? Require(*flags, command.required) : flags.status();
    if (usage.ok() && command.check != nullptr) usage = command.check(*flags);
    if (!usage.ok()) {
      std::fprintf(stderr, "foak-worker %s: %s\n\n%s", command.name,
                   std::string(usage.message()).c_str(), command.usage);
      return kExitUsage;
    }
    absl::Status status = command.run(*flags);
    if (!status.ok()) {
      std::fprintf(stderr, "foak-worker: %s\n", std::string(status.message()).c_str());
      return IsNonFiniteStepError(status) ? kExitNonFinite : kExitError;
    }
    return kExitOk;
  }
  std::fprintf(stderr, "foak-worker: unknown command '%s'\n\n%s", name.c_str(), kMainUsage);
  return kExitUsage;
}

}  // namespace
}  // namespace foak

int main(int argc, char** argv) {
  // A write past the file-size limit (ulimit -f) then fails with EFBIG, which
  // the writers report with the file's name, instead of killing the worker
  // with a core dump mid-checkpoint.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    return foak::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "foak-worker: internal error: %s\n", e.what());
    return 1;
  }
}

#include "worker/cli/launch_command.h"
#include "common/net_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "worker/cli/flags.h"

namespace foak {

const char kLaunchUsage[] =
    "Usage: foak-worker launch [--nproc-per-node N|auto] [--nnodes M] [--node-rank R]\n"
    "                          [--master-addr HOST] [--master-port PORT] -- COMMAND [ARGS]\n"
    "\n"
    "Starts this node's data-parallel ranks as child processes running\n"
    "'foak-worker COMMAND ARGS' (e.g. -- train --job job.json), with torchrun's\n"
    "variables: RANK = node_rank * N + i, LOCAL_RANK = i, WORLD_SIZE = M * N,\n"
    "LOCAL_WORLD_SIZE = N, GROUP_RANK, MASTER_ADDR, MASTER_PORT.\n"
    "  --nproc-per-node  ranks on this node; auto = the visible CUDA devices (1 on\n"
    "                    a host without CUDA) (default auto)\n"
    "  --nnodes          nodes in the job (default NNODES, else 1)\n"
    "  --node-rank       this node's index (default GROUP_RANK, NODE_RANK or\n"
    "                    JOB_COMPLETION_INDEX, else 0)\n"
    "  --master-addr     host of rank 0 (default MASTER_ADDR, else 127.0.0.1 on one node)\n"
    "  --master-port     its rendezvous port (default MASTER_PORT, else a free port on\n"
    "                    one node)\n"
    "When a rank fails the others are stopped (SIGTERM, SIGKILL after 10 s) and\n"
    "launch exits with that rank's exit code (128 + signal for a signal).\n";

namespace {

constexpr int kExitUsage = 2;
constexpr std::chrono::seconds kGrace(10);

volatile sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

std::optional<std::string> Env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

// An integer flag, else the first set variable of `vars`, else `fallback`.
absl::StatusOr<int64_t> IntSetting(const Flags& flags, const std::string& flag,
                                   const std::vector<const char*>& vars, int64_t fallback,
                                   int64_t lo, int64_t hi) {
  std::string text, from = "--" + flag;
  if (flags.Has(flag)) {
    text = flags.Get(flag);
  } else {
    for (const char* var : vars) {
      if (std::optional<std::string> v = Env(var)) {
        text = *v;
        from = var;
        break;
      }
    }
  }
  if (text.empty()) return fallback;
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(absl::StrCat(from, " = '", text, "'; expected an integer in [",
                                                   lo, ", ", hi, "]"));
  }
  return v;
}

struct Plan {
  int64_t nproc = 1, nnodes = 1, node_rank = 0;
  std::string master_addr;
  int64_t master_port = 0;
};

absl::StatusOr<Plan> MakePlan(const Flags& flags) {
  Plan p;
  const std::string nproc = flags.Get("nproc-per-node", "auto");
  if (nproc == "auto") {
    p.nproc = std::max<int64_t>(1, static_cast<int64_t>(torch::cuda::device_count()));
  } else if (!absl::SimpleAtoi(nproc, &p.nproc) || p.nproc < 1 || p.nproc > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nproc-per-node = '", nproc, "'; expected auto or an integer in [1, 1024]"));
  }
  auto nnodes = IntSetting(flags, "nnodes", {"NNODES"}, 1, 1, 1 << 16);
  if (!nnodes.ok()) return nnodes.status();
  p.nnodes = *nnodes;
  auto node_rank = IntSetting(flags, "node-rank", {"GROUP_RANK", "NODE_RANK", "JOB_COMPLETION_INDEX"},
                              0, 0, p.nnodes - 1);
  if (!node_rank.ok()) return node_rank.status();
  p.node_rank = *node_rank;
  p.master_addr = flags.Has("master-addr") ? flags.Get("master-addr")
                                           : Env("MASTER_ADDR").value_or("");
  auto port = IntSetting(flags, "master-port", {"MASTER_PORT"}, 0, 1, 65535);
  if (!port.ok()) return port.status();
  p.master_port = *port;
  if (p.nnodes > 1 && (p.master_addr.empty() || p.master_port == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nnodes ", p.nnodes, " needs --master-addr and --master-port (or MASTER_ADDR and "
        "MASTER_PORT): the host and port of node 0, the same on every node"));
  }
  if (p.master_addr.empty()) p.master_addr = "127.0.0.1";
  if (p.master_port == 0) p.master_port = FreeLoopbackPort();
  return p;
}

// The child's environment: ours plus the rank's variables.
void SetRankEnv(const Plan& p, int64_t local) {
  auto set = [](const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); };
  set("RANK", absl::StrCat(p.node_rank * p.nproc + local));
  set("LOCAL_RANK", absl::StrCat(local));
  set("WORLD_SIZE", absl::StrCat(p.nnodes * p.nproc));
  set("LOCAL_WORLD_SIZE", absl::StrCat(p.nproc));
  set("GROUP_RANK", absl::StrCat(p.node_rank));
  set("MASTER_ADDR", p.master_addr);
  set("MASTER_PORT", absl::StrCat(p.master_port));
}

std::string Describe(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return "ended";
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int RunLaunch(int argc, char** argv) {
  int dash = argc;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      dash = i;
      break;
    }
  }
  absl::StatusOr<Flags> flags = ParseFlags(
      dash, argv, 2, {"nproc-per-node", "nnodes", "node-rank", "master-addr", "master-port"});
  if (flags.ok() && flags->help) {
    std::fputs(kLaunchUsage, stdout);
    return 0;
  }
  absl::StatusOr<Plan> plan = flags.ok() ? MakePlan(*flags) : absl::StatusOr<Plan>(flags.status());
  if (plan.ok() && dash + 1 >= argc) {
    plan = absl::InvalidArgumentError("give the ranks' command after '--', e.g. -- train --job job.json");
  }
  if (!plan.ok()) {
    std::fprintf(stderr, "foak-worker launch: %s\n\n%s", std::string(plan.status().message()).c_str(),
                 kLaunchUsage);
    return kExitUsage;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  std::vector<char*> child_argv = {argv[0]};
  for (int i = dash + 1; i < argc; ++i) child_argv.push_back(argv[i]);
  child_argv.push_back(nullptr);
  std::fprintf(stderr, "foak-worker launch: node %lld of %lld, %lld rank(s), rendezvous at %s:%lld\n",
               static_cast<long long>(plan->node_rank), static_cast<long long>(plan->nnodes),
               static_cast<long long>(plan->nproc), plan->master_addr.c_str(),
               static_cast<long long>(plan->master_port));
  std::fflush(stderr);

  std::vector<pid_t> pids;
  std::vector<bool> alive;
  for (int64_t i = 0; i < plan->nproc; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::signal(SIGTERM, SIG_DFL);
      ::signal(SIGINT, SIG_DFL);
      // A launcher that is killed outright takes its ranks with it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() == 1) ::_exit(128 + SIGKILL);
      SetRankEnv(*plan, i);
      ::execv("/proc/self/exe", child_argv.data());
      std::fprintf(stderr, "foak-worker launch: cannot start rank %lld: %s\n",
                   static_cast<long long>(i), std::strerror(errno));
      ::_exit(127);
    }
    if (pid < 0) {
      std::fprintf(stderr, "foak-worker launch: fork failed: %s\n", std::strerror(errno));
      g_signal = SIGTERM;  // stop what was started
      break;
    }
    pids.push_back(pid);
    alive.push_back(true);
  }

  int exit_code = 0;
  bool stopping = false, killed = false;
  std::chrono::steady_clock::time_point deadline;
  auto stop_all = [&](int sig) {
    for (size_t r = 0; r < pids.size(); ++r) {
      if (alive[r]) ::kill(pids[r], sig);
    }
  };
  size_t running = pids.size();
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t r = 0; r < pids.size(); ++r) {
        if (pids[r] != pid || !alive[r]) continue;
        alive[r] = false;
        --running;
        const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (failed && !stopping) {
          const int64_t rank = plan->node_rank * plan->nproc + static_cast<int64_t>(r);
          std::fprintf(stderr, "foak-worker launch: rank %lld %s; stopping the other ranks\n",
                       static_cast<long long>(rank), Describe(status).c_str());
          std::fflush(stderr);
          exit_code = ExitCodeOf(status);
          stopping = true;
          deadline = std::chrono::steady_clock::now() + kGrace;
          stop_all(SIGTERM);
        }
      }
      continue;
    }
    if (g_signal != 0 && !stopping) {
      std::fprintf(stderr, "foak-worker launch: got signal %d; stopping the ranks\n",
                   static_cast<int>(g_signal));
      exit_code = 128 + g_signal;
      stopping = true;
      deadline = std::chrono::steady_clock::now() + kGrace;
      stop_all(SIGTERM);
    }
    if (stopping && !killed && std::chrono::steady_clock::now() >= deadline) {
      stop_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return exit_code;
}

}  // namespace foak

// LocalLauncher against real processes: small /bin/sh scripts stand in for
// foak-worker. Every wait polls with a generous deadline (the box may be a
// loaded 2-core machine); nothing relies on a fixed sleep.
#include "server/launch/local_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "server/launch/fake_launcher.h"
#include "server/launch/process_util.h"

namespace foak {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(20);

// Collects callbacks; tests wait on it.
class Recorder {
 public:
  Launcher::Callbacks Callbacks() {
    Launcher::Callbacks callbacks;
    callbacks.on_log = [this](const LogLine& line) {
      std::function<void(const LogLine&)> hook;
      {
        absl::MutexLock lock(&mu_);
        lines_.push_back(line);
        hook = on_log_hook_;
      }
      if (hook) hook(line);
    };
    callbacks.on_exit = [this](const LaunchOutcome& outcome) {
      std::function<void(const LaunchOutcome&)> hook;
      {
        absl::MutexLock lock(&mu_);
        hook = on_exit_hook_;
      }
      if (hook) hook(outcome);  // before recording: waiters see its effects
      absl::MutexLock lock(&mu_);
      outcomes_.push_back(outcome);
    };
    return callbacks;
  }
  void SetHooks(std::function<void(const LogLine&)> on_log,
                std::function<void(const LaunchOutcome&)> on_exit) {
    absl::MutexLock lock(&mu_);
    on_log_hook_ = std::move(on_log);
    on_exit_hook_ = std::move(on_exit);
  }

  std::optional<LaunchOutcome> WaitOutcome(const std::string& job_id) {
    absl::MutexLock lock(&mu_);
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Find(job_id) != nullptr; };
    mu_.AwaitWithTimeout(absl::Condition(&has), kTimeout);
    const LaunchOutcome* o = Find(job_id);
    return o == nullptr ? std::nullopt : std::optional<LaunchOutcome>(*o);
  }
  bool WaitLine(const std::string& job_id, const std::string& text) {
    absl::MutexLock lock(&mu_);
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const LogLine& l : lines_) {
        if (l.job_id == job_id && l.text == text) return true;
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&has), kTimeout);
  }
  std::vector<std::string> Lines(const std::string& job_id, int64_t rank = 0) {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const LogLine& l : lines_) {
      if (l.job_id == job_id && l.rank == rank) out.push_back(l.text);
    }
    return out;
  }
  int Outcomes(const std::string& job_id) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const LaunchOutcome& o : outcomes_) n += o.job_id == job_id ? 1 : 0;
    return n;
  }

 private:
  const LaunchOutcome* Find(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const LaunchOutcome& o : outcomes_) {
      if (o.job_id == job_id) return &o;
    }
    return nullptr;
  }
  absl::Mutex mu_;
  std::vector<LogLine> lines_ ABSL_GUARDED_BY(mu_);
  std::vector<LaunchOutcome> outcomes_ ABSL_GUARDED_BY(mu_);
  std::function<void(const LogLine&)> on_log_hook_ ABSL_GUARDED_BY(mu_);
  std::function<void(const LaunchOutcome&)> on_exit_hook_ ABSL_GUARDED_BY(mu_);
};

// Polls `done` until it holds or the timeout passes.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kTimeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

class LocalLauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(getenv("TMPDIR") != nullptr ? getenv("TMPDIR") : "/tmp",
                                    "/foak-launcher-XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    launcher_ = MakeLauncher(/*grace_ms=*/2000);
  }
  void TearDown() override {
    launcher_.reset();
    (void)RemoveTree(dir_);
  }

  std::unique_ptr<LocalLauncher> MakeLauncher(int64_t grace_ms, int64_t poll_ms = 20) {
    LocalLauncherOptions options;
    options.grace_period_ms = grace_ms;
    options.poll_interval_ms = poll_ms;
    absl::StatusOr<std::unique_ptr<LocalLauncher>> launcher =
        LocalLauncher::Create(options, recorder_.Callbacks());
    EXPECT_TRUE(launcher.ok()) << launcher.status();
    return std::move(launcher).value();
  }

  std::string Script(const std::string& name, const std::string& body) {
    std::string path = JoinPath(dir_, name + ".sh");
    EXPECT_TRUE(WriteFileAtomically(path, "#!/bin/sh\n" + body + "\n").ok());
    EXPECT_EQ(chmod(path.c_str(), 0755), 0);
    return path;
  }

  // One rank per script.
  LaunchRequest Request(const std::string& job_id, const std::vector<std::string>& scripts) {
    LaunchRequest request;
    request.job_id = job_id;
    request.attempt = 1;
    request.working_dir = dir_;
    request.run_dir = RunDir(job_id);
    for (size_t r = 0; r < scripts.size(); ++r) {
      RankSpec rank;
      rank.argv = {scripts[r], "arg-one"};
      rank.env = {{"RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(scripts.size())}};
      rank.log_path = LogPath(job_id, r);
      request.ranks.push_back(rank);
    }
    return request;
  }
  std::string RunDir(const std::string& job_id) { return JoinPath(dir_, "jobs/" + job_id + "/run"); }
  std::string LogPath(const std::string& job_id, size_t r) {
    return JoinPath(dir_, absl::StrCat("jobs/", job_id, "/logs/rank-", r, ".log"));
  }

  std::string dir_;
  Recorder recorder_;
  std::unique_ptr<LocalLauncher> launcher_;
};

TEST_F(LocalLauncherTest, EnvironmentArgvAndWorkingDirReachTheChild) {
  std::string script = Script("env", R"sh(echo "rank=$RANK world=$WORLD_SIZE job=$FOAK_JOB_ID arg=$1"
echo "pwd=$(pwd)"
echo "path=${PATH:+set} home=$HOME inherited=$FOAK_LAUNCHER_TEST_A$FOAK_LAUNCHER_TEST_B"
if [ -e /proc/$$/fd/$LEAK_FD ]; then echo "fd $LEAK_FD leaked"; else echo "fd closed"; fi)sh");
  // A descriptor the coordinator holds without O_CLOEXEC must not reach a worker.
  const int leak_fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(leak_fd, 3);
  // The coordinator's own environment reaches the worker (LD_LIBRARY_PATH,
  // PATH, HOME on a real host), overridden key by key.
  setenv("FOAK_LAUNCHER_TEST_A", "y", 1);
  setenv("FOAK_LAUNCHER_TEST_B", "es", 1);
  LaunchRequest request = Request("job-env", {script});
  request.ranks[0].env.emplace_back("LEAK_FD", std::to_string(leak_fd));
  request.ranks[0].env.emplace_back("HOME", "/overridden");
  request.ranks[0].env.emplace_back("FOAK_JOB_ID", "not-this");  // the launcher's wins
  ASSERT_TRUE(launcher_->Launch(request).ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-env");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kSucceeded);
  EXPECT_EQ(outcome->reason, "Completed");
  EXPECT_FALSE(outcome->retryable);
  EXPECT_EQ(outcome->attempt, 1);
  ASSERT_EQ(outcome->ranks.size(), 1u);
  EXPECT_EQ(outcome->ranks[0].exit_code, 0);
  EXPECT_EQ(recorder_.Lines("job-env"),
            (std::vector<std::string>{"rank=0 world=1 job=job-env arg=arg-one",
                                      "pwd=" + dir_, "path=set home=/overridden inherited=yes",
                                      "fd closed"}));
  close(leak_fd);
  EXPECT_FALSE(launcher_->IsRunning("job-env"));
}

TEST_F(LocalLauncherTest, StdoutAndStderrLandInTheLogAndComeThroughInOrder) {
  std::string script = Script("out", R"sh(echo out-1
echo err-1 >&2
echo out-2
head -c 5000 /dev/zero | tr '\0' x; echo
printf 'bad \377 byte\r\n'
printf 'last without newline')sh");
  const std::string log = LogPath("job-log", 0);
  ASSERT_TRUE(MakeDirs(JoinPath(dir_, "jobs/job-log/logs")).ok());
  ASSERT_TRUE(WriteFileAtomically(log, "from an earlier attempt\n").ok());
  ASSERT_TRUE(launcher_->Launch(Request("job-log", {script})).ok());
  ASSERT_TRUE(recorder_.WaitOutcome("job-log").has_value());
  std::vector<std::string> lines = recorder_.Lines("job-log");
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0], "out-1");
  EXPECT_EQ(lines[1], "err-1");
  EXPECT_EQ(lines[2], "out-2");
  EXPECT_EQ(lines[3], std::string(4096, 'x'));  // truncated
  EXPECT_EQ(lines[4], "bad \xEF\xBF\xBD byte");  // valid UTF-8, no '\r'
  EXPECT_EQ(lines[5], "last without newline");
  absl::StatusOr<std::string> contents = ReadFileToString(log);
  ASSERT_TRUE(contents.ok());
  EXPECT_TRUE(absl::StartsWith(*contents, "from an earlier attempt\nout-1\nerr-1\nout-2\n"));
  EXPECT_TRUE(absl::EndsWith(*contents, "\nlast without newline"));
}

TEST_F(LocalLauncherTest, ExitCodeTwoIsInvalidJobAndNotRetryable) {
  ASSERT_TRUE(launcher_->Launch(Request("job-2", {Script("two", "echo bad job file >&2; exit 2")}))
                  .ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-2");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kFailed);
  EXPECT_EQ(outcome->reason, "InvalidJob");
  EXPECT_FALSE(outcome->retryable);
  EXPECT_TRUE(absl::StrContains(outcome->message, "bad job file")) << outcome->message;
}

TEST_F(LocalLauncherTest, ExitCodeThreeIsANonFiniteStepAndNotRetryable) {
  ASSERT_TRUE(launcher_->Launch(Request("job-nan", {Script("nan", "echo 'step 7: the loss is nan' >&2; exit 3")}))
                  .ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-nan");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kFailed);
  EXPECT_EQ(outcome->reason, kReasonNonFinite);
  EXPECT_FALSE(outcome->retryable);
  EXPECT_TRUE(absl::StrContains(outcome->message, "exited with code 3 (a NaN or infinite loss"))
      << outcome->message;
  EXPECT_TRUE(absl::StrContains(outcome->message, "step 7: the loss is nan")) << outcome->message;
}

TEST_F(LocalLauncherTest, OtherExitCodeIsWorkerErrorWithTheLogTail) {
  std::string script = Script("four", "echo starting; echo 'boom: out of tokens' >&2; exit 4");
  ASSERT_TRUE(launcher_->Launch(Request("job-4", {script})).ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-4");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kFailed);
  EXPECT_EQ(outcome->reason, "WorkerError");
  EXPECT_TRUE(outcome->retryable);
  EXPECT_EQ(outcome->ranks[0].exit_code, 4);
  EXPECT_TRUE(absl::StrContains(outcome->message, "rank 0 exited with code 4")) << outcome->message;
  EXPECT_TRUE(absl::StrContains(outcome->message, "starting\nboom: out of tokens"))
      << outcome->message;
}

TEST_F(LocalLauncherTest, SignalWeDidNotSendIsKilled) {
  ASSERT_TRUE(launcher_->Launch(Request("job-kill", {Script("kill", "kill -9 $$")})).ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-kill");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kFailed);
  EXPECT_EQ(outcome->reason, "Killed");
  EXPECT_TRUE(outcome->retryable);
  EXPECT_EQ(outcome->ranks[0].signal, SIGKILL);
  EXPECT_TRUE(absl::StrContains(outcome->message, "SIGKILL (possibly the out-of-memory killer)"))
      << outcome->message;
}

TEST_F(LocalLauncherTest, CancelEscalatesToSigkillAfterTheGrace) {
  launcher_ = MakeLauncher(/*grace_ms=*/300);
  ASSERT_TRUE(
      launcher_->Launch(Request("job-stubborn", {Script("stubborn", "trap '' TERM; echo ready; "
                                                                    "sleep 30")}))
          .ok());
  ASSERT_TRUE(recorder_.WaitLine("job-stubborn", "ready"));
  const absl::Time start = absl::Now();
  ASSERT_TRUE(launcher_->Cancel("job-stubborn").ok());
  ASSERT_TRUE(launcher_->Cancel("job-stubborn").ok());  // again (it ignores TERM): harmless
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-stubborn");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  EXPECT_EQ(outcome->state, JobState::kCancelled);
  EXPECT_EQ(outcome->reason, "Cancelled");
  EXPECT_FALSE(outcome->retryable);
  EXPECT_EQ(outcome->ranks[0].signal, SIGKILL);
}

TEST_F(LocalLauncherTest, CancelOfAWorkerThatExitsOnTermIsQuick) {
  launcher_ = MakeLauncher(/*grace_ms=*/15000);
  ASSERT_TRUE(launcher_->Launch(Request("job-c", {Script("polite", "echo ready; sleep 30")})).ok());
  ASSERT_TRUE(recorder_.WaitLine("job-c", "ready"));
  EXPECT_TRUE(launcher_->IsRunning("job-c"));
  const absl::Time start = absl::Now();
  ASSERT_TRUE(launcher_->Cancel("job-c").ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-c");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // well inside the grace
  EXPECT_EQ(outcome->state, JobState::kCancelled);
  EXPECT_EQ(outcome->ranks[0].signal, SIGTERM);
  EXPECT_EQ(launcher_->Cancel("job-c").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(launcher_->Cancel("no-such-job").code(), absl::StatusCode::kNotFound);
}

TEST_F(LocalLauncherTest, FailingRankStopsTheGang) {
  std::string waits = Script("rank0", "echo rank0 up; sleep 30");
  std::string fails = Script("rank1", "echo \"rank $RANK of $WORLD_SIZE failing\" >&2; exit 4");
  ASSERT_TRUE(launcher_->Launch(Request("job-gang", {waits, fails})).ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-gang");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kFailed);
  EXPECT_EQ(outcome->reason, "GangMemberFailed");
  EXPECT_TRUE(outcome->retryable);
  ASSERT_EQ(outcome->ranks.size(), 2u);
  EXPECT_EQ(outcome->ranks[1].exit_code, 4);
  EXPECT_EQ(outcome->ranks[0].signal, SIGTERM);
  EXPECT_TRUE(absl::StrContains(outcome->message, "rank 1 exited with code 4")) << outcome->message;
  EXPECT_TRUE(absl::StrContains(outcome->message, "rank 1 of 2 failing")) << outcome->message;
  EXPECT_EQ(recorder_.Outcomes("job-gang"), 1);
}

// A rank killed outright and a rank that failed because it lost its peer
// (as Gloo's survivors do, ~0.1 s later), both found ended in one poll: the
// killed rank is the gang's failure, not the lower rank that noticed.
TEST_F(LocalLauncherTest, RankKilledOutrightIsNamedWhenSeveralEndInOnePoll) {
  launcher_ = MakeLauncher(/*grace_ms=*/2000, /*poll_ms=*/1500);
  std::string noticed = Script("noticed", "sleep 0.3; echo 'all-reduce failed' >&2; exit 1");
  std::string killed = Script("killed", "sleep 0.2; kill -9 $$");
  ASSERT_TRUE(launcher_->Launch(Request("job-both", {noticed, killed})).ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-both");
  ASSERT_TRUE(outcome.has_value());
  ASSERT_EQ(outcome->ranks.size(), 2u);
  EXPECT_EQ(outcome->ranks[0].exit_code, 1) << "rank 0 ended by itself, not by our SIGTERM";
  EXPECT_EQ(outcome->ranks[1].signal, SIGKILL);
  EXPECT_EQ(outcome->reason, "Killed");
  EXPECT_TRUE(absl::StrContains(outcome->message, "rank 1 was killed by SIGKILL"))
      << outcome->message;
}

TEST_F(LocalLauncherTest, MissingOrNonExecutableWorkerIsAClearError) {
  const std::string missing = JoinPath(dir_, "no-such-worker");
  absl::Status status = launcher_->Launch(Request("job-missing", {missing}));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), missing)) << status;
  EXPECT_FALSE(launcher_->IsRunning("job-missing"));

  const std::string plain = Script("plain", "exit 0");
  ASSERT_EQ(chmod(plain.c_str(), 0644), 0);
  status = launcher_->Launch(Request("job-plain", {plain}));
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), plain)) << status;

  // One bad rank of a gang: nothing starts.
  status = launcher_->Launch(Request("job-half", {Script("ok", "sleep 30"), missing}));
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(launcher_->RunningJobs(), 0);

  // Rank 1 fails after rank 0 started (its log path is a folder): rank 0 is
  // stopped and reaped again, and Launch names the rank and the path.
  LaunchRequest half = Request("job-late-fail", {Script("ok", "sleep 30"), Script("ok", "sleep 30")});
  ASSERT_TRUE(MakeDirs(half.ranks[1].log_path).ok());
  status = launcher_->Launch(half);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "rank 1")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), half.ranks[1].log_path)) << status;
  EXPECT_EQ(launcher_->RunningJobs(), 0);
  EXPECT_FALSE(PathExists(JoinPath(RunDir("job-late-fail"), "rank-0.pid")));
  EXPECT_EQ(recorder_.Outcomes("job-late-fail"), 0);
}

TEST_F(LocalLauncherTest, LaunchingARunningJobAgainIsRefused) {
  ASSERT_TRUE(launcher_->Launch(Request("job-twice", {Script("long", "sleep 30")})).ok());
  absl::Status again = launcher_->Launch(Request("job-twice", {Script("long", "sleep 30")}));
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  EXPECT_EQ(launcher_->RunningJobs(), 1);
  ASSERT_TRUE(launcher_->Cancel("job-twice").ok());
  ASSERT_TRUE(recorder_.WaitOutcome("job-twice").has_value());
  EXPECT_EQ(launcher_->RunningJobs(), 0);
}

TEST_F(LocalLauncherTest, PidFilesExistWhileRunningAndAreRemovedAfter) {
  ASSERT_TRUE(launcher_->Launch(Request("job-pid", {Script("pid", "echo ready; sleep 30")})).ok());
  const std::string pid_file = JoinPath(RunDir("job-pid"), "rank-0.pid");
  absl::StatusOr<std::string> contents = ReadFileToString(pid_file);
  ASSERT_TRUE(contents.ok()) << contents.status();
  absl::StatusOr<PidFileInfo> info = ParsePidFile(pid_file, *contents);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->job_id, "job-pid");
  EXPECT_EQ(info->attempt, 1);
  EXPECT_EQ(getpgid(info->pid), info->pid);  // its own process group
  EXPECT_TRUE(ProcessHasJobId(info->pid, "job-pid"));
  ASSERT_TRUE(launcher_->Cancel("job-pid").ok());
  ASSERT_TRUE(recorder_.WaitOutcome("job-pid").has_value());
  EXPECT_FALSE(PathExists(pid_file));
}

TEST_F(LocalLauncherTest, WhatARankLeavesInItsGroupDiesWithIt) {
  ASSERT_TRUE(launcher_->Launch(Request("job-bg", {Script("bg", "sleep 30 & echo child=$!")})).ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-bg");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kSucceeded);
  std::vector<std::string> lines = recorder_.Lines("job-bg");
  ASSERT_EQ(lines.size(), 1u);
  const pid_t child = static_cast<pid_t>(std::stol(lines[0].substr(6)));
  EXPECT_TRUE(Eventually([&] { return !ProcessAlive(child); }));
}

TEST_F(LocalLauncherTest, CallbacksMayCallBackIntoTheLauncher) {
  std::string script = Script("cb", "echo cancel-me; sleep 30");
  std::atomic<bool> running_in_on_exit{true};
  recorder_.SetHooks(
      [&](const LogLine& line) {
        if (line.text == "cancel-me") {
          EXPECT_TRUE(launcher_->Cancel(line.job_id).ok());
        }
      },
      [&](const LaunchOutcome& outcome) {
        running_in_on_exit = launcher_->IsRunning(outcome.job_id);
      });
  ASSERT_TRUE(launcher_->Launch(Request("job-cb", {script})).ok());
  std::optional<LaunchOutcome> outcome = recorder_.WaitOutcome("job-cb");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->state, JobState::kCancelled);
  EXPECT_FALSE(running_in_on_exit);
  recorder_.SetHooks(nullptr, nullptr);
}

// Starts `argv` in its own process group with exactly `env`, as a previous
// coordinator would have.
pid_t SpawnDetached(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<std::string> a = argv;
  std::vector<std::string> e = env;
  std::vector<char*> args;
  std::vector<char*> envp;
  for (std::string& s : a) args.push_back(s.data());
  for (std::string& s : e) envp.push_back(s.data());
  args.push_back(nullptr);
  envp.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], nullptr, &attr, args.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  return rc == 0 ? pid : -1;
}

// True once `pid` (our child) has ended; sets *signal to what killed it.
bool Reaped(pid_t pid, int* signal) {
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) != pid) return false;
  *signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return true;
}

TEST_F(LocalLauncherTest, KillOrphansKillsVerifiedGroupsOnly) {
  launcher_ = MakeLauncher(/*grace_ms=*/300);
  const std::string root = JoinPath(dir_, "jobs");
  // A leftover worker: ignores SIGTERM, so only the SIGKILL after the grace ends it.
  pid_t orphan = SpawnDetached({"/bin/sh", "-c", "trap '' TERM; sleep 30 & wait"},
                               {"PATH=/usr/bin:/bin", "FOAK_JOB_ID=job-orphan"});
  // An unrelated process whose pid a stale pid file happens to name.
  pid_t bystander = SpawnDetached({"/bin/sleep", "30"}, {"FOAK_JOB_ID=someone-else"});
  ASSERT_GT(orphan, 0);
  ASSERT_GT(bystander, 0);
  ASSERT_TRUE(Eventually([&] { return ProcessHasJobId(orphan, "job-orphan"); }));
  ASSERT_TRUE(MakeDirs(JoinPath(root, "job-orphan/run")).ok());
  ASSERT_TRUE(MakeDirs(JoinPath(root, "job-stale/run")).ok());
  const std::string orphan_file = JoinPath(root, "job-orphan/run/rank-0.pid");
  const std::string stale_file = JoinPath(root, "job-stale/run/rank-0.pid");
  ASSERT_TRUE(WriteFileAtomically(orphan_file, PidFileContents(orphan, "job-orphan", 0, 0)).ok());
  ASSERT_TRUE(WriteFileAtomically(stale_file, PidFileContents(bystander, "job-stale", 0, 0)).ok());

  absl::StatusOr<std::vector<std::string>> found = launcher_->KillOrphans(root);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, std::vector<std::string>{"job-orphan"});
  int signal = 0;
  EXPECT_TRUE(Eventually([&] { return Reaped(orphan, &signal); }));
  EXPECT_EQ(signal, SIGKILL);
  EXPECT_TRUE(Eventually([&] { return LiveProcessGroupMembers(orphan).empty(); }));
  int bystander_signal = 0;
  EXPECT_FALSE(Reaped(bystander, &bystander_signal));  // still alive
  EXPECT_TRUE(ProcessAlive(bystander));
  EXPECT_FALSE(PathExists(orphan_file));
  EXPECT_FALSE(PathExists(stale_file));

  kill(bystander, SIGKILL);
  EXPECT_TRUE(Eventually([&] { return Reaped(bystander, &bystander_signal); }));
  // Nothing to find: OK, empty.
  found = launcher_->KillOrphans(JoinPath(dir_, "absent"));
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->empty());
}

TEST_F(LocalLauncherTest, ShutdownLeavesNoChildAlive) {
  launcher_ = MakeLauncher(/*grace_ms=*/300);
  ASSERT_TRUE(launcher_->Launch(Request("job-a", {Script("a", "echo pid=$$; sleep 30")})).ok());
  ASSERT_TRUE(launcher_
                  ->Launch(Request("job-b", {Script("b", "trap '' TERM; sleep 30 & echo pid=$!; "
                                                         "echo pid=$$; wait")}))
                  .ok());
  ASSERT_TRUE(Eventually([&] {
    return recorder_.Lines("job-a").size() == 1 && recorder_.Lines("job-b").size() == 2;
  }));
  std::vector<pid_t> pids;
  for (const char* job : {"job-a", "job-b"}) {
    for (const std::string& line : recorder_.Lines(job)) {
      pids.push_back(static_cast<pid_t>(std::stol(line.substr(4))));
    }
  }
  launcher_->Shutdown();
  EXPECT_EQ(launcher_->RunningJobs(), 0);
  EXPECT_EQ(recorder_.Outcomes("job-a"), 1);  // delivered before Shutdown returned
  EXPECT_EQ(recorder_.Outcomes("job-b"), 1);
  EXPECT_EQ(recorder_.WaitOutcome("job-b")->state, JobState::kCancelled);
  for (pid_t pid : pids) {
    EXPECT_TRUE(Eventually([&] { return !ProcessAlive(pid); })) << pid;
  }
  launcher_->Shutdown();  // idempotent
  EXPECT_EQ(launcher_->Launch(Request("job-late", {Script("late", "exit 0")})).code(),
            absl::StatusCode::kUnavailable);
}

TEST(LogLineTextTest, InvalidUtf8BecomesReplacementCharacters) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(ValidUtf8("plain ascii"), "plain ascii");
  EXPECT_EQ(ValidUtf8("gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x98\x80");  // kept as is
  EXPECT_EQ(ValidUtf8("a\x80" "b"), "a" + r + "b");                  // stray continuation
  EXPECT_EQ(ValidUtf8("\xC0\xAF"), r + r);                        // overlong '/'
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80"), r + r + r);               // surrogate
  EXPECT_EQ(ValidUtf8("end \xE2\x82"), "end " + r + r);           // cut short
  std::string s = "ab\xE2\x82\xAC";
  TruncateUtf8(&s, 4);  // would split the euro sign
  EXPECT_EQ(s, "ab");
}

TEST(FakeLauncherTest, RecordsLaunchesAndFinishesOnRequest) {
  Recorder recorder;
  FakeLauncher fake(recorder.Callbacks());
  LaunchRequest request;
  request.job_id = "j";
  request.attempt = 2;
  ASSERT_TRUE(fake.Launch(request).ok());
  EXPECT_EQ(fake.Launch(request).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(fake.IsRunning("j"));
  ASSERT_TRUE(fake.EmitLog("j", 0, "hello").ok());
  EXPECT_EQ(recorder.Lines("j"), std::vector<std::string>{"hello"});
  ASSERT_TRUE(fake.Fail("j", "WorkerError", true).ok());
  std::optional<LaunchOutcome> outcome = recorder.WaitOutcome("j");
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->attempt, 2);
  EXPECT_EQ(outcome->reason, "WorkerError");
  EXPECT_FALSE(fake.IsRunning("j"));

  request.job_id = "k";
  ASSERT_TRUE(fake.Launch(request).ok());
  fake.SetAutoFinishOnCancel(false);
  ASSERT_TRUE(fake.Cancel("k").ok());
  EXPECT_TRUE(fake.IsRunning("k"));
  EXPECT_EQ(fake.cancels(), std::vector<std::string>{"k"});
  fake.Shutdown();
  EXPECT_EQ(recorder.WaitOutcome("k")->state, JobState::kCancelled);
  EXPECT_EQ(fake.launches().size(), 2u);
  EXPECT_EQ(fake.Cancel("nope").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace foak

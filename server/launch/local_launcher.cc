#include "server/launch/local_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "server/launch/process_util.h"

extern char** environ;

namespace foak {
namespace {

constexpr size_t kMaxLineBytes = 4096;    // LogLine::text
constexpr size_t kRecentLines = 20;       // log tail kept for the outcome's message
constexpr size_t kRecentBytes = 2048;     // ... and its size
constexpr size_t kRecentLineBytes = 512;  // one line of that tail
// Read per rank per poll, so one chatty rank cannot stall the others.
constexpr size_t kReadBudgetBytes = 4 << 20;

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Owns the posix_spawn attribute objects for one spawn.
class SpawnSetup {
 public:
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions_);
    posix_spawnattr_init(&attr_);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
  }
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LocalLauncher>> LocalLauncher::Create(LocalLauncherOptions options,
                                                                     Launcher::Callbacks callbacks) {
  if (options.grace_period_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grace_period_ms must be >= 0, got ", options.grace_period_ms));
  }
  if (options.poll_interval_ms < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("poll_interval_ms must be >= 1, got ", options.poll_interval_ms));
  }
  std::unique_ptr<LocalLauncher> launcher(new LocalLauncher(options, std::move(callbacks)));
  LocalLauncher* self = launcher.get();
  launcher->monitor_ = std::thread([self] { self->MonitorLoop(); });
  return launcher;
}

LocalLauncher::LocalLauncher(LocalLauncherOptions options, Launcher::Callbacks callbacks)
    : options_(options), callbacks_(std::move(callbacks)) {}

LocalLauncher::~LocalLauncher() { Shutdown(); }

absl::Status LocalLauncher::Launch(const LaunchRequest& request) {
  if (request.job_id.empty()) return absl::InvalidArgumentError("LaunchRequest.job_id is empty");
  if (request.ranks.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("LaunchRequest for job ", request.job_id, " has no ranks"));
  }
  if (request.run_dir.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("LaunchRequest.run_dir is empty for job ", request.job_id));
  }
  for (size_t r = 0; r < request.ranks.size(); ++r) {
    const RankSpec& spec = request.ranks[r];
    if (spec.argv.empty() || spec.log_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, " of job ", request.job_id,
                                                     " needs argv and log_path"));
    }
    RETURN_IF_ERROR(ResolveExecutable(spec.argv[0]).status());
  }
  if (!request.working_dir.empty()) {
    struct stat st;
    if (::stat(request.working_dir.c_str(), &st) != 0) {
      return ErrnoStatus("cannot use working_dir", request.working_dir, errno);
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("working_dir '", request.working_dir, "' is not a folder"));
    }
  }
  RETURN_IF_ERROR(MakeDirs(request.run_dir));

  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the launcher is shutting down");
  auto running = jobs_.find(request.job_id);
  if (running != jobs_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("job ", request.job_id,
                                                      " is already running (attempt ",
                                                      running->second.attempt, ")"));
  }
  Job job;
  job.job_id = request.job_id;
  job.attempt = request.attempt;
  job.ranks.resize(request.ranks.size());
  for (size_t r = 0; r < request.ranks.size(); ++r) {
    absl::Status spawned = SpawnRank(request, r, &job.ranks[r]);
    if (spawned.ok()) continue;
    // All or nothing: stop the ranks already started.
    for (Rank& rank : job.ranks) {
      if (rank.pid > 0) {
        ::kill(-rank.pid, SIGKILL);
        int status = 0;
        while (::waitpid(rank.pid, &status, 0) < 0 && errno == EINTR) {
        }
      }
      if (!rank.pid_file.empty()) ::unlink(rank.pid_file.c_str());
      if (rank.tail_fd >= 0) ::close(rank.tail_fd);
    }
    return absl::Status(spawned.code(), absl::StrCat("cannot start rank ", r, " of job ",
                                                     request.job_id, ": ", spawned.message()));
  }
  jobs_.emplace(request.job_id, std::move(job));
  wake_.Signal();
  return absl::OkStatus();
}

absl::Status LocalLauncher::SpawnRank(const LaunchRequest& request, size_t r, Rank* rank) {
  const RankSpec& spec = request.ranks[r];
  rank->index = static_cast<int64_t>(r);
  rank->log_path = spec.log_path;
  rank->exit.rank = rank->index;
  ASSIGN_OR_RETURN(std::string exe, ResolveExecutable(spec.argv[0]));
  RETURN_IF_ERROR(MakeDirs(Dirname(spec.log_path)));
  int log_fd = ::open(spec.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (log_fd < 0) return ErrnoStatus("cannot open log file", spec.log_path, errno);
  if (log_fd <= 2) {  // foakd started with stdio closed: keep the dup2s below apart
    int moved = ::fcntl(log_fd, F_DUPFD_CLOEXEC, 3);
    ::close(log_fd);
    if (moved < 0) return ErrnoStatus("cannot open log file", spec.log_path, errno);
    log_fd = moved;
  }
  struct stat st;
  if (::fstat(log_fd, &st) == 0) rank->offset = st.st_size;
  rank->tail_fd = ::open(spec.log_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (rank->tail_fd < 0) {
    int err = errno;
    ::close(log_fd);
    return ErrnoStatus("cannot read log file", spec.log_path, err);
  }

  std::vector<std::pair<std::string, std::string>> overrides = spec.env;
  overrides.emplace_back("FOAK_JOB_ID", request.job_id);
  std::vector<std::string> env = MergeEnvironment(environ, overrides);
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // In the child, in order: stdin from /dev/null, stdout+stderr into the log,
  // cwd, then every other descriptor closed; own process group; no blocked
  // and no ignored signals.
  SpawnSetup setup;
  posix_spawn_file_actions_addopen(&setup.actions_, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&setup.actions_, log_fd, 1);
  posix_spawn_file_actions_adddup2(&setup.actions_, log_fd, 2);
  if (!request.working_dir.empty()) {
    posix_spawn_file_actions_addchdir_np(&setup.actions_, request.working_dir.c_str());
  }
  posix_spawn_file_actions_addclosefrom_np(&setup.actions_, 3);
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setflags(&setup.attr_, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                             POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&setup.attr_, 0);
  posix_spawnattr_setsigmask(&setup.attr_, &none);
  posix_spawnattr_setsigdefault(&setup.attr_, &all);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, exe.c_str(), &setup.actions_, &setup.attr_, argv.data(), envp.data());
  ::close(log_fd);
  if (rc != 0) {
    return ErrnoStatus(request.working_dir.empty()
                           ? std::string("cannot start worker")
                           : absl::StrCat("cannot start worker (in '", request.working_dir, "')"),
                       exe, rc);
  }
  rank->pid = pid;
  rank->pid_file = JoinPath(request.run_dir, absl::StrCat("rank-", r, ".pid"));
  return WriteFileAtomically(rank->pid_file,
                             PidFileContents(pid, request.job_id, request.attempt, rank->index));
}

absl::Status LocalLauncher::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id, " has no running processes"));
  }
  StopJob(&it->second, "cancelled by request");
  wake_.Signal();
  return absl::OkStatus();
}

void LocalLauncher::StopJob(Job* job, const std::string& cancel_message) {
  if (!job->cancelled) {
    job->cancelled = true;
    job->cancel_message = cancel_message;
  }
  if (job->kill_sent) return;
  SignalRanks(job, SIGTERM);
  auto kill_at = Clock::now() + std::chrono::milliseconds(options_.grace_period_ms);
  if (!job->kill_at.has_value() || kill_at < *job->kill_at) job->kill_at = kill_at;
}

void LocalLauncher::SignalRanks(Job* job, int sig) {
  for (Rank& rank : job->ranks) {
    if (rank.reaped) continue;  // its group id may belong to someone else by now
    ::kill(-rank.pid, sig);
    rank.signaled = true;
  }
}

bool LocalLauncher::IsRunning(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  return jobs_.count(job_id) > 0;
}

int64_t LocalLauncher::RunningJobs() {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(jobs_.size());
}

absl::StatusOr<std::vector<std::string>> LocalLauncher::KillOrphans(const std::string& run_root) {
  std::set<std::string> mine;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : jobs_) mine.insert(id);
  }
  return KillOrphanProcessGroups(run_root, options_.grace_period_ms, mine);
}

void LocalLauncher::Shutdown() {
  auto stop_all = [this] {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, job] : jobs_) StopJob(&job, "stopped: the coordinator is shutting down");
    wake_.Signal();
  };
  if (std::this_thread::get_id() == monitor_.get_id()) {  // from a callback
    stop_all();
    return;
  }
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  stop_all();
  if (joined_) return;
  if (monitor_.joinable()) monitor_.join();
  joined_ = true;
}

void LocalLauncher::MonitorLoop() {
  while (true) {
    std::vector<LogLine> lines;
    std::vector<LaunchOutcome> outcomes;
    bool done = false;
    {
      absl::MutexLock lock(&mu_);
      PollLocked(&lines, &outcomes);
      done = stopping_ && jobs_.empty();
    }
    // Outside the lock: a callback may call back into the launcher.
    if (callbacks_.on_log) {
      for (const LogLine& line : lines) callbacks_.on_log(line);
    }
    if (callbacks_.on_exit) {
      for (const LaunchOutcome& outcome : outcomes) callbacks_.on_exit(outcome);
    }
    if (done) return;
    absl::MutexLock lock(&mu_);
    if (stopping_ && jobs_.empty()) continue;  // one more pass ends the loop
    wake_.WaitWithTimeout(&mu_, absl::Milliseconds(options_.poll_interval_ms));
  }
}

void LocalLauncher::PollLocked(std::vector<LogLine>* lines, std::vector<LaunchOutcome>* outcomes) {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    Job& job = it->second;
    std::vector<const Rank*> ended;  // in this pass
    for (Rank& rank : job.ranks) {
      if (rank.reaped) continue;
      ReadLog(job, &rank, /*final=*/false, lines);
      // Look without reaping first: while the leader is a zombie its pid,
      // hence the group id, cannot be reused, so killing what it left in its
      // group is safe.
      siginfo_t info;
      info.si_pid = 0;
      int rc = ::waitid(P_PID, static_cast<id_t>(rank.pid), &info, WEXITED | WNOHANG | WNOWAIT);
      if (rc == 0 && info.si_pid == 0) continue;  // still running
      int status = -1;
      if (rc == 0) {
        ::kill(-rank.pid, SIGKILL);
        while (::waitpid(rank.pid, &status, 0) < 0 && errno == EINTR) {
        }
      }  // else ECHILD: reaped elsewhere (SIGCHLD ignored?); the status is unknown
      ReapRank(&job, &rank, status, lines);
      ended.push_back(&rank);
    }
    NoteFirstFailure(&job, ended);
    if (job.kill_at.has_value() && !job.kill_sent && Clock::now() >= *job.kill_at) {
      SignalRanks(&job, SIGKILL);
      job.kill_sent = true;
    }
    bool all_reaped = std::all_of(job.ranks.begin(), job.ranks.end(),
                                  [](const Rank& r) { return r.reaped; });
    if (!all_reaped) {
      ++it;
      continue;
    }
    outcomes->push_back(BuildOutcome(job));
    it = jobs_.erase(it);
  }
}

void LocalLauncher::ReapRank(Job* job, Rank* rank, int status, std::vector<LogLine>* lines) {
  rank->reaped = true;
  if (status != -1 && WIFSIGNALED(status)) {
    rank->exit.signal = WTERMSIG(status);
  } else if (status != -1 && WIFEXITED(status)) {
    rank->exit.exit_code = WEXITSTATUS(status);
  }
  ReadLog(*job, rank, /*final=*/true, lines);
  ::close(rank->tail_fd);
  rank->tail_fd = -1;
  ::unlink(rank->pid_file.c_str());
}

void LocalLauncher::NoteFirstFailure(Job* job, const std::vector<const Rank*>& ended) {
  if (job->cancelled || job->first_failure.has_value()) return;
  // Several ranks found ended in one poll: the survivors of a lost peer fail
  // fast (Gloo's connection reset ends them ~0.1 s after it), so the rank
  // that was killed outright -- by a signal, or an exit code >= 128 as
  // `_exit(128 + sig)` and shells report one -- is the cause and is named,
  // not the lowest rank that merely noticed. Otherwise the lowest rank.
  auto killed = [](const Rank& r) { return r.exit.signal > 0 || r.exit.exit_code >= 128; };
  const Rank* cause = nullptr;
  for (const Rank* rank : ended) {
    if (rank->exit.exit_code == 0) continue;  // -1 (a signal or unknown) is a failure
    if (cause == nullptr || (killed(*rank) && !killed(*cause))) cause = rank;
  }
  if (cause == nullptr) return;
  job->first_failure = static_cast<size_t>(cause->index);
  SignalRanks(job, SIGTERM);  // the rest of the gang
  job->kill_at = Clock::now() + std::chrono::milliseconds(options_.grace_period_ms);
}

void LocalLauncher::ReadLog(const Job& job, Rank* rank, bool final, std::vector<LogLine>* lines) {
  char buf[1 << 16];
  size_t budget = final ? SIZE_MAX : kReadBudgetBytes;
  while (budget > 0) {
    ssize_t n = ::pread(rank->tail_fd, buf, sizeof(buf), static_cast<off_t>(rank->offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    rank->offset += n;
    budget -= std::min(budget, static_cast<size_t>(n));
    const char* p = buf;
    const char* end = buf + n;
    while (p < end) {
      const char* nl = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
      const char* stop = nl != nullptr ? nl : end;
      // Keep a few bytes past the limit so TruncateUtf8 can see where a
      // character ends; the rest of an over-long line is dropped.
      size_t room = kMaxLineBytes + 4 - std::min(rank->partial.size(), kMaxLineBytes + 4);
      rank->partial.append(p, std::min(room, static_cast<size_t>(stop - p)));
      if (nl == nullptr) break;
      AddLine(job, rank, std::move(rank->partial), lines);
      rank->partial.clear();
      p = nl + 1;
    }
  }
  if (final && !rank->partial.empty()) {
    AddLine(job, rank, std::move(rank->partial), lines);
    rank->partial.clear();
  }
}

void LocalLauncher::AddLine(const Job& job, Rank* rank, std::string text,
                            std::vector<LogLine>* lines) {
  if (!text.empty() && text.back() == '\r') text.pop_back();
  text = ValidUtf8(text);
  TruncateUtf8(&text, kMaxLineBytes);
  std::string recent = text;
  TruncateUtf8(&recent, kRecentLineBytes);
  rank->recent_bytes += recent.size() + 1;
  rank->recent.push_back(std::move(recent));
  while (rank->recent.size() > kRecentLines ||
         (rank->recent.size() > 1 && rank->recent_bytes > kRecentBytes)) {
    rank->recent_bytes -= rank->recent.front().size() + 1;
    rank->recent.pop_front();
  }
  lines->push_back(LogLine{job.job_id, job.attempt, rank->index, std::move(text)});
}

LaunchOutcome LocalLauncher::BuildOutcome(const Job& job) const {
  LaunchOutcome outcome;
  outcome.job_id = job.job_id;
  outcome.attempt = job.attempt;
  for (const Rank& rank : job.ranks) outcome.ranks.push_back(rank.exit);
  if (job.cancelled) {
    outcome.state = JobState::kCancelled;
    outcome.reason = kReasonCancelled;
    outcome.message = job.cancel_message;
    outcome.retryable = false;
    return outcome;
  }
  if (!job.first_failure.has_value()) {
    outcome.state = JobState::kSucceeded;
    outcome.reason = kReasonCompleted;
    outcome.message = absl::StrCat("all ", job.ranks.size(), " rank(s) exited with code 0");
    outcome.retryable = false;
    return outcome;
  }
  const Rank& failed = job.ranks[*job.first_failure];
  outcome.state = JobState::kFailed;
  std::string what;
  if (failed.exit.signal > 0) {
    outcome.reason = kReasonKilled;
    outcome.retryable = true;
    const int sig = failed.exit.signal;
    what = absl::StrCat("was killed by ", SignalName(sig),
                        sig == SIGKILL ? " (possibly the out-of-memory killer)"
                        : (sig == SIGSEGV || sig == SIGABRT || sig == SIGBUS || sig == SIGILL ||
                           sig == SIGFPE)
                            ? " (the worker crashed)"
                            : " (not sent by foakd)");
  } else if (WorkerExitMeaning meaning; MeaningOfWorkerExit(failed.exit.exit_code, &meaning)) {
    outcome.reason = meaning.reason;
    outcome.retryable = meaning.retryable;
    what = meaning.what;
  } else {
    outcome.reason = job.ranks.size() > 1 ? kReasonGangMemberFailed : kReasonWorkerError;
    outcome.retryable = true;
    what = failed.exit.exit_code >= 0
               ? absl::StrCat("exited with code ", failed.exit.exit_code)
               : std::string("ended with an unknown exit status (reaped elsewhere)");
  }
  outcome.message = absl::StrCat("rank ", failed.index, " ", what);
  if (job.ranks.size() > 1) {
    absl::StrAppend(&outcome.message, "; the other ", job.ranks.size() - 1,
                    " rank(s) were stopped");
  }
  if (failed.recent.empty()) {
    absl::StrAppend(&outcome.message, "; its log ", failed.log_path, " is empty");
  } else {
    absl::StrAppend(&outcome.message, "; last lines of ", failed.log_path, ":\n",
                    absl::StrJoin(failed.recent, "\n"));
  }
  return outcome;
}

}  // namespace foak

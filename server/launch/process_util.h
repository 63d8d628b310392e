// Helpers of the local launcher: resolving an executable, building a child's
// environment, pid files, finding and killing the process groups a previous
// coordinator left behind, and cleaning a line of worker output.
//
// Why orphan killing verifies through /proc: a pid file may outlive its
// process by days, and by then the pid can belong to anything (a user's
// shell, another job). A group is only killed when one of its live members
// carries FOAK_JOB_ID=<job> in its initial environment (/proc/<pid>/environ),
// which every rank gets from the launcher and passes on to what it spawns.
// /proc/<pid>/environ is readable only for our own user's processes, so a
// foreign process can never be verified, hence never killed. Linux only.
#ifndef FOAK_SERVER_LAUNCH_PROCESS_UTIL_H_
#define FOAK_SERVER_LAUNCH_PROCESS_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace foak {

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
void TruncateUtf8(std::string* s, size_t max);

// Replaces each byte that does not begin a valid UTF-8 sequence (stray
// continuation bytes, overlong forms, surrogates, > U+10FFFF) with U+FFFD:
// log lines end up in JSON and protobuf strings, and both reject bad UTF-8.
std::string ValidUtf8(const std::string& in);

// "SIGKILL", "SIGTERM", ... or "signal 42".
std::string SignalName(int sig);

// The path posix_spawn should run for argv[0]: kept when absolute, made
// absolute against the current folder when it contains a '/', else searched
// in $PATH (like execvp). NOT_FOUND / PERMISSION_DENIED / FAILED_PRECONDITION
// name the path when it is missing, not executable or not a regular file.
absl::StatusOr<std::string> ResolveExecutable(const std::string& path);

// `base` ("KEY=VALUE" entries, e.g. environ) with `overrides` replacing
// entries of the same key in place and the rest appended in order.
std::vector<std::string> MergeEnvironment(
    const char* const* base, const std::vector<std::pair<std::string, std::string>>& overrides);

// What a launcher writes to <run_dir>/rank-<r>.pid: "pid=..", "job_id=..",
// "attempt=..", "rank=.." lines. The pid is also the process group id.
std::string PidFileContents(pid_t pid, const std::string& job_id, int64_t attempt, int64_t rank);

struct PidFileInfo {
  std::string path;
  pid_t pid = -1;
  std::string job_id;
  int64_t attempt = 0;
  int64_t rank = 0;
};
// INVALID_ARGUMENT naming `path` when the pid or job_id line is missing.
absl::StatusOr<PidFileInfo> ParsePidFile(const std::string& path, const std::string& contents);

// Live (not zombie) processes whose process group is `pgid`, from /proc.
std::vector<pid_t> LiveProcessGroupMembers(pid_t pgid);

// True when `pid` is alive and not a zombie.
bool ProcessAlive(pid_t pid);

// True when /proc/<pid>/environ has exactly FOAK_JOB_ID=<job_id>.
bool ProcessHasJobId(pid_t pid, const std::string& job_id);

// Finds rank-<r>.pid files in `root` and up to three folders below it; for
// each whose recorded group still has a member verified as belonging to the
// recorded job (and the job is not in `skip_jobs`), sends SIGTERM to the
// group, waits up to `grace_ms` for the group to empty, then SIGKILLs what is
// left (verified again). Removes the pid files it read. Returns the ids of
// the jobs whose processes were found alive, sorted. OK and empty when `root`
// does not exist.
absl::StatusOr<std::vector<std::string>> KillOrphanProcessGroups(
    const std::string& root, int64_t grace_ms, const std::set<std::string>& skip_jobs);

}  // namespace foak

#endif  // FOAK_SERVER_LAUNCH_PROCESS_UTIL_H_

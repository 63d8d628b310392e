#include "server/launch/process_util.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"

namespace foak {

void TruncateUtf8(std::string* s, size_t max) {
  if (s->size() <= max) return;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>((*s)[cut]) & 0xC0) == 0x80) --cut;
  s->resize(cut);
}

std::string ValidUtf8(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000;
    }
    bool ok = len > 0 && i + len <= in.size();
    uint32_t cp = ok ? (c & (0x7Fu >> len)) : 0;
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(in[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    if (ok) {
      out.append(in, i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

std::string SignalName(int sig) {
  switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGSYS: return "SIGSYS";
    default: return absl::StrCat("signal ", sig);
  }
}

namespace {

absl::Status CheckExecutable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus("cannot run worker executable", path, errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run worker executable '", path, "': not a regular file"));
  }
  if (::access(path.c_str(), X_OK) != 0) {
    return ErrnoStatus("cannot run worker executable (not executable: chmod +x?)", path, errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ResolveExecutable(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("argv[0] (the executable) is empty");
  if (path.find('/') != std::string::npos) {
    std::string resolved = path;
    if (path[0] != '/') {
      char cwd[4096];
      if (::getcwd(cwd, sizeof(cwd)) == nullptr) return ErrnoStatus("cannot resolve", path, errno);
      resolved = JoinPath(cwd, path);
    }
    if (absl::Status s = CheckExecutable(resolved); !s.ok()) return s;
    return resolved;
  }
  const char* env_path = std::getenv("PATH");
  std::string search = env_path != nullptr ? env_path : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(search, ':', absl::SkipEmpty())) {
    std::string candidate = JoinPath(std::string(dir), path);
    if (CheckExecutable(candidate).ok()) return candidate;
  }
  return absl::NotFoundError(absl::StrCat("cannot run worker executable '", path,
                                          "': not found in PATH (", search,
                                          "); give an absolute path"));
}

std::vector<std::string> MergeEnvironment(
    const char* const* base, const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> out;
  std::map<std::string, size_t> index;  // key -> position in `out`
  auto set = [&](const std::string& key, std::string entry) {
    auto it = index.find(key);
    if (it != index.end()) {
      out[it->second] = std::move(entry);
    } else {
      index[key] = out.size();
      out.push_back(std::move(entry));
    }
  };
  for (const char* const* e = base; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    // The key first: an argument list that also moves `entry` leaves their
    // order of evaluation open (GCC moved first and lost every key).
    std::string key = entry.substr(0, eq);
    set(key, std::move(entry));
  }
  for (const auto& [key, value] : overrides) set(key, absl::StrCat(key, "=", value));
  return out;
}

std::string PidFileContents(pid_t pid, const std::string& job_id, int64_t attempt, int64_t rank) {
  return absl::StrCat("pid=", pid, "\njob_id=", job_id, "\nattempt=", attempt, "\nrank=", rank,
                      "\n");
}

absl::StatusOr<PidFileInfo> ParsePidFile(const std::string& path, const std::string& contents) {
  PidFileInfo info;
  info.path = path;
  bool has_pid = false;
  for (absl::string_view line : absl::StrSplit(contents, '\n', absl::SkipEmpty())) {
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    absl::string_view key = line.substr(0, eq);
    absl::string_view value = line.substr(eq + 1);
    int64_t number = 0;
    if (key == "pid" && absl::SimpleAtoi(value, &number) && number > 1) {
      info.pid = static_cast<pid_t>(number);
      has_pid = true;
    } else if (key == "job_id") {
      info.job_id = std::string(value);
    } else if (key == "attempt") {
      (void)absl::SimpleAtoi(value, &info.attempt);
    } else if (key == "rank") {
      (void)absl::SimpleAtoi(value, &info.rank);
    }
  }
  if (!has_pid || info.job_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pid file '", path, "' is not a launcher pid file (needs pid=<n> and job_id=<id> lines)"));
  }
  return info;
}

namespace {

// State and process group of /proc/<pid>/stat: "pid (comm) S ppid pgrp ...";
// comm may hold spaces and parentheses, so parse after the last ')'.
bool ReadStat(pid_t pid, char* state, pid_t* pgrp) {
  absl::StatusOr<std::string> stat = ReadFileToString(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return false;
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return false;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipEmpty());
  int64_t group = 0;
  if (fields.size() < 3 || fields[0].empty() || !absl::SimpleAtoi(fields[2], &group)) return false;
  *state = fields[0][0];
  *pgrp = static_cast<pid_t>(group);
  return true;
}

void FindPidFiles(const std::string& dir, int depth, std::vector<std::string>* out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> subdirs;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string path = JoinPath(dir, name);
    unsigned char type = e->d_type;
    if (type == DT_UNKNOWN) {
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0) continue;
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    }
    if (type == DT_DIR) {
      subdirs.push_back(path);
    } else if (type == DT_REG && name.rfind("rank-", 0) == 0 && name.size() > 9 &&
               name.compare(name.size() - 4, 4, ".pid") == 0) {
      out->push_back(path);
    }
  }
  ::closedir(d);
  if (depth <= 0) return;
  for (const std::string& sub : subdirs) FindPidFiles(sub, depth - 1, out);
}

// True when the group still has a live member that belongs to `job_id`.
bool GroupBelongsToJob(pid_t pgid, const std::string& job_id) {
  for (pid_t member : LiveProcessGroupMembers(pgid)) {
    if (ProcessHasJobId(member, job_id)) return true;
  }
  return false;
}

}  // namespace

std::vector<pid_t> LiveProcessGroupMembers(pid_t pgid) {
  std::vector<pid_t> members;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return members;
  while (struct dirent* e = ::readdir(d)) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || pid <= 0) continue;
    char state = 0;
    pid_t pgrp = 0;
    if (ReadStat(static_cast<pid_t>(pid), &state, &pgrp) && pgrp == pgid && state != 'Z' &&
        state != 'X') {
      members.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(d);
  return members;
}

bool ProcessAlive(pid_t pid) {
  char state = 0;
  pid_t pgrp = 0;
  return ReadStat(pid, &state, &pgrp) && state != 'Z' && state != 'X';
}

bool ProcessHasJobId(pid_t pid, const std::string& job_id) {
  absl::StatusOr<std::string> environ = ReadFileToString(absl::StrCat("/proc/", pid, "/environ"));
  if (!environ.ok()) return false;
  const std::string want = absl::StrCat("FOAK_JOB_ID=", job_id);
  for (absl::string_view entry : absl::StrSplit(*environ, '\0')) {
    if (entry == want) return true;
  }
  return false;
}

absl::StatusOr<std::vector<std::string>> KillOrphanProcessGroups(
    const std::string& root, int64_t grace_ms, const std::set<std::string>& skip_jobs) {
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::vector<std::string>{};
    return ErrnoStatus("cannot look for pid files in", root, errno);
  }
  std::vector<std::string> files;
  FindPidFiles(root, 3, &files);

  std::vector<PidFileInfo> killed;  // groups sent SIGTERM
  std::set<std::string> jobs;
  for (const std::string& file : files) {
    absl::StatusOr<std::string> contents = ReadFileToString(file);
    if (!contents.ok()) continue;
    absl::StatusOr<PidFileInfo> info = ParsePidFile(file, *contents);
    if (!info.ok()) continue;  // not ours: leave it
    if (skip_jobs.count(info->job_id) > 0) continue;
    if (GroupBelongsToJob(info->pid, info->job_id)) {
      ::kill(-info->pid, SIGTERM);
      jobs.insert(info->job_id);
      killed.push_back(*info);
    }
    ::unlink(file.c_str());
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (!killed.empty()) {
    killed.erase(std::remove_if(killed.begin(), killed.end(),
                                [](const PidFileInfo& p) {
                                  return LiveProcessGroupMembers(p.pid).empty();
                                }),
                 killed.end());
    if (killed.empty() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const PidFileInfo& p : killed) {
    // Verified again: the group id cannot have been reused while a member of
    // the job is still in it.
    if (GroupBelongsToJob(p.pid, p.job_id)) ::kill(-p.pid, SIGKILL);
  }
  return std::vector<std::string>(jobs.begin(), jobs.end());
}

}  // namespace foak

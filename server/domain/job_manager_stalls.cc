// JobManager, stall detection: an attempt that stops reporting is stopped,
// and so is one that never starts reporting.
//
// Why foakd and not the worker: a worker that hangs (a collective whose peer
// vanished without NCCL noticing, a dead NFS mount, a deadlock) cannot be
// trusted to notice itself, and its GPUs stay taken. Progress is any report
// the attempt's ranks send -- its start, a logged step, an evaluation, a
// checkpoint, a benchmark row -- so the timeout must exceed the slowest
// stretch between two of them: model loading before the start, and
// logging_steps x the step time or an evaluation or a save after it.
//
// Two clocks per attempt:
//  - the stall clock (stall_timeout_s): from the last report; locally also
//    from the launch, as a local worker starts at once. On Kubernetes it
//    starts at the first report: pods may wait for capacity or in Kueue's
//    queue, which is not a stall.
//  - the start clock (start_timeout_s, default 24 h): from the launch to the
//    first report, in both modes. Without it a job whose pods never start
//    (unschedulable, queued in Kueue forever, an image pull backoff the
//    launcher does not classify) would stay STARTING forever. Locally the
//    stall clock usually fires first; whichever deadline comes first wins.
//
// A stalled or never-started attempt is stopped through the launcher's
// Cancel (SIGTERM, then SIGKILL; on Kubernetes the Job is deleted). Its exit
// then arrives as "Cancelled", which TakeStall turns into a retryable failure
// with reason "Stalled" or "StartTimeout": the job restarts (from its newest
// checkpoint) while restarts < max_restarts, else fails, with a message that
// says how long it waited and what was heard last -- for a start timeout the
// launcher's newest word on each pod ("kubernetes: pod ... Pending:
// Unschedulable: ...") and the workers' newest output line.
//
// StartTimeout is retryable because what keeps pods from starting is mostly
// passing (a node pool scaling up, a full Kueue queue, a registry outage, a
// busy host) and an attempt that never started has lost no work; the
// launcher already fails at once, not retried, what cannot pass (an invalid
// image name, a worker that cannot execute: LaunchFailed), and max_restarts
// bounds the rest.
//
// A user's cancel that arrives meanwhile still wins (the job is CANCELLING).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/domain/job_manager.h"

namespace foak {
namespace {

constexpr char kReasonStalled[] = "Stalled";
constexpr char kReasonStartTimeout[] = "StartTimeout";
constexpr char kLauncherNotePrefix[] = "kubernetes: ";
// Launcher notes kept per attempt (one per pod or job), and said in a message.
constexpr size_t kMaxLauncherNotes = 64;
constexpr size_t kMaxNotesSaid = 3;

// What a launcher note is about: "job foak-j-0" or "pod foak-j-0-1-abcde"
// (the two words after the prefix), so a pod's newer note replaces its older.
std::string NoteSubject(const std::string& text) {
  const size_t start = sizeof(kLauncherNotePrefix) - 1;
  const size_t first = text.find(' ', start);
  const size_t second = first == std::string::npos ? first : text.find(' ', first + 1);
  return text.substr(start, second == std::string::npos ? std::string::npos : second - start);
}

std::string Heard(const WorkerReportInput& r) {
  const std::string rank = r.rank > 0 ? absl::StrCat(" from rank ", r.rank) : "";
  switch (r.kind) {
    case WorkerReportInput::Kind::kStarted:
      return absl::StrCat("the worker's start", rank);
    case WorkerReportInput::Kind::kMetrics:
      return absl::StrCat("step ", r.step, rank);
    case WorkerReportInput::Kind::kEval:
      return absl::StrCat("the evaluation at step ", r.step);
    case WorkerReportInput::Kind::kCheckpoint:
      return absl::StrCat("the checkpoint at step ", r.step);
    case WorkerReportInput::Kind::kBench:
      return absl::StrCat("benchmark row ", r.bench.index + 1);
  }
  return "a report";
}

// What the launcher and the workers last said of an attempt that never
// reported, for its StartTimeout message.
std::string LastWords(const std::map<std::string, std::string>& notes,
                      const std::string& last_output) {
  std::string out;
  if (!notes.empty()) {
    out = "; last status: ";
    size_t said = 0;
    for (const auto& [subject, text] : notes) {
      if (said == kMaxNotesSaid) {
        absl::StrAppend(&out, "; and ", notes.size() - said, " more");
        break;
      }
      absl::StrAppend(&out, said++ > 0 ? "; " : "", text);
    }
  }
  if (!last_output.empty()) absl::StrAppend(&out, "; last output: ", last_output);
  if (out.empty()) out = "; nothing was heard from the launcher or the workers";
  return out;
}

}  // namespace

void JobManager::TrackLaunch(const std::string& id, int64_t attempt,
                             int64_t spec_stall_timeout_s, int64_t spec_start_timeout_s) {
  auto pick = [](int64_t spec_s, int64_t foakd_ms) -> int64_t {
    return spec_s < 0 ? 0 : spec_s > 0 ? spec_s * 1000 : foakd_ms;
  };
  const int64_t timeout_ms = pick(spec_stall_timeout_s, options_.stall_timeout_ms);
  const int64_t start_timeout_ms = pick(spec_start_timeout_s, options_.start_timeout_ms);
  const int64_t now = options_.now_ms();
  absl::MutexLock lock(&mu_);
  stalled_.erase(id);
  if (timeout_ms <= 0 && start_timeout_ms <= 0) {
    liveness_.erase(id);
    return;
  }
  Liveness l;
  l.attempt = attempt;
  l.timeout_ms = timeout_ms;
  l.last_ms = now;
  l.last_heard = "the launch";
  l.armed = !cluster_;
  l.start_timeout_ms = start_timeout_ms;
  l.launched_ms = now;
  liveness_[id] = std::move(l);
}

void JobManager::ForgetLaunch(const std::string& id) {
  absl::MutexLock lock(&mu_);
  liveness_.erase(id);
}

void JobManager::NoteProgress(const WorkerReportInput& report) {
  const int64_t now = options_.now_ms();
  absl::MutexLock lock(&mu_);
  auto it = liveness_.find(report.job_id);
  if (it == liveness_.end() || it->second.attempt != report.attempt) return;
  Liveness& l = it->second;
  l.last_ms = now;
  l.last_heard = Heard(report);
  l.armed = true;
  if (!l.reported) {
    l.reported = true;
    l.launcher_notes.clear();
    l.last_output.clear();
  }
}

void JobManager::NoteLog(const LogLine& line) {
  absl::MutexLock lock(&mu_);
  auto it = liveness_.find(line.job_id);
  if (it == liveness_.end() || it->second.attempt != line.attempt || it->second.reported) return;
  Liveness& l = it->second;
  if (line.text.rfind(kLauncherNotePrefix, 0) == 0) {
    const std::string subject = NoteSubject(line.text);
    if (l.launcher_notes.size() < kMaxLauncherNotes || l.launcher_notes.count(subject) > 0) {
      l.launcher_notes[subject] = line.text;
    }
  } else {
    l.last_output = line.rank > 0 ? absl::StrCat("rank ", line.rank, ": ", line.text) : line.text;
  }
}

std::vector<std::string> JobManager::CheckStalls() {
  std::vector<std::string> stalled;
  const int64_t now = options_.now_ms();
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return stalled;
    for (auto it = liveness_.begin(); it != liveness_.end();) {
      const Liveness& l = it->second;
      const bool start_due = !l.reported && l.start_timeout_ms > 0 &&
                             now - l.launched_ms >= l.start_timeout_ms;
      const bool stall_due = l.armed && l.timeout_ms > 0 && now - l.last_ms >= l.timeout_ms;
      if (!start_due && !stall_due) {
        ++it;
        continue;
      }
      // Both due (a check that came late): the deadline that passed first.
      const bool start_first =
          start_due && (!stall_due || l.launched_ms + l.start_timeout_ms <= l.last_ms + l.timeout_ms);
      Stall stall{l, start_first ? kReasonStartTimeout : kReasonStalled, ""};
      if (start_first) {
        stall.message = absl::StrCat(
            "attempt ", l.attempt, " sent no report in the ", (now - l.launched_ms) / 1000,
            " s since its launch; the start timeout is ", l.start_timeout_ms / 1000,
            " s (the spec's start_timeout_s, else foakd's --start_timeout_s), so its workers "
            "were stopped",
            LastWords(l.launcher_notes, l.last_output));
      } else {
        stall.message = absl::StrCat(
            "attempt ", l.attempt, " sent no report for ", (now - l.last_ms) / 1000,
            " s (last heard: ", l.last_heard, "); the stall timeout is ", l.timeout_ms / 1000,
            " s (the spec's stall_timeout_s, else foakd's --stall_timeout_s), so its workers "
            "were stopped");
      }
      stalled_[it->first] = std::move(stall);
      stalled.push_back(it->first);
      it = liveness_.erase(it);
    }
  }
  for (const std::string& id : stalled) {
    absl::Status stop = launcher_->Cancel(id);
    if (stop.ok()) continue;
    absl::MutexLock lock(&mu_);
    auto it = stalled_.find(id);
    if (it == stalled_.end()) continue;
    if (!absl::IsNotFound(stop)) {
      // The launcher could not stop it now (e.g. the API server is down):
      // watch it again, so the next check tries once more.
      liveness_.emplace(id, it->second.liveness);
    }
    // NOT_FOUND: already gone; its exit came or comes as it is.
    stalled_.erase(it);
  }
  return stalled;
}

LaunchOutcome JobManager::TakeStall(const LaunchOutcome& outcome) {
  LaunchOutcome seen = outcome;
  absl::MutexLock lock(&mu_);
  liveness_.erase(outcome.job_id);
  auto it = stalled_.find(outcome.job_id);
  if (it == stalled_.end()) return seen;
  if (outcome.state == JobState::kCancelled && outcome.attempt == it->second.liveness.attempt) {
    seen.state = JobState::kFailed;
    seen.reason = it->second.reason;
    seen.retryable = true;  // both: see the top of this file
    seen.message = it->second.message;
  }
  stalled_.erase(it);
  return seen;
}

void JobManager::StallLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time until =
          absl::Now() + absl::Milliseconds(options_.stall_check_interval_ms);
      while (!shutting_down_ && absl::Now() < until) {
        shutdown_cv_.WaitWithDeadline(&mu_, until);
      }
      if (shutting_down_) return;
    }
    CheckStalls();
  }
}

}  // namespace foak

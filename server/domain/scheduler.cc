#include "server/domain/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace foak {

Scheduler::Scheduler(SchedulerOptions options) : options_(std::move(options)) {
  if (options_.cpu_slots < 1) options_.cpu_slots = 1;
  free_ = options_.gpu_ids;
  std::sort(free_.begin(), free_.end());
  free_.erase(std::unique(free_.begin(), free_.end()), free_.end());
  options_.gpu_ids = free_;
}

absl::Status Scheduler::CheckFits(int64_t gpus) const {
  if (gpus < 0) {
    return absl::InvalidArgumentError(absl::StrCat("resources.gpus = ", gpus, "; expected >= 0"));
  }
  if (options_.cluster) return absl::OkStatus();
  if (gpus > total_gpus()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job asks for ", gpus, " GPU(s) but this foakd has ", total_gpus(),
        " in all; ask for at most ", total_gpus(), total_gpus() == 0 ? " (0 = a CPU job)" : ""));
  }
  return absl::OkStatus();
}

std::vector<Placement> Scheduler::Schedule(std::vector<QueuedJob> queue) {
  std::stable_sort(queue.begin(), queue.end(), [](const QueuedJob& a, const QueuedJob& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.order < b.order;
  });
  std::vector<Placement> placed;
  bool gpu_pool_blocked = false;
  bool cpu_pool_blocked = false;
  for (const QueuedJob& job : queue) {
    if (held_.count(job.id) > 0) continue;
    Placement p;
    p.job_id = job.id;
    p.gpus = job.gpus;
    if (options_.cluster) {
      // held_ only remembers that the job was placed.
    } else if (job.gpus == 0) {
      if (cpu_pool_blocked) continue;
      if (cpu_running_ >= options_.cpu_slots) {
        cpu_pool_blocked = true;
        continue;
      }
      ++cpu_running_;
    } else {
      if (gpu_pool_blocked) continue;
      if (job.gpus > free_gpus()) {
        gpu_pool_blocked = true;
        continue;
      }
      p.gpu_ids.assign(free_.begin(), free_.begin() + job.gpus);
      free_.erase(free_.begin(), free_.begin() + job.gpus);
    }
    held_[job.id] = p;
    placed.push_back(std::move(p));
  }
  return placed;
}

void Scheduler::Release(const std::string& job_id) {
  auto it = held_.find(job_id);
  if (it == held_.end()) return;
  if (options_.cluster) {
    // nothing held here
  } else if (it->second.gpu_ids.empty()) {
    --cpu_running_;
  } else {
    free_.insert(free_.end(), it->second.gpu_ids.begin(), it->second.gpu_ids.end());
    std::sort(free_.begin(), free_.end());
  }
  held_.erase(it);
}

}  // namespace foak

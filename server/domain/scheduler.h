// Scheduler: which queued jobs start now, and on which GPUs. Pure decisions,
// no I/O or clock, so every rule is unit-tested directly (the JobManager owns
// the locking and acts on the placements).
//
// Rules:
//  - Order: higher priority first; within a priority, first come first
//    served (the job's creation order).
//  - Gang: a job gets all the GPUs it asks for at once, or none; it never
//    holds a partial set while waiting (no deadlock between two jobs that
//    each hold half of what they need).
//  - No overtaking within a pool: once a job of a pool (GPU jobs, CPU jobs)
//    does not fit, later jobs of that pool wait too, even small ones, so a
//    large job is never starved by a stream of small ones. CPU jobs
//    (gpus = 0) use CPU slots and never wait behind GPU jobs, nor GPU jobs
//    behind them. A CPU job takes one slot whatever its number of ranks
//    (resources.processes): a slot is a job, not a core.
//  - A job asking for more GPUs than the host has is refused when created
//    (CheckFits, RESOURCE_EXHAUSTED), so the queue never holds one that can
//    never start.
//  - Cluster mode (the Kubernetes launcher): foakd does not own the GPUs, the
//    cluster's scheduler (and Kueue, when a job names a queue) does, and it
//    queues pods that do not fit. Every queued job is placed at once, highest
//    priority first, without GPU ids; CheckFits accepts any size.
#ifndef FOAK_SERVER_DOMAIN_SCHEDULER_H_
#define FOAK_SERVER_DOMAIN_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace foak {

struct SchedulerOptions {
  std::vector<int> gpu_ids;  // the host's GPUs (CUDA indices) this foakd may use
  int64_t cpu_slots = 1;     // CPU jobs (gpus = 0) that may run at once, >= 1
  bool cluster = false;      // the cluster places jobs (see the file comment)
};

struct QueuedJob {
  std::string id;
  int64_t priority = 0;
  int64_t gpus = 0;
  int64_t order = 0;  // creation order: smaller = earlier
};

struct Placement {
  std::string job_id;
  std::vector<int> gpu_ids;  // empty for a CPU job, and in cluster mode
  int64_t gpus = 0;          // GPUs per node the job asked for (0 = a CPU job)
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options);

  int64_t total_gpus() const { return static_cast<int64_t>(options_.gpu_ids.size()); }
  int64_t free_gpus() const { return static_cast<int64_t>(free_.size()); }
  int64_t running_cpu_jobs() const { return cpu_running_; }

  // RESOURCE_EXHAUSTED when `gpus` exceeds the host's GPUs.
  absl::Status CheckFits(int64_t gpus) const;

  // Picks the jobs of `queue` (any order) that start now under the rules
  // above and reserves their resources. Jobs already placed are skipped.
  std::vector<Placement> Schedule(std::vector<QueuedJob> queue);

  // Returns a job's resources; a no-op for a job that holds none.
  void Release(const std::string& job_id);

  bool Holds(const std::string& job_id) const { return held_.count(job_id) > 0; }

  // False when no job could start now whatever the queue holds: every GPU is
  // held and every CPU slot taken (always true in cluster mode). The
  // JobManager then skips reading the queue, so a backlog of thousands costs
  // a new job nothing while the host is full (issue 9's load bench).
  bool HasRoom() const {
    return options_.cluster || !free_.empty() || cpu_running_ < options_.cpu_slots;
  }

 private:
  SchedulerOptions options_;
  std::vector<int> free_;  // sorted
  int64_t cpu_running_ = 0;
  std::map<std::string, Placement> held_;
};

}  // namespace foak

#endif  // FOAK_SERVER_DOMAIN_SCHEDULER_H_

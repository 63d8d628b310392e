// The scheduler's rules: priority then FIFO, gang placement (all GPUs or
// none), no overtaking within a pool, CPU jobs in their own slots, and
// RESOURCE_EXHAUSTED for a job that could never fit.
#include "server/domain/scheduler.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace foak {
namespace {

std::vector<std::string> Ids(const std::vector<Placement>& placed) {
  std::vector<std::string> ids;
  for (const Placement& p : placed) ids.push_back(p.job_id);
  return ids;
}

TEST(Scheduler, PriorityFirstThenFirstComeFirstServed) {
  Scheduler s({{0, 1, 2, 3}, 1});
  auto placed = s.Schedule({{"late-low", 0, 1, 3}, {"early-low", 0, 1, 1}, {"high", 5, 1, 2},
                            {"early-low-2", 0, 1, 2}});
  EXPECT_EQ(Ids(placed), (std::vector<std::string>{"high", "early-low", "early-low-2", "late-low"}));
  EXPECT_EQ(s.free_gpus(), 0);
}

TEST(Scheduler, GangGetsAllItsGpusOrWaitsAndBlocksLaterGpuJobs) {
  Scheduler s({{0, 1, 2, 3}, 1});
  auto first = s.Schedule({{"a", 0, 3, 1}});
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].gpu_ids, (std::vector<int>{0, 1, 2}));
  // "big" needs 2 with 1 free: it waits, and the 1-GPU job behind it waits too
  // (no overtaking), so big is never starved by small jobs.
  auto second = s.Schedule({{"big", 0, 2, 2}, {"small", 0, 1, 3}});
  EXPECT_TRUE(second.empty());
  EXPECT_EQ(s.free_gpus(), 1);
  s.Release("a");
  auto third = s.Schedule({{"big", 0, 2, 2}, {"small", 0, 1, 3}});
  ASSERT_EQ(third.size(), 2u);
  EXPECT_EQ(third[0].job_id, "big");
  EXPECT_EQ(third[0].gpu_ids, (std::vector<int>{0, 1}));
  EXPECT_EQ(third[1].gpu_ids, (std::vector<int>{2}));
}

TEST(Scheduler, CpuJobsUseSlotsAndNeverWaitBehindGpuJobs) {
  Scheduler s({{0}, 2});
  auto placed = s.Schedule({{"gpu-big", 0, 1, 1}, {"gpu-blocked", 0, 1, 2}, {"cpu-1", 0, 0, 3},
                            {"cpu-2", 0, 0, 4}, {"cpu-3", 0, 0, 5}});
  EXPECT_EQ(Ids(placed), (std::vector<std::string>{"gpu-big", "cpu-1", "cpu-2"}));
  EXPECT_TRUE(placed[1].gpu_ids.empty());
  EXPECT_EQ(s.running_cpu_jobs(), 2);
  s.Release("cpu-1");
  EXPECT_EQ(Ids(s.Schedule({{"cpu-3", 0, 0, 5}})), (std::vector<std::string>{"cpu-3"}));
}

// A full host (every GPU held, every CPU slot taken) has no room, so the
// JobManager skips reading the queue (issue 9: a 12k backlog was read on every
// new job); any release, or cluster mode, makes room again.
TEST(Scheduler, HasRoomUntilEveryGpuAndCpuSlotIsTaken) {
  Scheduler s({{0, 1}, 1});
  EXPECT_TRUE(s.HasRoom());
  EXPECT_EQ(s.Schedule({{"gpu", 0, 2, 1}}).size(), 1u);
  EXPECT_TRUE(s.HasRoom());  // the CPU slot is free
  EXPECT_EQ(s.Schedule({{"cpu", 0, 0, 2}}).size(), 1u);
  EXPECT_FALSE(s.HasRoom());
  EXPECT_TRUE(s.Schedule({{"waits", 0, 1, 3}, {"waits-too", 0, 0, 4}}).empty());
  s.Release("cpu");
  EXPECT_TRUE(s.HasRoom());
  EXPECT_EQ(Ids(s.Schedule({{"waits", 0, 1, 3}, {"waits-too", 0, 0, 4}})),
            (std::vector<std::string>{"waits-too"}));
  EXPECT_FALSE(s.HasRoom());
  s.Release("gpu");
  EXPECT_TRUE(s.HasRoom());

  SchedulerOptions cluster;
  cluster.cluster = true;
  Scheduler c(cluster);
  EXPECT_EQ(c.Schedule({{"a", 0, 8, 1}, {"b", 0, 0, 2}}).size(), 2u);
  EXPECT_TRUE(c.HasRoom());
}

TEST(Scheduler, AlreadyPlacedJobsAreSkippedAndReleaseIsIdempotent) {
  Scheduler s({{0, 1}, 1});
  EXPECT_EQ(s.Schedule({{"a", 0, 1, 1}}).size(), 1u);
  EXPECT_TRUE(s.Holds("a"));
  EXPECT_TRUE(s.Schedule({{"a", 0, 1, 1}}).empty());
  s.Release("a");
  s.Release("a");
  s.Release("never-placed");
  EXPECT_EQ(s.free_gpus(), 2);
}

TEST(Scheduler, CheckFitsRefusesWhatCouldNeverRun) {
  Scheduler none({{}, 1});
  absl::Status s = none.CheckFits(1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("has 0"), std::string::npos) << s;
  EXPECT_NE(s.message().find("0 = a CPU job"), std::string::npos) << s;
  EXPECT_TRUE(none.CheckFits(0).ok());
  Scheduler two({{0, 1}, 1});
  EXPECT_TRUE(two.CheckFits(2).ok());
  EXPECT_EQ(two.CheckFits(3).code(), absl::StatusCode::kResourceExhausted);
}

// Cluster mode (the Kubernetes launcher): the cluster owns the GPUs and
// queues pods that do not fit, so every queued job is handed on at once, by
// priority, with its size and no GPU ids; any size fits.
TEST(Scheduler, ClusterModePlacesEveryJobAtOnceWithoutGpuIds) {
  SchedulerOptions options;
  options.cluster = true;
  Scheduler s(options);
  EXPECT_TRUE(s.CheckFits(64).ok());
  auto placed = s.Schedule({{"cpu", 0, 0, 1}, {"big", 0, 16, 2}, {"urgent", 9, 8, 3}});
  EXPECT_EQ(Ids(placed), (std::vector<std::string>{"urgent", "cpu", "big"}));
  EXPECT_EQ(placed[0].gpus, 8);
  EXPECT_TRUE(placed[0].gpu_ids.empty());
  EXPECT_EQ(placed[2].gpus, 16);
  // Placed jobs are not placed twice; a released one may be placed again.
  EXPECT_TRUE(s.Schedule({{"big", 0, 16, 2}}).empty());
  s.Release("big");
  EXPECT_EQ(Ids(s.Schedule({{"big", 0, 16, 2}, {"more", 0, 0, 4}})),
            (std::vector<std::string>{"big", "more"}));
}

}  // namespace
}  // namespace foak

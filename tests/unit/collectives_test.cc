// Collectives over Gloo with ranks as threads: sums, broadcasts and barriers
// give every rank the same, correct values, through both the in-process store
// and a real TCPStore on a local port.
#include "worker/parallel/collectives.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace foak {
namespace {

bool HasGloo() {
  auto names = Collectives::AvailableBackends();
  return std::find(names.begin(), names.end(), "gloo") != names.end();
}

// Runs body(rank) on `world` threads and joins them.
void RunRanks(int world, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back(body, r);
  for (auto& t : threads) t.join();
}

void ExerciseGroup(Collectives& group) {
  const int rank = group.rank(), world = group.world_size();
  // Sum: rank r contributes (r + 1) * [1, 2, 3] and a scalar r.
  std::vector<at::Tensor> tensors = {at::arange(1, 4, at::kFloat) * (rank + 1),
                                     at::full({}, static_cast<double>(rank), at::kDouble)};
  absl::Status sum = group.AllReduceSum(tensors);
  ASSERT_TRUE(sum.ok()) << sum;
  const double total = world * (world + 1) / 2.0;
  EXPECT_TRUE(at::equal(tensors[0], at::arange(1, 4, at::kFloat) * total)) << tensors[0];
  EXPECT_EQ(tensors[1].item<double>(), world * (world - 1) / 2.0);

  // Broadcast from the last rank.
  std::vector<at::Tensor> b = {at::full({5}, static_cast<double>(rank * 10), at::kFloat)};
  ASSERT_TRUE(group.Broadcast(b, world - 1).ok());
  EXPECT_TRUE(at::equal(b[0], at::full({5}, (world - 1) * 10.0, at::kFloat))) << b[0];
  EXPECT_TRUE(group.Barrier().ok());
}

TEST(CollectivesTest, GlooThreadsThroughInProcessStore) {
  if (!HasGloo()) GTEST_SKIP() << "this build has no Gloo";
  auto store = Collectives::MakeInProcessStore();
  RunRanks(3, [&](int rank) {
    CollectivesOptions o;
    o.rank = rank;
    o.world_size = 3;
    auto group = Collectives::CreateInProcess(o, store);
    ASSERT_TRUE(group.ok()) << group.status();
    ExerciseGroup(**group);
  });
}

TEST(CollectivesTest, GlooThreadsThroughTcpStore) {
  if (!HasGloo()) GTEST_SKIP() << "this build has no Gloo";
  // A port unlikely to clash between concurrent test runs.
  const uint16_t port = static_cast<uint16_t>(29500 + (::getpid() % 20000));
  RunRanks(2, [&](int rank) {
    CollectivesOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.timeout = std::chrono::seconds(60);
    auto group = Collectives::CreateWithTcpStore(o, "127.0.0.1", port);
    ASSERT_TRUE(group.ok()) << group.status();
    ExerciseGroup(**group);
  });
}

TEST(CollectivesTest, BadRankAndMissingBackendAreClearErrors) {
  CollectivesOptions o;
  o.rank = 2;
  o.world_size = 2;
  auto bad = Collectives::CreateInProcess(o, Collectives::MakeInProcessStore());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rank 2 with world size 2"), std::string::npos);

  auto names = Collectives::AvailableBackends();
  if (std::find(names.begin(), names.end(), "nccl") == names.end()) {
    o.rank = 0;
    o.world_size = 1;
    o.backend = CollectiveBackend::kNccl;
    auto nccl = Collectives::CreateInProcess(o, Collectives::MakeInProcessStore());
    ASSERT_FALSE(nccl.ok());
    EXPECT_EQ(nccl.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(nccl.status().message().find("'nccl' is not in this build"), std::string::npos)
        << nccl.status();
  }
}

}  // namespace
}  // namespace foak

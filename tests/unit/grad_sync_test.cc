// GradSync over Gloo with two ranks as threads: after backward the gradients
// hold the sum over ranks of each rank's gradient (checked against the same
// sums computed on one rank), over several buckets of mixed dtypes, with
// gradient accumulation (earlier micro-batches start nothing), with a
// parameter no loss touches, and with buckets started from the hooks during
// backward (the overlap); ResetGrads zeroes them for the next step.
#include "worker/parallel/grad_sync.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "worker/parallel/dist_env.h"

namespace foak {
namespace {

bool HasGloo() {
  auto names = Collectives::AvailableBackends();
  return std::find(names.begin(), names.end(), "gloo") != names.end();
}

// A small "model": a chain of three weights (fp32, fp64, fp32) and one
// parameter that no loss uses, first in model order so that it lands in the
// LAST bucket (buckets fill in reverse order; one that never gets ready holds
// back those after it until Finish). Every rank gets equal copies of one set
// of values (drawn on the main thread: the generator is process-wide).
struct Params {
  std::vector<at::Tensor> all;
  std::vector<std::string> names = {"unused", "w1", "w2", "w0"};
  static const std::vector<at::Tensor>& Values() {
    static const std::vector<at::Tensor> values = [] {
      at::manual_seed(7);
      return std::vector<at::Tensor>{at::randn({3}), at::randn({16, 16}, at::kDouble),
                                     at::randn({4, 16}), at::randn({16, 8})};
    }();
    return values;
  }
  Params() {
    for (const at::Tensor& v : Values()) all.push_back(v.clone().set_requires_grad(true));
  }
};

// The loss of one micro-batch `x` (rows x 8).
at::Tensor Loss(const Params& p, const at::Tensor& x) {
  at::Tensor h = at::tanh(at::matmul(x, p.all[3].t()));
  h = at::tanh(at::matmul(h.to(at::kDouble), p.all[1].t())).to(at::kFloat);
  return at::matmul(h, p.all[2].t()).pow(2).sum();
}

// Micro-batch `micro` of `rank` (drawn once, on the main thread).
const at::Tensor& Input(int rank, int micro) {
  static const std::vector<at::Tensor> inputs = [] {
    std::vector<at::Tensor> v;
    at::manual_seed(100);
    for (int i = 0; i < 4; ++i) v.push_back(at::randn({5, 8}));
    return v;
  }();
  return inputs[static_cast<size_t>(2 * rank + micro)];
}

TEST(GradSyncTest, GradientsAreSummedOverRanksWithAccumulationAndOverlap) {
  if (!HasGloo()) GTEST_SKIP() << "this build has no Gloo";
  constexpr int kWorld = 2, kMicro = 2;
  // Reference: every rank's micro-batches on one "rank".
  Params ref;  // also draws the shared values before the threads start
  for (int r = 0; r < kWorld; ++r) {
    for (int m = 0; m < kMicro; ++m) Loss(ref, Input(r, m)).backward();
  }
  auto store = Collectives::MakeInProcessStore();
  std::vector<std::vector<at::Tensor>> grads(kWorld);
  std::vector<int64_t> buckets(kWorld), in_backward(kWorld);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < kWorld; ++rank) {
    threads.emplace_back([&, rank] {
      CollectivesOptions o;
      o.rank = rank;
      o.world_size = kWorld;
      auto comm = Collectives::CreateInProcess(o, store);
      ASSERT_TRUE(comm.ok()) << comm.status();
      Params p;
      GradSyncOptions options;
      options.first_bucket_bytes = 64;  // w2 alone, then one bucket per dtype run
      options.bucket_bytes = 512;
      auto sync = GradSync::Create(comm->get(), p.names, p.all, options);
      ASSERT_TRUE(sync.ok()) << sync.status();
      for (int step = 0; step < 2; ++step) {  // the second step checks ResetGrads
        for (int m = 0; m < kMicro; ++m) {
          (*sync)->BeginMicroBatch(m + 1 == kMicro);
          Loss(p, Input(rank, m)).backward();
        }
        absl::Status s = (*sync)->Finish();
        ASSERT_TRUE(s.ok()) << s;
        if (step == 0) (*sync)->ResetGrads();
      }
      buckets[rank] = (*sync)->num_buckets();
      in_backward[rank] = (*sync)->buckets_started_in_backward();
      for (const at::Tensor& t : p.all) grads[rank].push_back(t.grad().clone());
    });
  }
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < kWorld; ++rank) {
    ASSERT_EQ(grads[rank].size(), 4u);
    for (size_t i = 1; i < 4; ++i) {
      EXPECT_TRUE(at::allclose(grads[rank][i], ref.all[i].grad(), 1e-5, 1e-6))
          << "rank " << rank << " " << ref.names[i];
    }
    EXPECT_TRUE(at::equal(grads[rank][0], at::zeros({3}))) << "unused parameter";
    EXPECT_GE(buckets[rank], 3);
    // Only the bucket holding the unused parameter waits for Finish.
    EXPECT_GE(in_backward[rank], buckets[rank] - 1) << "rank " << rank;
  }
}

TEST(GradSyncTest, RefusesFrozenOrMixedDeviceParameters) {
  auto store = Collectives::MakeInProcessStore();
  CollectivesOptions o;
  o.world_size = 1;
  auto comm = Collectives::CreateInProcess(o, store);
  if (!comm.ok()) GTEST_SKIP() << comm.status();
  at::Tensor frozen = at::zeros({2});
  auto sync = GradSync::Create(comm->get(), {"frozen"}, {frozen}, {});
  ASSERT_FALSE(sync.ok());
  EXPECT_NE(sync.status().message().find("frozen"), absl::string_view::npos) << sync.status();
  EXPECT_NE(sync.status().message().find("trainable leaf"), absl::string_view::npos);
}

TEST(DistEnvTest, ReadsTorchrunVariablesAndNamesBadOnes) {
  std::map<std::string, std::string> vars;
  auto get = [&vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  auto single = ReadDistEnv(get);
  ASSERT_TRUE(single.ok());
  EXPECT_FALSE(single->distributed());
  vars = {{"RANK", "0"}, {"WORLD_SIZE", "1"}};
  EXPECT_TRUE(ReadDistEnv(get).ok()) << "foakd's one-rank job";
  vars = {{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
          {"MASTER_ADDR", "10.0.0.5"}, {"MASTER_PORT", "29500"}};
  auto env = ReadDistEnv(get);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "10.0.0.5");
  EXPECT_EQ(env->master_port, 29500);
  EXPECT_EQ(env->Describe(), "rank 3 of 4 (local rank 1), rendezvous at 10.0.0.5:29500");
  // LOCAL_RANK defaults to RANK on one host.
  vars = {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}};
  ASSERT_TRUE(ReadDistEnv(get).ok());
  EXPECT_EQ(ReadDistEnv(get)->local_rank, 1);

  auto error = [&](std::map<std::string, std::string> v) {
    vars = std::move(v);
    auto e = ReadDistEnv(get);
    EXPECT_FALSE(e.ok());
    return std::string(e.status().message());
  };
  EXPECT_NE(error({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
                .find("RANK is not set"),
            std::string::npos);
  EXPECT_NE(error({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
                .find("RANK = '2'; expected an integer in [0, 1]"),
            std::string::npos);
  EXPECT_NE(error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}})
                .find("MASTER_ADDR is not set"),
            std::string::npos);
  EXPECT_NE(error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "x"}})
                .find("MASTER_PORT = 'x'"),
            std::string::npos);
  EXPECT_NE(error({{"WORLD_SIZE", "0"}}).find("WORLD_SIZE = '0'"), std::string::npos);
  EXPECT_NE(error({{"RANK", "1"}}).find("RANK must be 0"), std::string::npos);
  EXPECT_NE(error({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"},
                   {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
                .find("need LOCAL_RANK"),
            std::string::npos);
}

}  // namespace
}  // namespace foak

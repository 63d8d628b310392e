// NCCL through foak's Collectives on the GPU host: a one-rank group (the
// multi-GPU cases come with data parallelism) must sum and broadcast CUDA
// tensors in place and shut down cleanly.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <vector>

#include "worker/parallel/collectives.h"

namespace foak {
namespace {

TEST(CollectivesCudaTest, NcclOneRankAllReduceAndBroadcast) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto names = Collectives::AvailableBackends();
  ASSERT_NE(std::find(names.begin(), names.end(), "nccl"), names.end())
      << "a CUDA build must have NCCL";
  CollectivesOptions o;
  o.backend = CollectiveBackend::kNccl;
  auto group = Collectives::CreateInProcess(o, Collectives::MakeInProcessStore());
  ASSERT_TRUE(group.ok()) << group.status();
  auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  std::vector<at::Tensor> t = {at::arange(0, 8, opts), at::ones({3, 5}, opts.dtype(at::kFloat))};
  const at::Tensor before = t[0].clone();
  absl::Status s = (*group)->AllReduceSum(t);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(at::equal(t[0], before));  // one rank: the sum is the value itself
  EXPECT_TRUE(at::equal(t[1], at::ones({3, 5}, opts.dtype(at::kFloat))));
  s = (*group)->Broadcast(t, 0);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE((*group)->Barrier().ok());
}

}  // namespace
}  // namespace foak

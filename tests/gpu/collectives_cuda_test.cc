// NCCL through foak's Collectives on the GPU host with a one-rank group (NCCL
// refuses two ranks on one GPU; the multi-GPU cases are
// scripts/dp_gpu_check.sh's): sums, broadcasts, reduce-scatter and
// all-gather of CUDA tensors in place, and GradSync's buckets on CUDA --
// gradient-accumulator hooks starting NCCL sums during backward, and the
// ZeRO-1 path (bucket flats cast to bf16, reduce-scatter into this rank's
// slice, all-gather of the updated parameters, masters gathered to the host).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <vector>

#include "worker/parallel/collectives.h"
#include "worker/parallel/grad_sync.h"

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

absl::StatusOr<std::unique_ptr<Collectives>> OneRankNccl() {
  CollectivesOptions o;
  o.backend = CollectiveBackend::kNccl;
  return Collectives::CreateInProcess(o, Collectives::MakeInProcessStore());
}

// Three CUDA parameters in model order and a loss over them; the reference
// gradients come from the same loss without GradSync.
struct CudaParams {
  std::vector<std::string> names = {"w0", "w1", "w2"};
  std::vector<at::Tensor> all;
  explicit CudaParams(at::ScalarType dtype) {
    at::manual_seed(3);
    auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    all = {at::randn({64, 32}, opts), at::randn({48, 64}, opts), at::randn({5, 48}, opts)};
    for (at::Tensor& t : all) t.set_requires_grad(true);
  }
  at::Tensor Loss(const at::Tensor& x) const {
    at::Tensor h = at::tanh(at::matmul(x.to(all[0].scalar_type()), all[0].t()));
    h = at::tanh(at::matmul(h, all[1].t()));
    return at::matmul(h, all[2].t()).to(at::kFloat).pow(2).sum();
  }
};

at::Tensor Input(int micro) {
  at::manual_seed(50 + micro);
  return at::randn({7, 32}, at::TensorOptions().device(at::kCUDA));
}

TEST(CollectivesCudaTest, NcclReduceScatterAndAllGatherInPlace) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto group = OneRankNccl();
  ASSERT_TRUE(group.ok()) << group.status();
  auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  at::Tensor flat = at::arange(0, 96, opts);
  const at::Tensor expected = flat.clone();
  auto work = (*group)->StartReduceScatterSum(flat);
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_TRUE((*work)->Wait().ok());
  EXPECT_TRUE(at::equal(flat, expected));
  at::Tensor gathered = at::zeros({96}, opts);
  gathered.copy_(expected);
  ASSERT_TRUE((*group)->AllGatherInto(gathered, gathered.narrow(0, 0, 96)).ok());
  EXPECT_TRUE(at::equal(gathered, expected));
}

TEST(CollectivesCudaTest, GradSyncBucketsOnCudaMatchPlainBackward) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  CudaParams ref(at::kFloat);
  for (int m = 0; m < 2; ++m) ref.Loss(Input(m)).backward();
  auto group = OneRankNccl();
  ASSERT_TRUE(group.ok()) << group.status();
  CudaParams p(at::kFloat);
  GradSyncOptions options;
  options.first_bucket_bytes = 1024;  // w2 alone, then the rest
  options.bucket_bytes = 8 << 10;
  auto sync = GradSync::Create(group->get(), p.names, p.all, options);
  ASSERT_TRUE(sync.ok()) << sync.status();
  for (int step = 0; step < 2; ++step) {  // the second checks ResetGrads
    for (int m = 0; m < 2; ++m) {
      (*sync)->BeginMicroBatch(m == 1);
      p.Loss(Input(m)).backward();
    }
    absl::Status s = (*sync)->Finish();
    ASSERT_TRUE(s.ok()) << s;
    for (size_t i = 0; i < p.all.size(); ++i) {
      EXPECT_TRUE(at::allclose(p.all[i].grad(), ref.all[i].grad(), 1e-5, 1e-5))
          << "step " << step << " " << p.names[i];
      EXPECT_TRUE(p.all[i].grad().is_cuda());
    }
    EXPECT_GE((*sync)->num_buckets(), 2);
    EXPECT_EQ((*sync)->buckets_started_in_backward(), (*sync)->num_buckets())
        << "every bucket's sum starts from a hook during backward";
    (*sync)->ResetGrads();
  }
}

TEST(CollectivesCudaTest, ZeroStageOneShardsOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  CudaParams ref(at::kFloat);
  // The bf16 model's own gradients: what one rank's reduce-scatter must
  // give back unchanged.
  std::vector<at::Tensor> ref16;
  for (const at::Tensor& t : ref.all) ref16.push_back(t.detach().to(at::kBFloat16).requires_grad_());
  {
    at::Tensor h = at::tanh(at::matmul(Input(0).to(at::kBFloat16), ref16[0].t()));
    h = at::tanh(at::matmul(h, ref16[1].t()));
    at::matmul(h, ref16[2].t()).to(at::kFloat).pow(2).sum().backward();
  }
  auto group = OneRankNccl();
  ASSERT_TRUE(group.ok()) << group.status();
  CudaParams p(at::kFloat);
  GradSyncOptions options;
  options.shard_params = true;
  options.param_dtype = at::kBFloat16;  // bf16-mixed: bf16 params, fp32 masters
  options.first_bucket_bytes = 1024;
  options.bucket_bytes = 8 << 10;
  auto sync = GradSync::Create(group->get(), p.names, p.all, options);
  ASSERT_TRUE(sync.ok()) << sync.status();
  const std::vector<GradShard>& shards = (*sync)->shards();
  ASSERT_GE(shards.size(), 2u);
  for (const at::Tensor& t : p.all) EXPECT_EQ(t.scalar_type(), at::kBFloat16);
  (*sync)->BeginMicroBatch(true);
  p.Loss(Input(0)).backward();
  ASSERT_TRUE((*sync)->Finish().ok());
  // One rank's slice is the whole bucket: its reduce-scattered gradient is
  // the bf16 model's gradient.
  for (size_t i = 0; i < p.all.size(); ++i) {
    EXPECT_EQ(p.all[i].grad().scalar_type(), at::kBFloat16);
    const at::Tensor diff = (p.all[i].grad().to(at::kFloat) - ref16[i].grad().to(at::kFloat)).abs();
    EXPECT_TRUE(at::allclose(p.all[i].grad().to(at::kFloat), ref16[i].grad().to(at::kFloat), 1e-2,
                             1e-2))
        << p.names[i] << ": max |diff| " << diff.max().item<float>() << " of max |grad| "
        << ref16[i].grad().abs().max().item<float>();
  }
  // An "optimizer step" on the fp32 masters: the slices take master - 1, the
  // all-gather brings them back into every parameter.
  std::vector<at::Tensor> masters;
  for (const GradShard& shard : shards) {
    ASSERT_TRUE(shard.initial.defined());
    EXPECT_EQ(shard.initial.scalar_type(), at::kFloat);
    masters.push_back(shard.initial.clone() - 1);
    shard.params.copy_(masters.back());
  }
  ASSERT_TRUE((*sync)->AllGatherParams().ok());
  for (size_t i = 0; i < p.all.size(); ++i) {
    EXPECT_TRUE(at::allclose(p.all[i].detach().to(at::kFloat), ref.all[i].detach() - 1, 1e-2, 1e-2))
        << p.names[i];
  }
  auto host = (*sync)->GatherToHost(masters);
  ASSERT_TRUE(host.ok()) << host.status();
  for (size_t i = 0; i < p.all.size(); ++i) {
    const at::Tensor& h = host->at(p.names[i]);
    EXPECT_FALSE(h.is_cuda());
    EXPECT_EQ(h.sizes(), ref.all[i].sizes());
    EXPECT_TRUE(at::allclose(h, ref.all[i].detach().cpu() - 1, 1e-6, 1e-6)) << p.names[i];
  }
}

}  // namespace
}  // namespace foak

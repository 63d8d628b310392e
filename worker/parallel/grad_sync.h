// GradSync: the gradient half of data-parallel training, as PyTorch's
// DistributedDataParallel does it, without wrapping the model:
//
//  - Every trainable parameter's .grad is a view into a flat bucket (about
//    bucket_bytes each, one dtype per bucket, filled in REVERSE parameter
//    order because backward produces the last layers' gradients first).
//    Autograd accumulates into the views in place, so the buckets need no
//    copy in or out, and gradient accumulation over micro-batches simply adds.
//  - A post hook on each parameter's gradient accumulator counts the
//    parameter ready in the step's LAST micro-batch; when all of a bucket's
//    parameters are ready, its sum over ranks is started right away, so the
//    communication runs while backward computes the earlier layers.
//    Micro-batches before the last start nothing (DDP's no_sync).
//  - Buckets start strictly in index order (a ready bucket waits for the ones
//    before it): every rank issues the same collectives in the same order even
//    if its hooks fire in another order. Buckets with parameters that got no
//    gradient are started by Finish(), holding zeros for them.
//  - The buckets hold the SUM over ranks. The trainer divides the loss by the
//    target tokens of all ranks together, so that sum is the gradient of the
//    job's mean token loss, the same as one rank with the whole batch.
//
// Sharded optimizer state (ZeRO stage 1, options.shard_params): the
// parameters themselves also become views into flat buckets with the same
// layout as the gradients, each bucket padded to a multiple of the world size
// and cut into world_size equal slices. Rank r's optimizer updates only slice
// r of every bucket (shards(): its parameters, summed gradients and, for fp32
// master weights, their values before the cast to param_dtype), and
// AllGatherParams() then gives every rank all the updated slices. So the
// moments and master weights take 1/world_size of the memory on each rank.
// The buckets are then REDUCE-SCATTERED, not all-reduced: after Finish() only
// this rank's slice of each gradient bucket holds sums (on NCCL; Gloo sums all
// of it), and reduce-scatter plus all-gather move as many bytes as DDP's
// all-reduce alone.
//
// The buckets take the parameters' device and dtype (or param_dtype) when
// GradSync is made; a bucket never mixes dtypes or groups (e.g. weight-decay
// groups, whose slices the optimizer updates with different settings).
#ifndef FOAK_WORKER_PARALLEL_GRAD_SYNC_H_
#define FOAK_WORKER_PARALLEL_GRAD_SYNC_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/parallel/collectives.h"

namespace foak {

struct GradSyncOptions {
  int64_t bucket_bytes = 25ll << 20;     // DDP's default bucket_cap_mb = 25
  int64_t first_bucket_bytes = 1ll << 20;  // the first (last layers') bucket starts soonest
  bool shard_params = false;             // ZeRO stage 1: see above
  // With shard_params: the dtype the parameters are cast to as they move into
  // their buckets (bf16 for bf16-mixed); unset = keep theirs.
  std::optional<at::ScalarType> param_dtype;
};

// This rank's slice of one bucket (shard_params only).
struct GradShard {
  int group = 0;      // the group of the bucket's parameters
  at::Tensor params;  // 1-D view into the parameters' bucket
  at::Tensor grads;   // 1-D view into the gradients' bucket (the sums, after Finish)
  at::Tensor initial; // the slice's values before the cast to param_dtype (a copy)
};

class GradSync {
 public:
  // `params` (with `names`, for errors): the trainable parameters, in model
  // order, all on one device. `comm` must outlive this. Their gradients
  // become zeroed bucket views.
  // `groups` (empty = all 0): one per parameter; buckets never mix groups.
  static absl::StatusOr<std::unique_ptr<GradSync>> Create(Collectives* comm,
                                                          std::vector<std::string> names,
                                                          std::vector<at::Tensor> params,
                                                          const GradSyncOptions& options,
                                                          std::vector<int> groups = {});
  ~GradSync();  // removes the hooks
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // Before each micro-batch's backward; `last`: this one completes the step,
  // so its backward starts the sums.
  void BeginMicroBatch(bool last);
  // After the last micro-batch's backward: starts the buckets no hook
  // started and waits for all of them. The gradients then hold the sum over
  // ranks (sharded: only this rank's slices are sure to). Errors: a failed collective, or a parameter whose gradient was
  // accumulated twice in one backward (its bucket had already been sent).
  absl::Status Finish();
  // Zeroes the buckets and makes every parameter's .grad its bucket view
  // again (the optimizer releases gradients after a step).
  void ResetGrads();

  // shard_params: this rank's slices, one per bucket, in bucket order.
  const std::vector<GradShard>& shards() const;
  // shard_params: every rank's updated slices to every rank, in place.
  absl::Status AllGatherParams();
  // shard_params: every rank's slice of per-bucket values shaped like
  // shards() (e.g. the optimizer's fp32 masters), gathered bucket by bucket
  // into host memory and returned per parameter name, shaped like the
  // parameter. A collective: every rank calls it.
  absl::StatusOr<std::map<std::string, at::Tensor>> GatherToHost(
      const std::vector<at::Tensor>& slices);
  // Frees the `initial` copies (once the optimizer has taken them).
  void DropInitialShards();

  // "numel:name,name;..." per bucket: two runs whose layouts are equal cut
  // their buckets, hence their shards, the same way.
  std::string Layout() const;
  int64_t num_buckets() const;
  // Buckets the last step started from hooks, i.e. during backward
  // (the rest were started by Finish); for tests and logs.
  int64_t buckets_started_in_backward() const;

  struct State;  // shared with the hooks (opaque)

 private:
  explicit GradSync(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

// Copies rank `root`'s values of `tensors` to every rank (in place), e.g. the
// trainable parameters before training so all ranks start equal.
absl::Status BroadcastTensors(Collectives& comm, std::vector<at::Tensor> tensors, int root);

}  // namespace foak

#endif  // FOAK_WORKER_PARALLEL_GRAD_SYNC_H_

#include "worker/train/data_parallel.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/cuda.h>

#include <stdlib.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/train/train_job.h"

namespace foak {

absl::StatusOr<torch::Device> ResolveRankDevice(const std::string& device_name, const DistEnv& env) {
  if (!env.distributed()) return ResolveDevice(device_name);
  if (device_name.rfind("cuda:", 0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device = '", device_name, "' with WORLD_SIZE = ", env.world_size,
        ": each rank trains on cuda:LOCAL_RANK; set device to \"cuda\" or \"auto\""));
  }
  ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(device_name));
  if (!device.is_cuda()) return device;
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (env.local_rank >= count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "LOCAL_RANK = ", env.local_rank, " but this host shows ", count,
        " CUDA device(s); start at most one rank per visible GPU (CUDA_VISIBLE_DEVICES)"));
  }
  torch::Device rank_device(torch::kCUDA, static_cast<torch::DeviceIndex>(env.local_rank));
  // Make it the current device too, so nothing lands on GPU 0 by default.
  c10::impl::getDeviceGuardImpl(torch::kCUDA)->setDevice(rank_device);
  return rank_device;
}

absl::StatusOr<RankContext> JoinRanks(const JobConfig& job) {
  RankContext context;
  ASSIGN_OR_RETURN(context.env, DistEnvFromEnvironment());
  ASSIGN_OR_RETURN(context.device, ResolveRankDevice(job.device, context.env));
  if (!context.env.distributed()) return context;
  CollectivesOptions options;
  options.backend = context.device.is_cuda() ? CollectiveBackend::kNccl : CollectiveBackend::kGloo;
  if (options.backend == CollectiveBackend::kNccl) {
    // A collective that outlives ddp_timeout (a peer died or hangs) makes
    // NCCL's watchdog end this process rather than leave it waiting; the
    // launcher then sees the gang fail. (LibTorch's default since 2.2;
    // said here so that no other default applies. The user's value wins.)
    ::setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "3", /*overwrite=*/0);
    // Before it ends the process the watchdog sleeps 4 x the flight
    // recorder's dump wait (15 s by default in LibTorch 2.11): measured on
    // two H200s, a survivor took ddp_timeout + 62 s to go. We keep no
    // flight-recorder dumps, so the wait is cut to 4 x 0.5 s; a user who
    // wants the dumps sets both variables.
    ::setenv("TORCH_NCCL_DUMP_ON_TIMEOUT", "0", /*overwrite=*/0);
    ::setenv("TORCH_NCCL_WAIT_TIMEOUT_DUMP_MILSEC", "500", /*overwrite=*/0);
  }
  options.device_index = context.device.is_cuda() ? context.device.index() : 0;
  options.timeout = std::chrono::seconds(job.hyperparameters.ddp_timeout);
  absl::StatusOr<std::unique_ptr<Collectives>> comm =
      Collectives::CreateFromEnv(context.env, options);
  if (!comm.ok()) {
    return absl::Status(comm.status().code(),
                        absl::StrCat("joining the job's ranks as ", context.env.Describe(), ": ",
                                     comm.status().message()));
  }
  context.comm = *std::move(comm);
  return context;
}

}  // namespace foak

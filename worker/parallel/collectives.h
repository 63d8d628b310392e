// Collectives: the few c10d operations data parallelism needs (sum all-reduce,
// broadcast, barrier), over Gloo on CPU or NCCL on CUDA, behind one class so
// the trainer never sees c10d or the LibTorch version differences
// (worker/torch_compat_c10d.h).
//
// Ranks meet through a c10d store: a TCPStore (rank 0 hosts it) across
// processes, or a HashStore shared by threads in tests. Joining is a
// rendezvous: every rank writes its arrival into the store and waits for all
// the others, so a rank that never comes fails the others within the timeout
// with an error that names it, instead of a hang or an anonymous timeout.
#ifndef FOAK_WORKER_PARALLEL_COLLECTIVES_H_
#define FOAK_WORKER_PARALLEL_COLLECTIVES_H_

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/parallel/dist_env.h"

namespace foak {

// An in-process rendezvous store shared by the threads of a test (opaque).
struct InProcessStore;

enum class CollectiveBackend { kGloo, kNccl };

struct CollectivesOptions {
  CollectiveBackend backend = CollectiveBackend::kGloo;
  int rank = 0;
  int world_size = 1;
  // For the rendezvous, and for every collective afterwards (NCCL's
  // watchdog aborts a collective that waits longer).
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  // NCCL: the CUDA device this rank uses (its tensors live there).
  int device_index = 0;
  // Named in errors: where the rendezvous store is ("10.0.0.5:29500").
  std::string store_address = "in-process store";
};

// A collective that was started and has not been waited for (opaque).
class CollectiveWork {
 public:
  virtual ~CollectiveWork() = default;
  // Blocks until done; on NCCL, until the collective is queued on the
  // current CUDA stream (the stream then waits for it, the host does not).
  virtual absl::Status Wait() = 0;
};

class Collectives {
 public:
  // Which backends this build has ("gloo", "nccl").
  static std::vector<std::string> AvailableBackends();

  // Joins the group through a TCPStore at host:port (rank 0 serves it).
  static absl::StatusOr<std::unique_ptr<Collectives>> CreateWithTcpStore(
      const CollectivesOptions& options, const std::string& host, uint16_t port);
  // Joins the job described by the environment (dist_env.h): a TCPStore at
  // MASTER_ADDR:MASTER_PORT that rank 0 serves.
  static absl::StatusOr<std::unique_ptr<Collectives>> CreateFromEnv(const DistEnv& env,
                                                                    CollectivesOptions options);
  // Joins through a store that every rank's thread shares (tests).
  static absl::StatusOr<std::unique_ptr<Collectives>> CreateInProcess(
      const CollectivesOptions& options, const std::shared_ptr<InProcessStore>& store);
  static std::shared_ptr<InProcessStore> MakeInProcessStore();

  ~Collectives();
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }

  // In place: every tensor becomes the sum over ranks. Each rank passes the
  // same list (shapes and dtypes, in order); dtypes may differ between entries.
  absl::Status AllReduceSum(std::vector<at::Tensor>& tensors);
  // Starts an in-place sum of one tensor; it must not be touched until the
  // returned work is waited for. Every rank must start the same collectives
  // in the same order.
  absl::StatusOr<std::unique_ptr<CollectiveWork>> StartAllReduceSum(at::Tensor tensor);
  // Starts a sum over ranks of `flat` of which this rank keeps only its
  // slice: afterwards flat.narrow(0, rank * n, n), n = flat.numel() /
  // world_size, holds the sums (in place; the rest of `flat` is undefined).
  // On NCCL a reduce-scatter (half the traffic of an all-reduce); Gloo, which
  // lacks one, sums all of it.
  absl::StatusOr<std::unique_ptr<CollectiveWork>> StartReduceScatterSum(at::Tensor flat);
  // `shard` is this rank's slice of `flat` (flat.numel() = world_size *
  // shard.numel(), slice r at r * shard.numel()); afterwards `flat` holds
  // every rank's slice. Started and waited for.
  absl::Status AllGatherInto(at::Tensor flat, at::Tensor shard);
  // In place: every rank gets `root`'s values.
  absl::Status Broadcast(std::vector<at::Tensor>& tensors, int root);
  // Returns when every rank has called it (a one-element sum on NCCL, whose
  // own barrier has to guess the device).
  absl::Status Barrier();

 private:
  struct State;
  Collectives(const CollectivesOptions& options, std::unique_ptr<State> state);
  // Creates the backend over state->store.
  static absl::StatusOr<std::unique_ptr<Collectives>> Join(const CollectivesOptions& options,
                                                           std::unique_ptr<State> state);
  CollectivesOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace foak

#endif  // FOAK_WORKER_PARALLEL_COLLECTIVES_H_

// Collectives: the few c10d operations data parallelism needs (sum all-reduce,
// broadcast, barrier), over Gloo on CPU or NCCL on CUDA, behind one class so
// the trainer never sees c10d or the LibTorch version differences
// (worker/torch_compat_c10d.h).
//
// Ranks meet through a c10d store: a TCPStore (rank 0 hosts it) across
// processes, or a HashStore shared by threads in tests.
#ifndef FOAK_WORKER_PARALLEL_COLLECTIVES_H_
#define FOAK_WORKER_PARALLEL_COLLECTIVES_H_

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace foak {

// An in-process rendezvous store shared by the threads of a test (opaque).
struct InProcessStore;

enum class CollectiveBackend { kGloo, kNccl };

struct CollectivesOptions {
  CollectiveBackend backend = CollectiveBackend::kGloo;
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
};

class Collectives {
 public:
  // Which backends this build has ("gloo", "nccl").
  static std::vector<std::string> AvailableBackends();

  // Joins the group through a TCPStore at host:port (rank 0 serves it).
  static absl::StatusOr<std::unique_ptr<Collectives>> CreateWithTcpStore(
      const CollectivesOptions& options, const std::string& host, uint16_t port);
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
  // In place: every rank gets `root`'s values.
  absl::Status Broadcast(std::vector<at::Tensor>& tensors, int root);
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

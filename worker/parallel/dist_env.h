// DistEnv: where this process sits in a data-parallel job, read from the
// variables torchrun, Kubeflow's PyTorchJob and foakd's launcher all set:
//   RANK, WORLD_SIZE        this process's rank in the job and the job's size
//   LOCAL_RANK              its index on this host: it trains on cuda:LOCAL_RANK
//   LOCAL_WORLD_SIZE        ranks on this host (optional, default WORLD_SIZE)
//   MASTER_ADDR, MASTER_PORT  rank 0's host and the port its rendezvous store
//                           listens on
// A process with none of them set is a single-rank job. Torch-free.
#ifndef FOAK_WORKER_PARALLEL_DIST_ENV_H_
#define FOAK_WORKER_PARALLEL_DIST_ENV_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace foak {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  uint16_t master_port = 0;  // 0 only when world_size == 1

  bool distributed() const { return world_size > 1; }
  // "rank 1 of 2 (local rank 1), rendezvous at 10.0.0.5:29500"
  std::string Describe() const;
};

// Reads the variables through `getenv` (a seam for tests; nullopt = unset).
// WORLD_SIZE unset or 1 without RANK is a single-rank job (MASTER_* are then
// ignored). With WORLD_SIZE > 1, RANK and MASTER_PORT are required; every
// error names the variable, its value and what is valid.
absl::StatusOr<DistEnv> ReadDistEnv(
    const std::function<std::optional<std::string>(const char*)>& getenv);
// The same from the process environment.
absl::StatusOr<DistEnv> DistEnvFromEnvironment();

}  // namespace foak

#endif  // FOAK_WORKER_PARALLEL_DIST_ENV_H_

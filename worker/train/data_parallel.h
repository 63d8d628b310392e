// How a training or benchmark job joins its data-parallel ranks: the rank's
// place from the environment (worker/parallel/dist_env.h), its device, and
// with several ranks the process group (NCCL on CUDA, Gloo on the CPU) made
// through a rendezvous at MASTER_ADDR:MASTER_PORT that names any rank that
// does not arrive within hyperparameters.ddp_timeout.
//
// What each rank does in a job of several (train_job.cc, bench_job.cc):
//   every rank   trains on its share of the micro-batches (rank_batch_source.h)
//                and evaluates its share of the validation batches; gradients,
//                losses and token counts are summed over ranks (trainer.h);
//                reports its own step metrics, so foakd sees every rank's
//                peak memory (RankObserver).
//   rank 0 only  writes metrics.jsonl, checkpoints, final/ and merged/, and
//                reports evaluations, checkpoints and benchmark rows.
// All ranks end at a barrier after rank 0 has written final/.
#ifndef FOAK_WORKER_TRAIN_DATA_PARALLEL_H_
#define FOAK_WORKER_TRAIN_DATA_PARALLEL_H_

#include <torch/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/parallel/collectives.h"
#include "worker/parallel/dist_env.h"
#include "worker/train/job.h"
#include "worker/train/train_observer.h"

namespace foak {

struct RankContext {
  DistEnv env;
  torch::Device device{torch::kCPU};
  std::unique_ptr<Collectives> comm;  // null with one rank

  bool is_main() const { return env.rank == 0; }
  Collectives* collectives() const { return comm.get(); }
};

// The device for `device_name` ("auto" | "cpu" | "cuda" | "cuda:N") on this
// rank: with several ranks, CUDA means cuda:LOCAL_RANK (an explicit cuda:N is
// refused), which also becomes the current CUDA device.
absl::StatusOr<torch::Device> ResolveRankDevice(const std::string& device_name, const DistEnv& env);

// Reads the environment, resolves the device and, with several ranks, joins
// the process group (blocking until every rank has arrived).
absl::StatusOr<RankContext> JoinRanks(const JobConfig& job);

// What a rank > 0 forwards to foakd: its step metrics (its own peak memory);
// rank 0's observer hears everything.
class RankObserver : public TrainObserver {
 public:
  RankObserver(TrainObserver* inner, int rank) : inner_(inner), rank_(rank) {}
  void OnStart(int64_t max_steps, int64_t start_step, const std::string& device) override {
    if (inner_ != nullptr && rank_ == 0) inner_->OnStart(max_steps, start_step, device);
  }
  void OnStep(const StepMetrics& m) override {
    if (inner_ != nullptr) inner_->OnStep(m);
  }
  void OnEval(const EvalMetrics& m) override {
    if (inner_ != nullptr && rank_ == 0) inner_->OnEval(m);
  }
  void OnCheckpoint(int64_t step, const std::string& path) override {
    if (inner_ != nullptr && rank_ == 0) inner_->OnCheckpoint(step, path);
  }
  void OnBenchResult(const BenchResult& r) override {
    if (inner_ != nullptr && rank_ == 0) inner_->OnBenchResult(r);
  }

 private:
  TrainObserver* inner_;
  int rank_;
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_DATA_PARALLEL_H_

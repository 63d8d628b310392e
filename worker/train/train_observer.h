// TrainObserver: what RunTrainJob (train_job.h) tells whoever watches a run,
// besides metrics.jsonl: the run started, a step or an evaluation was logged,
// a checkpoint was committed. It is the seam between the torch side (the
// training loop) and the transport side (worker/report/, which forwards these
// to foakd over gRPC), so it holds plain C++ types only: no torch, no
// protobuf (shared/GPU_HOST.md, trap 1).
//
// The callbacks run on the training thread, right after the same event has
// been written to metrics.jsonl, so an implementation must return quickly and
// never block on the network (CoordinatorReporter queues and sends from a
// thread of its own). An observer cannot fail the run: metrics.jsonl stays
// the record, what an observer forwards is a live copy.
#ifndef FOAK_WORKER_TRAIN_TRAIN_OBSERVER_H_
#define FOAK_WORKER_TRAIN_TRAIN_OBSERVER_H_

#include <cstdint>
#include <string>

#include "worker/train/bench_result.h"
#include "worker/train/metrics_writer.h"

namespace foak {

class TrainObserver {
 public:
  virtual ~TrainObserver() = default;

  // Right before the first step: the run trains to `max_steps` optimizer
  // steps starting after `start_step` (> 0 when resumed from a checkpoint), on
  // `device` ("cpu", "cuda:0", ...).
  virtual void OnStart(int64_t max_steps, int64_t start_step, const std::string& device) {}
  // After each metrics.jsonl training line.
  virtual void OnStep(const StepMetrics& metrics) {}
  // After each metrics.jsonl evaluation line.
  virtual void OnEval(const EvalMetrics& metrics) {}
  // After a checkpoint folder (checkpoint-<step>/ or final/) is committed.
  virtual void OnCheckpoint(int64_t step, const std::string& path) {}
  // Benchmark jobs only: after each row is appended to bench.jsonl. Such a
  // job calls OnStart with max_steps = the rows planned and no OnStep.
  virtual void OnBenchResult(const BenchResult& result) {}
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_TRAIN_OBSERVER_H_

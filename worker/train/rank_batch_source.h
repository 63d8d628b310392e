// RankBatchSource: one data-parallel rank's share of the job's micro-batch
// stream. Every rank opens the same deterministic stream (batch_source.h)
// and keeps the micro-batches whose global index i has i % world_size ==
// rank, as Accelerate's batch sampler shards do. So ranks never see the same
// example, and W ranks with micro-batches of b rows train on exactly the rows
// one rank with micro-batches of W*b rows would, as long as the stream is cut
// into rows the same way whatever the batch size (packing does so).
//
// Counts stay GLOBAL where checkpoints keep them: Resume and
// examples_consumed speak of the shared stream, so a checkpoint written by
// rank 0 resumes every rank. micro_batches_per_epoch is this rank's share
// (for max_steps from epochs, as a per-rank data loader's length).
#ifndef FOAK_WORKER_TRAIN_RANK_BATCH_SOURCE_H_
#define FOAK_WORKER_TRAIN_RANK_BATCH_SOURCE_H_

#include <cstdint>
#include <string>

#include "worker/train/batch_source.h"

namespace foak {

class RankBatchSource : public BatchSource {
 public:
  // `source` must outlive this and be positioned at a multiple of
  // world_size micro-batches (the start of a step).
  RankBatchSource(BatchSource* source, int rank, int world_size)
      : source_(source), rank_(rank), world_size_(world_size) {}

  absl::StatusOr<Batch> Next() override;
  int64_t micro_batches_per_epoch() const override;
  std::string Describe() const override;
  int64_t examples_consumed() const override { return source_->examples_consumed(); }
  // Global counts: repositions the shared stream.
  absl::Status Resume(int64_t micro_batches, int64_t examples) override {
    return source_->Resume(micro_batches, examples);
  }

 private:
  BatchSource* source_;
  int rank_;
  int world_size_;
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_RANK_BATCH_SOURCE_H_

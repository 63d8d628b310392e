#include "worker/train/rank_batch_source.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace foak {

absl::StatusOr<Batch> RankBatchSource::Next() {
  // The stream stands at a multiple of world_size: skip the lower ranks'
  // micro-batch, take ours, skip the higher ranks'.
  RETURN_IF_ERROR(source_->Skip(rank_));
  ASSIGN_OR_RETURN(Batch batch, source_->Next());
  RETURN_IF_ERROR(source_->Skip(world_size_ - 1 - rank_));
  return batch;
}

int64_t RankBatchSource::micro_batches_per_epoch() const {
  return source_->micro_batches_per_epoch() / world_size_;
}

std::string RankBatchSource::Describe() const {
  return absl::StrCat(source_->Describe(), "; rank ", rank_, " of ", world_size_,
                      " trains on the micro-batches i with i % ", world_size_, " = ", rank_);
}

}  // namespace foak

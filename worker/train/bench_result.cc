#include "worker/train/bench_result.h"

#include "nlohmann/json.hpp"

namespace foak {

std::string BenchResultToJson(const BenchResult& r) {
  nlohmann::ordered_json j = {
      {"index", r.index},
      {"total", r.total},
      {"framework", r.framework},
      {"model", r.model},
      {"method", r.method},
      {"kernels", r.kernels},
      {"gpus", r.gpus},
      {"batch", r.batch},
      {"seq", r.seq},
      {"precision", r.precision},
      {"activation_checkpointing", r.activation_checkpointing},
      {"status", r.status},
      {"error", r.error},
      {"tokens_per_second", r.tokens_per_second},
      {"pct_change", r.pct_change.has_value() ? nlohmann::ordered_json(*r.pct_change)
                                              : nlohmann::ordered_json(nullptr)},
      {"ms_per_step", r.ms_per_step},
      {"peak_allocated_bytes", r.peak_allocated_bytes},
      {"peak_reserved_bytes", r.peak_reserved_bytes},
      {"loss_first", r.loss_first},
      {"loss_last", r.loss_last},
      {"warmup_steps", r.warmup_steps},
      {"steps", r.steps},
      {"max_batch", r.max_batch},
      {"device", r.device},
  };
  return j.dump();
}

}  // namespace foak

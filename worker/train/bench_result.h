// BenchResult: one row of a benchmark job (JobConfig::bench,
// worker/bench/bench_job.h), one kernel set timed on one shape. Plain C++
// (no torch, no protobuf): the bench loop fills it, TrainObserver hands it to
// the coordinator reporter, which copies it into foak.v1.BenchResult
// (proto/foak/v1/job_service.proto) field for field. bench.jsonl in the
// job's output folder holds one JSON object per row with these names
// (BenchResultToJson), and so do the rows of bench/hf_peer.py, so one script
// tabulates both (bench/bench_table.py).
#ifndef FOAK_WORKER_TRAIN_BENCH_RESULT_H_
#define FOAK_WORKER_TRAIN_BENCH_RESULT_H_

#include <cstdint>
#include <optional>
#include <string>

namespace foak {

struct BenchResult {
  int32_t index = 0;        // 0-based row number in the job's plan
  int32_t total = 0;        // rows planned (BenchConfig::PlannedRows)
  std::string framework = "foak";
  std::string model;        // the model folder's name, e.g. "llama-3.2-1b"
  std::string method;       // "full" | "lora" | "qlora"
  std::string kernels;      // KernelSetLabel: "none", "foak", "all", "rms_norm+rope", ...
  int32_t gpus = 1;
  int64_t batch = 0;        // rows per optimizer step
  int64_t seq = 0;          // tokens per row
  std::string precision;    // "bf16" (pure), "bf16-mixed", "fp32"
  bool activation_checkpointing = false;
  std::string status;       // "ok" | "out_of_memory" | "error"
  std::string error;        // why, when status is not "ok"
  double tokens_per_second = 0;  // batch * seq * steps / timed seconds
  // Change of tokens_per_second against the row of the job's first kernel
  // set on the same shape, in percent; absent for that row itself and when
  // it did not run.
  std::optional<double> pct_change;
  double ms_per_step = 0;
  int64_t peak_allocated_bytes = 0;  // CUDA allocator peak over the row; peak RSS on CPU
  int64_t peak_reserved_bytes = 0;   // CUDA allocator reserved peak; 0 on CPU
  double loss_first = 0;    // the first warm-up step's loss (random data: about ln V)
  double loss_last = 0;     // the last timed step's loss
  int64_t warmup_steps = 0;
  int64_t steps = 0;
  bool max_batch = false;   // the largest batch that fit (BenchConfig::find_max_batch)
  std::string device;       // "cuda:0", "cpu"
};

// One JSON object (a bench.jsonl line, no newline) with the field names above.
std::string BenchResultToJson(const BenchResult& r);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_BENCH_RESULT_H_

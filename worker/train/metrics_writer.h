// MetricsWriter: one JSON object per logged step, appended to
// <output_dir>/metrics.jsonl and echoed to stdout. Each line is flushed as it
// is written, so a crashed or killed run keeps every line it logged and a
// `tail -f` follows training live. Appending (not truncating) keeps the history
// of a run that is restarted into the same folder. No torch here.
//
// A line covers the steps since the previous line (logging_steps of them):
//   {"step": 10, "loss": 2.31, "learning_rate": 0.003, "grad_norm": 0.84,
//    "tokens": 10240, "tokens_per_second": 5120.0, "peak_memory_bytes": 123456,
//    "elapsed_s": 2.0}
// step: optimizer steps completed (1-based); loss: mean over those steps of each
// step's mean token loss; learning_rate and grad_norm (before clipping): of the
// last step; tokens: non-padding INPUT tokens processed in those steps (targets
// are about one per sequence fewer); tokens_per_second: tokens / their wall
// time; peak_memory_bytes: CUDA allocator peak (allocated), or the process's
// peak RSS on CPU; peak_reserved_bytes (CUDA only, after peak_memory_bytes):
// the allocator's peak reserved; elapsed_s: since training started. A
// non-finite loss is written as null.
//
// An evaluation (dataset validation data, every eval_steps and at the end) is
// a line of its own, after the step's training line:
//   {"step": 20, "eval_loss": 1.87, "eval_tokens": 4210, "eval_examples": 200,
//    "eval_s": 0.31}
// eval_loss: sum of the token losses over the whole validation set / the
// number of target tokens (eval_tokens), the model in eval mode (no dropout).
// A consumer tells the two kinds apart by the "loss" / "eval_loss" key.
#ifndef FOAK_WORKER_TRAIN_METRICS_WRITER_H_
#define FOAK_WORKER_TRAIN_METRICS_WRITER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace foak {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0;
  double learning_rate = 0;
  double grad_norm = 0;
  int64_t tokens = 0;
  double tokens_per_second = 0;
  int64_t peak_memory_bytes = 0;
  int64_t peak_reserved_bytes = 0;  // CUDA only; the line carries it when > 0
  double elapsed_s = 0;
};

struct EvalMetrics {
  int64_t step = 0;
  double eval_loss = 0;
  int64_t eval_tokens = 0;    // target tokens
  int64_t eval_examples = 0;
  double eval_s = 0;          // wall time of the pass
};

class MetricsWriter {
 public:
  // Appends to `path` (created if absent). `echo` (may be null) gets each line too.
  static absl::StatusOr<std::unique_ptr<MetricsWriter>> Open(const std::string& path,
                                                             std::FILE* echo);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  absl::Status Write(const StepMetrics& metrics);
  absl::Status Write(const EvalMetrics& metrics);
  static std::string ToJsonLine(const StepMetrics& metrics);  // without '\n'
  static std::string ToJsonLine(const EvalMetrics& metrics);  // without '\n'

 private:
  absl::Status WriteLine(const std::string& line);
  MetricsWriter(std::string path, std::FILE* file, std::FILE* echo)
      : path_(std::move(path)), file_(file), echo_(echo) {}
  std::string path_;
  std::FILE* file_;
  std::FILE* echo_;
};

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_METRICS_WRITER_H_

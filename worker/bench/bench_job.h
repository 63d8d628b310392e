// RunBenchJob: a benchmark job (JobConfig::bench) end to end -- how fast and
// how lean training is with each kernel set, measured on the job's own
// trainer, so what is timed is exactly what a fine-tune runs.
//
// Per row (seq_lens x batch_sizes x kernel_sets, in that nesting, so rows of
// one shape sit together with the first kernel set as their baseline):
//   1. a fresh model of `model`'s config.json with random weights (seed from
//      hyperparameters.seed; the weights do not change the speed), the job's
//      kernel set, LoRA adapters for methods lora and qlora (qlora: every
//      decoder projection quantised to NF4 as it is drawn, so the base is
//      never whole in bf16; worker/quant/nf4_linears.h), activation
//      checkpointing when asked, and a Trainer with the job's precision and
//      AdamW (fused on CUDA);
//   2. the peak-memory counters reset, so the peak covers weights,
//      gradients, optimizer state and activations;
//   3. warmup_steps optimizer steps, a device synchronisation, `steps`
//      timed optimizer steps (forward, loss, backward, clipping, AdamW
//      update), another synchronisation;
//   4. tokens/s = batch * seq * steps / timed seconds (every position of a
//      row of random tokens is an input token), the peaks, the first and last
//      losses; model and trainer are freed and the allocator's cache emptied
//      before the next row.
// A row that runs out of device memory is a result ("out_of_memory"), not a
// failure; the job fails only when a row fails for another reason.
// find_max_batch then searches, per sequence length and kernel set, the
// largest batch that trains two steps (max_batch_search.h) on one model, and
// times that batch as one more row (max_batch = true).
//
// Random tokens are uniform over the vocabulary, one fixed batch per row
// (the data pipeline is not what is measured); labels are the inputs (the
// model shifts them), so a row of T tokens has T - 1 targets.
//
// Output: output_dir/bench.jsonl, one BenchResultToJson object per row,
// rewritten atomically after every row; one line per row on `echo`; each row
// to the observer (foakd), after OnStart(rows planned, 0, device).
#ifndef FOAK_WORKER_BENCH_BENCH_JOB_H_
#define FOAK_WORKER_BENCH_BENCH_JOB_H_

#include <cstdio>

#include "absl/status/status.h"
#include "worker/train/job.h"
#include "worker/train/train_observer.h"

namespace foak {

// `job.bench.enabled` must be set. `echo` and `info` may be null; `observer`
// may be null.
absl::Status RunBenchJob(const JobConfig& job, std::FILE* echo, std::FILE* info,
                         TrainObserver* observer);

}  // namespace foak

#endif  // FOAK_WORKER_BENCH_BENCH_JOB_H_

// Peak memory for the metrics: on CUDA, the caching allocator's peak of
// allocated bytes (what torch.cuda.max_memory_allocated reports); on CPU, the
// process's peak resident set size from getrusage (covers LibTorch's CPU
// allocations, the model and everything else in the process).
#ifndef FOAK_WORKER_TRAIN_MEMORY_STATS_H_
#define FOAK_WORKER_TRAIN_MEMORY_STATS_H_

#include <torch/types.h>

#include <cstdint>

namespace foak {

int64_t PeakMemoryBytes(const torch::Device& device);
// On CUDA, the caching allocator's peak of reserved bytes (what
// torch.cuda.max_memory_reserved reports: allocated plus the cache's slack,
// closer to what nvidia-smi shows); 0 on the CPU.
int64_t PeakReservedBytes(const torch::Device& device);
// CUDA: restarts both peaks at the current values (torch.cuda.
// reset_peak_memory_stats). A no-op on the CPU, whose RSS peak cannot be reset.
void ResetPeakMemory(const torch::Device& device);
// CUDA: hands the caching allocator's unused blocks back to the driver
// (torch.cuda.empty_cache), so one benchmark row's leftovers cannot shape the
// next row's peak. A no-op on the CPU.
void ReleaseCachedMemory(const torch::Device& device);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_MEMORY_STATS_H_

#include "worker/train/memory_stats.h"

#include <sys/resource.h>

#if defined(FOAK_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace foak {

int64_t PeakMemoryBytes(const torch::Device& device) {
#if defined(FOAK_WITH_CUDA)
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        device.has_index() ? device.index() : c10::cuda::current_device());
    // Index 0 is StatType::AGGREGATE (all pools) in every LibTorch version.
    return static_cast<int64_t>(stats.allocated_bytes[0].peak);
  }
#endif
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

int64_t PeakReservedBytes(const torch::Device& device) {
#if defined(FOAK_WITH_CUDA)
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        device.has_index() ? device.index() : c10::cuda::current_device());
    return static_cast<int64_t>(stats.reserved_bytes[0].peak);
  }
#endif
  (void)device;
  return 0;
}

void ResetPeakMemory(const torch::Device& device) {
#if defined(FOAK_WITH_CUDA)
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(
        device.has_index() ? device.index() : c10::cuda::current_device());
  }
#endif
  (void)device;
}

void ReleaseCachedMemory(const torch::Device& device) {
#if defined(FOAK_WITH_CUDA)
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  (void)device;
}

}  // namespace foak

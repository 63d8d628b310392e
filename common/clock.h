// Wall-clock milliseconds since the Unix epoch: the time foakd records for
// jobs, events, files and metrics. Classes that take a `now_ms` function for
// tests default to this one.
#ifndef FOAK_COMMON_CLOCK_H_
#define FOAK_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace foak {

inline int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace foak

#endif  // FOAK_COMMON_CLOCK_H_

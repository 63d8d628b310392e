// Shared harness of the kernel benchmarks (bench/kernels/<op>_bench.cc, one
// binary each): CUDA-event timing (median of reps after warm-up), peak extra
// memory of one call, the card's measured ceilings (copy bandwidth and a large
// bf16 GEMM) and one output row per measurement, printed as a markdown table
// row and appended as a JSON line for scripts/gpu_host.sh.
//
// Not a test: nothing here asserts a speed. On a machine without CUDA the
// binaries run on the CPU at small sizes (--smoke), so CI notices one that no
// longer builds or runs.
#ifndef FOAK_BENCH_KERNELS_BENCH_UTIL_H_
#define FOAK_BENCH_KERNELS_BENCH_UTIL_H_

#include <ATen/ATen.h>

#include <functional>
#include <string>

namespace foak::bench {

struct BenchOptions {
  at::Device device = at::Device(at::kCPU);
  bool smoke = false;  // tiny shapes (CPU CI run)
  int warmup = 3;
  int reps = 10;
  std::string json;    // append JSON lines here when set
  std::string filter;  // run only cases whose name contains this
};

// --device cpu|cuda (default cuda when available), --smoke, --warmup N,
// --reps N, --json FILE, --filter TEXT. Exits with a usage line on bad flags.
BenchOptions ParseBenchArgs(int argc, char** argv);

// Median milliseconds of fn() over reps, after warmup calls.
double MedianMs(const BenchOptions& o, const std::function<void()>& fn);

// Peak memory allocated during one fn() call above what was allocated before
// it, in GiB (CUDA caching allocator); -1 on the CPU.
double PeakExtraGiB(const BenchOptions& o, const std::function<void()>& fn);

// Memory still allocated when fn() returns above what was allocated before
// it, in GiB: for a forward pass whose outputs fn keeps alive, the tensors
// autograd holds for backward plus the outputs. -1 on the CPU.
double HeldGiB(const BenchOptions& o, const std::function<void()>& fn);

// Measured ceilings of the device, computed once: device-to-device copy
// bandwidth in GB/s (bytes read + written) and bf16 GEMM TFLOP/s (8192^3).
struct Ceilings {
  double copy_gbps = -1;
  double gemm_tflops = -1;
};
const Ceilings& MeasuredCeilings(const BenchOptions& o);

struct Row {
  std::string op;        // "rms_norm"
  std::string shape;     // "N=8192 H=4096"
  std::string dtype;     // "bf16"
  std::string pass;      // "fwd", "bwd", "fwd+bwd"
  std::string impl;      // "foak" or "composite"
  double ms = -1;
  double bytes = -1;     // minimum bytes moved, for memory-bound ops
  double flops = -1;     // for GEMM-bound ops
  double extra_gib = -1;
};

// Prints the row (GB/s and % of copy bandwidth, or TFLOP/s and % of the GEMM
// ceiling) and appends it to o.json.
void Report(const BenchOptions& o, const Row& row);
void PrintHeader();

std::string DtypeName(at::ScalarType t);
bool Selected(const BenchOptions& o, const std::string& name);

}  // namespace foak::bench

#endif  // FOAK_BENCH_KERNELS_BENCH_UTIL_H_

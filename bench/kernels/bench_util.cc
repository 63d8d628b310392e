#include "bench/kernels/bench_util.h"

#include <torch/cuda.h>

#ifdef FOAK_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace foak::bench {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

void Sync(const BenchOptions& o) {
  if (o.device.is_cuda()) torch::cuda::synchronize();
}

[[noreturn]] void Usage(const char* argv0, const std::string& why) {
  std::fprintf(stderr,
               "%s: %s\nusage: %s [--device cpu|cuda] [--smoke] [--warmup N] [--reps N] "
               "[--json FILE] [--filter TEXT]\n",
               argv0, why.c_str(), argv0);
  std::exit(2);
}

}  // namespace

BenchOptions ParseBenchArgs(int argc, char** argv) {
  BenchOptions o;
  if (torch::cuda::is_available()) o.device = at::Device(at::kCUDA, 0);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(argv[0], a + " needs a value");
      return argv[++i];
    };
    if (a == "--device") {
      const std::string d = value();
      if (d == "cpu") {
        o.device = at::Device(at::kCPU);
      } else if (d == "cuda") {
        if (!torch::cuda::is_available()) Usage(argv[0], "--device cuda but no CUDA device");
        o.device = at::Device(at::kCUDA, 0);
      } else {
        Usage(argv[0], "--device takes cpu or cuda, got '" + d + "'");
      }
    } else if (a == "--smoke") {
      o.smoke = true;
    } else if (a == "--warmup") {
      o.warmup = std::atoi(value().c_str());
    } else if (a == "--reps") {
      o.reps = std::max(1, std::atoi(value().c_str()));
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--filter") {
      o.filter = value();
    } else {
      Usage(argv[0], "unknown flag '" + a + "'");
    }
  }
  if (o.smoke) {
    o.warmup = 1;
    o.reps = 2;
  }
  return o;
}

double MedianMs(const BenchOptions& o, const std::function<void()>& fn) {
  for (int i = 0; i < o.warmup; ++i) fn();
  Sync(o);
  std::vector<double> ms;
  for (int i = 0; i < o.reps; ++i) {
#ifdef FOAK_WITH_CUDA
    if (o.device.is_cuda()) {
      at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
      start.record();
      fn();
      stop.record();
      stop.synchronize();
      ms.push_back(start.elapsed_time(stop));
      continue;
    }
#endif
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

double PeakExtraGiB(const BenchOptions& o, const std::function<void()>& fn) {
#ifdef FOAK_WITH_CUDA
  if (o.device.is_cuda()) {
    Sync(o);
    const int dev = o.device.index() < 0 ? 0 : o.device.index();
    const auto before = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
    const int64_t base = before.allocated_bytes[0].current;
    c10::cuda::CUDACachingAllocator::resetPeakStats(dev);
    fn();
    Sync(o);
    const auto after = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
    return static_cast<double>(after.allocated_bytes[0].peak - base) / kGiB;
  }
#endif
  fn();
  return -1;
}

double HeldGiB(const BenchOptions& o, const std::function<void()>& fn) {
#ifdef FOAK_WITH_CUDA
  if (o.device.is_cuda()) {
    Sync(o);
    const int dev = o.device.index() < 0 ? 0 : o.device.index();
    const int64_t base =
        c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].current;
    fn();
    Sync(o);
    const int64_t now =
        c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].current;
    return static_cast<double>(now - base) / kGiB;
  }
#endif
  fn();
  return -1;
}

const Ceilings& MeasuredCeilings(const BenchOptions& o) {
  static Ceilings c = [&o] {
    Ceilings r;
    if (!o.device.is_cuda() || o.smoke) return r;
    BenchOptions t = o;
    t.warmup = 3;
    t.reps = 10;
    const int64_t n = int64_t{1} << 28;  // 1 GiB of fp32
    at::Tensor src = at::empty({n}, at::TensorOptions().dtype(at::kFloat).device(o.device));
    at::Tensor dst = at::empty_like(src);
    src.fill_(1.0f);
    const double copy_ms = MedianMs(t, [&] { dst.copy_(src); });
    r.copy_gbps = 2.0 * 4.0 * static_cast<double>(n) / (copy_ms * 1e6);
    src.reset();
    dst.reset();
    const int64_t m = 8192;
    auto opts = at::TensorOptions().dtype(at::kBFloat16).device(o.device);
    at::Tensor a = at::randn({m, m}, opts), b = at::randn({m, m}, opts);
    at::Tensor out = at::empty({m, m}, opts);
    const double gemm_ms = MedianMs(t, [&] { at::mm_out(out, a, b); });
    r.gemm_tflops = 2.0 * m * m * m / (gemm_ms * 1e9);
    std::printf("# measured ceilings: copy %.0f GB/s (read+write), bf16 GEMM 8192^3 %.0f TFLOP/s\n",
                r.copy_gbps, r.gemm_tflops);
    return r;
  }();
  return c;
}

void PrintHeader() {
  std::printf("| op | shape | dtype | pass | impl | ms | GB/s | TFLOP/s | %% of ceiling | extra GiB |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
}

void Report(const BenchOptions& o, const Row& row) {
  const Ceilings& c = MeasuredCeilings(o);
  const double gbps = row.bytes > 0 ? row.bytes / (row.ms * 1e6) : -1;
  const double tflops = row.flops > 0 ? row.flops / (row.ms * 1e9) : -1;
  double pct = -1;
  if (gbps > 0 && c.copy_gbps > 0) pct = 100.0 * gbps / c.copy_gbps;
  if (tflops > 0 && c.gemm_tflops > 0) pct = 100.0 * tflops / c.gemm_tflops;
  auto num = [](double v, const char* fmt) {
    if (v < 0) return std::string("-");
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    return std::string(buf);
  };
  std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.op.c_str(),
              row.shape.c_str(), row.dtype.c_str(), row.pass.c_str(), row.impl.c_str(),
              num(row.ms, "%.3f").c_str(), num(gbps, "%.0f").c_str(), num(tflops, "%.0f").c_str(),
              num(pct, "%.0f%%").c_str(), num(row.extra_gib, "%.3f").c_str());
  std::fflush(stdout);
  if (!o.json.empty()) {
    std::ofstream out(o.json, std::ios::app);
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "{\"op\":\"%s\",\"shape\":\"%s\",\"dtype\":\"%s\",\"pass\":\"%s\",\"impl\":\"%s\","
                  "\"ms\":%.4f,\"gbps\":%.1f,\"tflops\":%.1f,\"pct_of_ceiling\":%.1f,"
                  "\"extra_gib\":%.4f,\"copy_gbps\":%.0f,\"gemm_tflops\":%.0f}\n",
                  row.op.c_str(), row.shape.c_str(), row.dtype.c_str(), row.pass.c_str(),
                  row.impl.c_str(), row.ms, gbps, tflops, pct, row.extra_gib, c.copy_gbps,
                  c.gemm_tflops);
    out << buf;
  }
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    default: return "other";
  }
}

bool Selected(const BenchOptions& o, const std::string& name) {
  return o.filter.empty() || name.find(o.filter) != std::string::npos;
}

}  // namespace foak::bench
